//! Tables for `selfheal health` and `selfheal heal`, in the style of `kubectl get`.

use crate::heal::inspect::Finding;
use crate::heal::run::Handled;

/// Lays out rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("   ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    out.join("\n") + "\n"
}

fn component(finding: &Finding) -> String {
    finding
        .workload
        .as_ref()
        .map_or_else(|| "-".to_string(), |w| format!("{}/{}", w.kind, w.name))
}

/// `selfheal health`: one row per problem with its diagnosis.
pub fn health_table(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "No problems found.\n".into();
    }
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                f.problem.namespace.clone(),
                format!("{}/{}", f.problem.object_kind, f.problem.object_name),
                component(f),
                f.problem.kind.name().to_string(),
                f.problem.kind.container().unwrap_or("-").to_string(),
                f.diagnosis.cause.as_str().to_string(),
                f.diagnosis.evidence.clone(),
            ]
        })
        .collect();
    table(
        &[
            "NAMESPACE",
            "OBJECT",
            "COMPONENT",
            "PROBLEM",
            "CONTAINER",
            "CAUSE",
            "EVIDENCE",
        ],
        &rows,
    )
}

/// `selfheal heal`: what was done about each problem.
pub fn heal_table(handled: &[Handled]) -> String {
    if handled.is_empty() {
        return "No problems found; nothing to do.\n".into();
    }
    let rows: Vec<Vec<String>> = handled
        .iter()
        .map(|h| {
            vec![
                h.target(),
                h.finding.problem.kind.name().to_string(),
                h.finding.diagnosis.cause.as_str().to_string(),
                h.action().to_string(),
                h.outcome.result().to_string(),
                h.outcome.message(),
            ]
        })
        .collect();
    table(
        &["OBJECT", "PROBLEM", "CAUSE", "ACTION", "RESULT", "DETAIL"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let out = table(
            &["A", "BB"],
            &[
                vec!["long cell".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "A           BB");
        assert_eq!(lines[1], "long cell   x");
        assert_eq!(lines[2], "s           y");
    }
}
