//! What the cluster enforces on a raise, kept in memory by watches so the webhook reads it with
//! no API call on the admission path, and the watcher reads the same facts: the namespaces'
//! LimitRange rules for container memory (`limits`), their ResourceQuotas (`quotas`) and the
//! nodes' allocatable memory (`nodes`).
//!
//! One [`ClusterFacts`] holds one immutable [`Facts`] value behind an atomic pointer: each watch
//! publishes its part with one swap, and a reader's [`ClusterFacts::load`] sees every part as of
//! one moment. Each watch publishes its whole list as soon as the (re-)list ends, then every
//! change; an object that cannot be read is logged and skipped, never ending the watch.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::core::headroom::{self, NodeFacts, QuotaFacts, Room};
use crate::core::quantity::ByteQuantity;
use crate::core::raise::MemoryCaps;
use crate::core::workload::WorkloadKind;

/// The facts as of one moment.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Per namespace, the smallest container memory maximum of its LimitRanges.
    pub memory_max: Arc<BTreeMap<String, ByteQuantity>>,
    /// Per namespace, the smallest container memory `maxLimitRequestRatio`.
    pub memory_ratio: Arc<BTreeMap<String, f64>>,
    /// Per namespace, its ResourceQuotas (byte resources only).
    pub quotas: Arc<BTreeMap<String, Vec<QuotaFacts>>>,
    /// Every node; `None` until the first list (then nothing is capped by nodes).
    pub nodes: Option<Arc<Vec<NodeFacts>>>,
}

impl Facts {
    /// The ResourceQuotas of `namespace`.
    pub fn quotas(&self, namespace: &str) -> &[QuotaFacts] {
        self.quotas.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// Every node, once listed.
    pub fn nodes(&self) -> Option<&[NodeFacts]> {
        self.nodes.as_deref().map(Vec::as_slice)
    }

    /// The caps of a memory raise of `object` (a `kind` in `namespace`): its namespace's
    /// LimitRange rules, and the room its quotas and the nodes leave for the pods it has at once
    /// (`core::headroom`). `live` is the object as stored, when it exists (an UPDATE's
    /// `oldObject`, or the workload the executor read): its running pods are credited.
    pub fn memory_caps(
        &self,
        namespace: &str,
        kind: WorkloadKind,
        object: &Value,
        live: Option<&Value>,
    ) -> MemoryCaps {
        let room = kind
            .pod_spec_pointer()
            .and_then(|pointer| object.pointer(&pointer))
            .map(|pod_spec| {
                let mut demand = headroom::pods_at_once(kind, object, self.nodes());
                if let Some(live) = live {
                    demand.credit = headroom::credit_of(kind, live);
                }
                Room::new(pod_spec, demand, self.quotas(namespace), self.nodes())
            })
            .filter(|room| !room.is_unbounded());
        MemoryCaps {
            max: self.memory_max.get(namespace).cloned(),
            ratio: self.memory_ratio.get(namespace).copied(),
            room,
        }
    }
}

/// The shared, current [`Facts`]: cheap to clone, every clone sees every publication.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    current: Arc<ArcSwap<Facts>>,
}

impl ClusterFacts {
    /// Every part as of now (an atomic load, no copy).
    pub fn load(&self) -> Arc<Facts> {
        self.current.load_full()
    }

    pub fn memory_max(&self, namespace: &str) -> Option<ByteQuantity> {
        self.current.load().memory_max.get(namespace).cloned()
    }

    /// The namespace's container memory `maxLimitRequestRatio`, if a LimitRange sets one.
    pub fn memory_ratio(&self, namespace: &str) -> Option<f64> {
        self.current.load().memory_ratio.get(namespace).copied()
    }

    /// Every namespace's LimitRange maximum, as of now.
    pub fn current(&self) -> Arc<BTreeMap<String, ByteQuantity>> {
        self.current.load().memory_max.clone()
    }

    /// [`Facts::memory_caps`] as of now.
    pub fn memory_caps(
        &self,
        namespace: &str,
        kind: WorkloadKind,
        object: &Value,
        live: Option<&Value>,
    ) -> MemoryCaps {
        self.current
            .load()
            .memory_caps(namespace, kind, object, live)
    }

