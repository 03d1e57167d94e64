//! Small text helpers shared by the modules that write for people (Events, logs, tables).

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// `text` with credentials masked: the password of `scheme://user:password@host`, the value of
/// `password=`, `passwd=`, `secret=`, `token=`, `apikey=` / `api_key=` (also with `:`), and bearer
/// tokens. Log lines become evidence in Events, the fix store and logs; secrets must not.
pub fn redact(text: &str) -> String {
    static PATTERNS: std::sync::LazyLock<Vec<(regex::Regex, &'static str)>> =
        std::sync::LazyLock::new(|| {
            [
            (r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", "${1}***@"),
            (
                r#"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)(["']?\s*[=:]\s*["']?)[^\s"',;&]+"#,
                "${1}${2}***",
            ),
            (r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+", "${1}***"),
        ]
        .into_iter()
        .filter_map(|(pattern, replacement)| regex::Regex::new(pattern).ok().map(|r| (r, replacement)))
        .collect()
        });
    PATTERNS
        .iter()
        .fold(text.to_string(), |text, (regex, replacement)| {
            regex.replace_all(&text, *replacement).into_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked() {
        assert_eq!(
            redact("dial postgres://gitlab:s3cr3t@db:5432/gitlab: connection refused"),
            "dial postgres://gitlab:***@db:5432/gitlab: connection refused"
        );
        assert_eq!(
            redact("auth failed password=hunter2 user=x"),
            "auth failed password=*** user=x"
        );
        assert_eq!(redact(r#"{"token": "abc.def"}"#), r#"{"token": "***"}"#);
        assert_eq!(
            redact("Authorization: Bearer eyJhbGciOi.x.y"),
            "Authorization: Bearer ***"
        );
        assert_eq!(redact("API_KEY=AKIA123 region=eu"), "API_KEY=*** region=eu");
        assert_eq!(
            redact("dial tcp db:5432: connect: connection refused"),
            "dial tcp db:5432: connect: connection refused"
        );
    }

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
