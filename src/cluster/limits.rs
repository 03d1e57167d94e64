//! The namespaces' LimitRange rules for container memory, kept in memory by a watch so the
//! webhook can cap a memory fix without an API call: a pod whose limit exceeded its namespace's
//! maximum would be rejected by the apiserver's LimitRanger, after the webhook, and a Deployment
//! would stop creating pods.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::LimitRange;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};

use crate::cluster::facts::ClusterFacts;
use crate::core::quantity::ByteQuantity;

/// The LimitRange rules live in the cluster facts with the quotas and nodes: one snapshot for
/// every cap (`cluster::facts`). This name stays for the callers that know it.
pub type LimitSnapshot = ClusterFacts;

/// The smallest container memory maximum of a namespace's LimitRanges.
pub fn memory_max(ranges: &[LimitRange]) -> Option<ByteQuantity> {
    ranges
        .iter()
        .filter_map(|r| r.spec.as_ref())
        .flat_map(|spec| spec.limits.iter())
        .filter(|item| item.type_ == "Container")
        .filter_map(|item| item.max.as_ref()?.get("memory"))
        .filter_map(|q| ByteQuantity::parse(&q.0).ok())
        .min()
}

/// The smallest container memory `maxLimitRequestRatio` of a namespace's LimitRanges (a plain
/// number or a quantity such as `1500m`; an unreadable one is ignored).
pub fn memory_ratio(ranges: &[LimitRange]) -> Option<f64> {
    ranges
        .iter()
        .filter_map(|r| r.spec.as_ref())
        .flat_map(|spec| spec.limits.iter())
        .filter(|item| item.type_ == "Container")
        .filter_map(|item| item.max_limit_request_ratio.as_ref()?.get("memory"))
        .filter_map(|q| ratio_value(&q.0))
        .reduce(f64::min)
}

/// A ratio quantity as a number: `2`, `1.5` or `1500m`.
fn ratio_value(text: &str) -> Option<f64> {
    let (number, scale) = match text.strip_suffix('m') {
        Some(milli) => (milli, 1000.0),
        None => (text, 1.0),
    };
    let value = number.parse::<f64>().ok()? / scale;
    (value.is_finite() && value >= 1.0).then_some(value)
}

/// Per namespace ratios of a set of LimitRanges (all namespaces).
pub fn ratios<'a>(ranges: impl IntoIterator<Item = &'a LimitRange>) -> BTreeMap<String, f64> {
    per_namespace(ranges, memory_ratio)
}

/// Per namespace maxima of a set of LimitRanges (all namespaces).
pub fn maxima<'a>(
    ranges: impl IntoIterator<Item = &'a LimitRange>,
) -> BTreeMap<String, ByteQuantity> {
    per_namespace(ranges, memory_max)
}

/// `rule` over each namespace's LimitRanges, for the namespaces where it has an answer.
fn per_namespace<'a, T>(
    ranges: impl IntoIterator<Item = &'a LimitRange>,
    rule: impl Fn(&[LimitRange]) -> Option<T>,
) -> BTreeMap<String, T> {
    let mut by_namespace: BTreeMap<String, Vec<LimitRange>> = BTreeMap::new();
    for range in ranges {
        let namespace = range.metadata.namespace.clone().unwrap_or_default();
        by_namespace
            .entry(namespace)
            .or_default()
            .push(range.clone());
    }
    by_namespace
        .into_iter()
        .filter_map(|(namespace, ranges)| Some((namespace, rule(&ranges)?)))
        .collect()
}

/// The LimitRange rules of every namespace as of one list (for one-shot commands).
pub async fn read_once(client: Client) -> Result<LimitSnapshot, kube::Error> {
    let ranges = Api::<LimitRange>::all(client)
        .list(&kube::api::ListParams::default())
        .await?
        .items;
    let snapshot = LimitSnapshot::default();
    snapshot.publish_limits(maxima(ranges.iter()), ratios(ranges.iter()));
    Ok(snapshot)
}

/// Watches LimitRanges in every namespace and keeps `snapshot` current until dropped.
pub async fn keep_current(client: Client, snapshot: LimitSnapshot) {
    let (cache, writer) = reflector::store::<LimitRange>();
    let stream = watcher(Api::<LimitRange>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            // The reflector holds a (re-)list back until it is complete, so the snapshot is
            // published when the list ends (`InitDone`), not only when an object changes:
            // otherwise the LimitRanges that exist at start-up stay invisible until one changes.
            Ok(event) if publishes(&event) => {
                let ranges = cache.state();
                snapshot.publish_limits(
                    maxima(ranges.iter().map(|r| r.as_ref())),
                    ratios(ranges.iter().map(|r| r.as_ref())),
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "LimitRange watch error; retrying"),
        }
    }
}

/// Whether the cache is complete and changed after `event`: a finished (re-)list, or a change.
fn publishes<K>(event: &watcher::Event<K>) -> bool {
    matches!(
        event,
        watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_smallest_memory_ratio_per_namespace() {
        let range = |ns: &str, ratio: &str| -> LimitRange {
            serde_json::from_value(json!({
                "metadata": {"name": "r", "namespace": ns},
                "spec": {"limits": [
                    {"type": "Container", "maxLimitRequestRatio": {"memory": ratio, "cpu": "10"}},
                    {"type": "Pod", "maxLimitRequestRatio": {"memory": "1"}}
                ]}
            }))
            .unwrap()
        };
        let ranges = [
            range("a", "4"),
            range("a", "1500m"),
            range("b", "2"),
            range("c", "x"),
        ];
        let by_namespace = ratios(ranges.iter());
        assert_eq!(by_namespace.get("a"), Some(&1.5));
        assert_eq!(by_namespace.get("b"), Some(&2.0));
        assert_eq!(
            by_namespace.get("c"),
            None,
            "an unreadable ratio is ignored"
        );
    }

    #[test]
    fn the_smallest_container_maximum_per_namespace() {
        let range = |ns: &str, name: &str, max: &str| -> LimitRange {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"limits": [
                    {"type": "Container", "max": {"memory": max, "cpu": "2"}},
                    {"type": "Pod", "max": {"memory": "64Gi"}}
                ]}
            }))
            .unwrap()
        };
        let ranges = [
            range("a", "one", "4Gi"),
            range("a", "two", "3Gi"),
            range("b", "one", "8Gi"),
        ];
        let maxima = maxima(ranges.iter());
        assert_eq!(maxima["a"].as_str(), "3Gi");
        assert_eq!(maxima["b"].as_str(), "8Gi");
        let snapshot = LimitSnapshot::default();
        snapshot.publish(maxima);
        assert_eq!(snapshot.memory_max("a").unwrap().as_str(), "3Gi");
        assert!(snapshot.memory_max("c").is_none());
    }
}