    fn update(&self, change: impl Fn(&mut Facts)) {
        self.current.rcu(|old| {
            let mut facts = Facts::clone(old);
            change(&mut facts);
            facts
        });
    }

    /// Publishes the LimitRange maxima.
    pub fn publish(&self, maxima: BTreeMap<String, ByteQuantity>) {
        let maxima = Arc::new(maxima);
        self.update(|facts| facts.memory_max = maxima.clone());
    }

    /// Publishes the LimitRange ratios.
    pub fn publish_ratios(&self, ratios: BTreeMap<String, f64>) {
        let ratios = Arc::new(ratios);
        self.update(|facts| facts.memory_ratio = ratios.clone());
    }

    /// Publishes both LimitRange parts in one swap.
    pub fn publish_limits(
        &self,
        maxima: BTreeMap<String, ByteQuantity>,
        ratios: BTreeMap<String, f64>,
    ) {
        let (maxima, ratios) = (Arc::new(maxima), Arc::new(ratios));
        self.update(|facts| {
            facts.memory_max = maxima.clone();
            facts.memory_ratio = ratios.clone();
        });
    }

    /// Publishes every namespace's ResourceQuotas.
    pub fn publish_quotas(&self, quotas: impl IntoIterator<Item = QuotaFacts>) {
        let mut by_namespace: BTreeMap<String, Vec<QuotaFacts>> = BTreeMap::new();
        for quota in quotas {
            by_namespace
                .entry(quota.namespace.clone())
                .or_default()
                .push(quota);
        }
        let quotas = Arc::new(by_namespace);
        self.update(|facts| facts.quotas = quotas.clone());
    }

    /// Publishes every node (from then on, nodes cap raises).
    pub fn publish_nodes(&self, nodes: impl IntoIterator<Item = NodeFacts>) {
        let nodes = Arc::new(nodes.into_iter().collect::<Vec<_>>());
        self.update(|facts| facts.nodes = Some(nodes.clone()));
    }
}

/// Watches LimitRanges, ResourceQuotas and Nodes in the whole cluster and keeps `facts` current
/// until dropped.
pub async fn keep_current(client: Client, facts: ClusterFacts) {
    futures::join!(
        crate::cluster::limits::keep_current(client.clone(), facts.clone()),
        crate::cluster::quotas::keep_current(client.clone(), facts.clone()),
        crate::cluster::nodes::keep_current(client, facts),
    );
}

/// Lists LimitRanges, ResourceQuotas and Nodes once (for one-shot commands).
pub async fn read_once(client: Client) -> Result<ClusterFacts, kube::Error> {
    let facts = crate::cluster::limits::read_once(client.clone()).await?;
    let params = kube::api::ListParams::default();
    let quotas = Api::<k8s_openapi::api::core::v1::ResourceQuota>::all(client.clone())
        .list(&params)
        .await?;
    facts.publish_quotas(readable(
        quotas.items.iter(),
        crate::cluster::quotas::facts_of,
    ));
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client)
        .list(&params)
        .await?;
    facts.publish_nodes(readable(
        nodes.items.iter(),
        crate::cluster::nodes::facts_of,
    ));
    Ok(facts)
}

/// The facts of every object `read` can read; the others are logged and skipped.
fn readable<'a, K, T>(
    objects: impl IntoIterator<Item = &'a K>,
    read: fn(&K) -> Result<T, String>,
) -> Vec<T>
where
    K: Resource + 'a,
    K::DynamicType: Default,
{
    objects
        .into_iter()
        .filter_map(|object| match read(object) {
            Ok(facts) => Some(facts),
            Err(reason) => {
                tracing::warn!(
                    kind = %K::kind(&Default::default()),
                    namespace = object.meta().namespace.as_deref().unwrap_or_default(),
                    name = object.meta().name.as_deref().unwrap_or_default(),
                    %reason,
                    "unreadable object skipped"
                );
                None
            }
        })
        .collect()
}

