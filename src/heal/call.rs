//! One bound for every API call the healing half makes (the watcher's reads, the evidence, the
//! executor's writes, the Vault check's reads and Events): a call that gets no answer within
//! [`CALL_TIMEOUT`] ends with an [`Elapsed`] naming it, so no hung call or client retrying a 429
//! stalls anything else.

use std::future::Future;
use std::time::Duration;

/// Longest time one API call may take. The default kube client retries 429/503/504 answers for
/// minutes; this bound is what keeps one refused or hung call from stalling other work.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A call that got no answer in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: no answer within {timeout:?}")]
pub struct Elapsed {
    /// What the call was (`reading namespace shop`).
    pub what: String,
    pub timeout: Duration,
}

/// Runs `call` within `timeout`: its own answer, or [`Elapsed`] naming it (`what` is built only
/// then).
pub async fn within<F: Future>(
    timeout: Duration,
    what: impl FnOnce() -> String,
    call: F,
) -> Result<F::Output, Elapsed> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Elapsed {
            what: what(),
            timeout,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_without_an_answer_is_named_at_the_bound() {
        let hung = within(
            Duration::from_millis(1),
            || "reading namespace shop".into(),
            std::future::pending::<()>(),
        )
        .await;
        let elapsed = hung.unwrap_err();
        assert_eq!(
            elapsed.to_string(),
            "reading namespace shop: no answer within 1ms"
        );
        let answered = within(Duration::from_secs(5), || unreachable!(), async { 7 }).await;
        assert_eq!(answered, Ok(7));
    }
}
