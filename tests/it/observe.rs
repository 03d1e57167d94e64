//! What a test can observe of selfheal from outside, to wait for an event instead of sleeping:
//! the warnings and errors it logs, and the value of a metric series.
//!
//! `logged` installs, once per test process, a global tracing subscriber that keeps the WARN and
//! ERROR lines of selfheal's own modules (message and fields, as text), the last
//! `KEPT_LINES` of them. A test waits for a line only it can cause (one that names its temporary
//! directory or a workload name no other test uses), since every test of the crate shares it.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const KEPT_LINES: usize = 20_000;

static LINES: OnceLock<Mutex<VecDeque<String>>> = OnceLock::new();

struct Keep;

fn kept(metadata: &Metadata<'_>) -> bool {
    *metadata.level() <= Level::WARN && metadata.target().starts_with("selfheal")
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for Keep {
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        kept(metadata)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !kept(event.metadata()) {
            return;
        }
        let mut line = Line(format!(
            "{} {}:",
            event.metadata().level(),
            event.metadata().target()
        ));
        event.record(&mut line);
        if let Some(lines) = LINES.get() {
            let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line.0);
        }
    }
}

fn install() {
    LINES.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Keep);
        // Another subscriber set first (none is, in this crate) would only mean no lines.
        let _ = tracing::subscriber::set_global_default(subscriber);
        Mutex::new(VecDeque::new())
    });
}

/// Starts keeping log lines (call before the code under test runs).
pub fn capture() {
    install();
}

/// How many kept lines so far contain every one of `parts`.
pub fn logged(parts: &[&str]) -> usize {
    install();
    let lines = LINES
        .get()
        .expect("installed")
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    lines
        .iter()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .count()
}

/// The value of the series `series` (a metric name, with its labels if it has any, exactly as
/// the exposition writes them) in `text`, if it is there.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The sum of every series of `name` whose labels contain each of `labels` (`problem="X"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (set, value) = rest.split_once("} ")?;
            labels
                .iter()
                .all(|label| set.split(',').any(|l| l == *label))
                .then(|| value.split_whitespace().next()?.parse::<f64>().ok())?
        })
        .sum()
}

#[test]
fn a_series_is_read_by_its_exact_name() {
    let text = "# HELP x\nselfheal_leader 1\nselfheal_leader_x 7\na_total{b=\"c\"} 3\n";
    assert_eq!(metric(text, "selfheal_leader"), Some(1.0));
    assert_eq!(metric(text, "a_total{b=\"c\"}"), Some(3.0));
    assert_eq!(metric(text, "a_total"), None);
    let text = "a_total{b=\"c\",d=\"e\"} 3\na_total{b=\"c\",d=\"f\"} 4\na_total{b=\"cc\"} 9\n";
    assert_eq!(metric_sum(text, "a_total", &["b=\"c\""]), 7.0);
    assert_eq!(metric_sum(text, "a_total", &["d=\"f\""]), 4.0);
}