/// Watches every `K` and calls `publish` with the facts `read` gets from all of them: once per
/// finished (re-)list and once per change, until dropped. An object `read` refuses is logged and
/// left out; a watch error is logged and the watch retried with backoff. Only the facts are
/// kept, never the objects.
pub(crate) async fn watch_facts<K, T>(
    api: Api<K>,
    read: fn(&K) -> Result<T, String>,
    publish: impl Fn(Vec<T>),
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
    T: Clone,
{
    let kind = K::kind(&Default::default()).to_string();
    let key = |object: &K| {
        format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    };
    let mut known: BTreeMap<String, T> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, T>> = None;
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let read_one = |object: &K| {
            let read = read(object);
            if let Err(reason) = &read {
                tracing::warn!(%kind, object = %key(object), %reason, "unreadable object skipped");
            }
            read.ok()
        };
        let changed = match event {
            Ok(watcher::Event::Init) => {
                listing = Some(BTreeMap::new());
                false
            }
            Ok(watcher::Event::InitApply(object)) => {
                if let (Some(listing), Some(facts)) = (listing.as_mut(), read_one(&object)) {
                    listing.insert(key(&object), facts);
                }
                false
            }
            Ok(watcher::Event::InitDone) => {
                known = listing.take().unwrap_or_default();
                true
            }
            Ok(watcher::Event::Apply(object)) => {
                match read_one(&object) {
                    Some(facts) => known.insert(key(&object), facts),
                    None => known.remove(&key(&object)),
                };
                true
            }
            Ok(watcher::Event::Delete(object)) => known.remove(&key(&object)).is_some(),
            Err(error) => {
                tracing::warn!(%kind, %error, "watch error; retrying");
                false
            }
        };
        if changed {
            publish(known.values().cloned().collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_load_sees_every_part_and_each_publication_replaces_only_its_own() {
        let facts = ClusterFacts::default();
        assert!(
            facts.load().nodes().is_none(),
            "no node facts before the first list"
        );
        facts.publish_limits(
            [("a".to_string(), ByteQuantity::parse("2Gi").unwrap())].into(),
            [("a".to_string(), 2.0)].into(),
        );
        facts.publish_quotas([
            QuotaFacts {
                namespace: "a".into(),
                name: "mem".into(),
                hard: [("limits.memory".to_string(), 768 << 20)].into(),
                ..QuotaFacts::default()
            },
            QuotaFacts {
                namespace: "b".into(),
                name: "other".into(),
                ..QuotaFacts::default()
            },
        ]);
        facts.publish_nodes([NodeFacts {
            name: "n".into(),
            allocatable_memory: Some(1 << 34),
            ready: true,
            ..NodeFacts::default()
        }]);
        let before = facts.load();
        facts.publish_quotas([]);
        assert_eq!(
            before.quotas("a").len(),
            1,
            "an earlier load is a stable view"
        );
        assert!(facts.load().quotas("a").is_empty());
        assert_eq!(facts.memory_max("a").unwrap().as_str(), "2Gi");
        assert_eq!(facts.memory_ratio("a"), Some(2.0));
        assert_eq!(facts.load().nodes().map(<[_]>::len), Some(1));
    }

    #[test]
    fn memory_caps_bring_the_limitrange_and_the_room_of_the_object() {
        let facts = ClusterFacts::default();
        let deployment = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "256Mi"}}}]}}}});
        let caps = facts.memory_caps("ns", WorkloadKind::Deployment, &deployment, None);
        assert_eq!(caps, MemoryCaps::default(), "nothing known: nothing capped");
        facts.publish_quotas([QuotaFacts {
            namespace: "ns".into(),
            name: "mem".into(),
            hard: [("limits.memory".to_string(), 768 << 20)].into(),
            ..QuotaFacts::default()
        }]);
        let caps = facts.memory_caps("ns", WorkloadKind::Deployment, &deployment, None);
        let room = caps.room.expect("the quota makes a room");
        let two_pods = headroom::PodMemory {
            limits: 384 << 20,
            requests: 0,
        };
        assert!(room.check(&two_pods, 0).is_ok());
        assert!(
            facts
                .memory_caps("elsewhere", WorkloadKind::Deployment, &deployment, None)
                .room
                .is_none()
        );
    }
}
