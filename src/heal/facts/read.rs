//! Reading the facts of one finding before `plan` decides: the labels of the namespaces the
//! decision may touch (from the watcher's store when it has one, else one bounded GET each,
//! remembered for the run), the one object the decision reads (`plan::reads`: the workload a fix
//! goes into, the Service and workload behind a refused `host:port`, the cert-manager
//! Certificate), and for a full claim the StorageClasses that allow expansion. Every call is
//! bounded by the call timeout; a read that fails fails the handling (it is retried), so nothing
//! is decided without its facts.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

use super::{
    CertificateFacts, DependencyFacts, Facts, NamespaceFacts, TargetFacts, WorkloadObject,
    pod_claims,
};
use crate::core::owners::{self, Workload};
use crate::heal::call::{self, Elapsed};
use crate::heal::detect::selects;
use crate::heal::inspect::{ClusterView, Finding};
use crate::heal::plan::{self, Reads, pod_ready, service_of_host, workload_group};

/// A read that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Timeout(#[from] Elapsed),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Reads facts for one run (`selfheal heal`) or one handling (the watcher).
pub struct Reader<'a> {
    client: &'a Client,
    timeout: std::time::Duration,
    /// The namespaces kept by the watcher's watch, once listed.
    namespace_store: Option<&'a Store<Namespace>>,
    /// The pods kept by the watcher's watch, once listed.
    pod_store: Option<&'a Store<Pod>>,
    /// The workloads kept by the watcher's watches (the kinds listed).
    workload_stores: Option<&'a WorkloadStores>,
    /// Namespace labels read so far.
    namespaces: NamespaceFacts,
    /// StorageClasses that allow expansion, once listed.
    expandable: Option<BTreeSet<String>>,
}

impl<'a> Reader<'a> {
    pub fn new(client: &'a Client, timeout: std::time::Duration) -> Self {
        Self {
            client,
            timeout,
            namespace_store: None,
            pod_store: None,
            workload_stores: None,
            namespaces: NamespaceFacts::default(),
            expandable: None,
        }
    }

    /// Reads namespaces, pods and workloads from the watcher's stores (those given must be
    /// listed).
    pub fn with_stores(
        mut self,
        namespaces: Option<&'a Store<Namespace>>,
        pods: Option<&'a Store<Pod>>,
        workloads: Option<&'a WorkloadStores>,
    ) -> Self {
        self.namespace_store = namespaces;
        self.pod_store = pods;
        self.workload_stores = workloads;
        self
    }

    /// The facts of `finding`: `base` (time, fixes, limits, room) with its pod and claims from
    /// `view`, the labels of the namespaces concerned, and the object its decision reads.
    pub async fn facts(
        &mut self,
        finding: &Finding,
        base: &Facts,
        view: &ClusterView,
    ) -> Result<Facts, ReadError> {
        let problem = &finding.problem;
        let mut facts = base.clone();
        facts.pod = (problem.object_kind == "Pod")
            .then(|| {
                view.pods
                    .iter()
                    .find(|p| p.metadata.uid.as_deref() == Some(problem.uid.as_str()))
                    .cloned()
            })
            .flatten();
        let mut namespaces = vec![problem.namespace.clone()];
        match plan::reads(finding) {
            Reads::Nothing => {}
            Reads::Claims => {
                let expandable = self.expandable_classes().await;
                facts.claims = facts
                    .pod
                    .as_ref()
                    .map(|pod| pod_claims(pod, view.claims.iter(), &expandable))
                    .unwrap_or_default();
            }
            Reads::Workload(workload) => {
                namespaces.push(workload.namespace.clone());
                facts.target = TargetFacts::Workload(self.workload(&workload).await?);
            }
            Reads::Dependency { host } => {
                let dependency = self.dependency(&host, &problem.namespace).await?;
                if let DependencyFacts::Found { dependency, .. } = &dependency {
                    namespaces.push(dependency.namespace.clone());
                }
                facts.target = TargetFacts::Dependency(dependency);
            }
            Reads::Certificate(name) => {
                facts.target =
                    TargetFacts::Certificate(self.certificate(&problem.namespace, &name).await?);
            }
        }
        for namespace in namespaces {
            let labels = self.namespace_labels(&namespace).await?;
            facts.namespaces.insert(&namespace, labels);
        }
        Ok(facts)
    }

    /// The labels of `namespace` (none for a namespace the API does not know).
    pub async fn namespace_labels(
        &mut self,
        namespace: &str,
    ) -> Result<BTreeMap<String, String>, ReadError> {
        if let crate::core::targeting::NamespaceLabels::Known(labels) =
            self.namespaces.labels(namespace)
        {
            return Ok(labels.clone());
        }
        let labels = match self.namespace_store {
            Some(store) => store
                .get(&ObjectRef::new(namespace))
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_default(),
            None => {
                let api: Api<Namespace> = Api::all(self.client.clone());
                let what = || format!("reading namespace {namespace}");
                call::within(self.timeout, what, api.get_opt(namespace))
                    .await?
                    .map_err(|source| ReadError::Api {
                        what: what(),
                        source,
                    })?
                    .and_then(|n| n.metadata.labels)
                    .unwrap_or_default()
            }
        };
        self.namespaces.insert(namespace, labels.clone());
        Ok(labels)
    }

    async fn expandable_classes(&mut self) -> BTreeSet<String> {
        if self.expandable.is_none() {
            self.expandable = Some(expandable_classes(self.client, self.timeout).await);
        }
        self.expandable.clone().unwrap_or_default()
    }

    /// A workload as read; `None` when it does not exist or is not a kind selfheal reads.
    async fn workload(&self, workload: &Workload) -> Result<Option<WorkloadObject>, ReadError> {
        let Some(group) = workload_group(&workload.kind) else {
            return Ok(None);
        };
        if let Some(kept) = self.workload_stores.and_then(|stores| stores.get(workload)) {
            return Ok(kept.map(|object| WorkloadObject {
                workload: workload.clone(),
                object,
            }));
        }
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", &workload.kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &workload.namespace, &resource);
        let what = || format!("reading {workload}");
        let found = call::within(self.timeout, what, api.get_opt(&workload.name))
            .await?
            .map_err(|source| ReadError::Api {
                what: what(),
                source,
            })?;
        Ok(found.map(|object| WorkloadObject {
            workload: workload.clone(),
            object: serde_json::to_value(object).unwrap_or_default(),
        }))
    }

    /// What is behind `host` (a Service name, in `namespace` unless it names another).
    async fn dependency(&self, host: &str, namespace: &str) -> Result<DependencyFacts, ReadError> {
        let Some((service_name, namespace)) = service_of_host(host, namespace) else {
            return Ok(DependencyFacts::NotAService);
        };
        let services: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
        let what = || format!("reading Service {namespace}/{service_name}");
        let Some(service) = call::within(self.timeout, what, services.get_opt(&service_name))
            .await?
            .map_err(|source| ReadError::Api {
                what: what(),
                source,
            })?
        else {
            return Ok(DependencyFacts::NoService {
                namespace,
                service: service_name,
            });
        };
        let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
        if selector.is_empty() {
            return Ok(DependencyFacts::NoSelector {
                namespace,
                service: service_name,
            });
        }
        let pods = self
            .selected_pods(&namespace, &service_name, &selector)
            .await?;
        // The workload behind the Service: the owner of a not-ready pod (of any pod when all
        // are ready, so the readiness rail can say so).
        let Some(first) = pods.iter().find(|p| !pod_ready(p)).or_else(|| pods.first()) else {
            return Ok(DependencyFacts::NoPods {
                namespace,
                service: service_name,
            });
        };
        let Some(dependency) = owners::owning_workload(first, |_, _| None) else {
            return Ok(DependencyFacts::Uncontrolled {
                pod: first.metadata.name.clone().unwrap_or_default(),
            });
        };
        let object = self.workload(&dependency).await?;
        Ok(DependencyFacts::Found {
            dependency,
            pods,
            object,
        })
    }

    /// The pods `selector` selects in `namespace`: from the pod store when there is one, else
    /// one list.
    async fn selected_pods(
        &self,
        namespace: &str,
        service: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Pod>, ReadError> {
        if let Some(store) = self.pod_store {
            return Ok(store
                .state()
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
                .filter(|p| selects(selector, p.metadata.labels.as_ref()))
                .map(|p| (**p).clone())
                .collect());
        }
        let label_selector = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let what = || format!("listing the pods of Service {namespace}/{service}");
        let listed = call::within(
            self.timeout,
            what,
            pods.list(&ListParams::default().labels(&label_selector)),
        )
        .await?
        .map_err(|source| ReadError::Api {
            what: what(),
            source,
        })?;
        Ok(listed.items)
    }

    /// The cert-manager Certificate `name`, as a dynamic object (selfheal needs neither
    /// cert-manager's crate nor its CRDs to run).
    async fn certificate(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<CertificateFacts, ReadError> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
            "certificates",
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let what = || format!("reading Certificate {namespace}/{name}");
        match call::within(self.timeout, what, api.get_opt(name)).await? {
            Ok(Some(object)) => Ok(CertificateFacts::Found(
                serde_json::to_value(object).unwrap_or_default(),
            )),
            Ok(None) => Ok(CertificateFacts::Missing),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(CertificateFacts::NoApi),
            Err(source) => Err(ReadError::Api {
                what: what(),
                source,
            }),
        }
    }
}

/// The workloads the watcher keeps, each kind once listed (`None` until then: it is read).
#[derive(Clone, Default)]
pub struct WorkloadStores {
    pub deployments: Option<Store<Deployment>>,
    pub statefulsets: Option<Store<StatefulSet>>,
    pub daemonsets: Option<Store<DaemonSet>>,
    pub cronjobs: Option<Store<CronJob>>,
}

impl WorkloadStores {
    /// The workload as kept, as JSON: `Some(None)` when its kind is kept and it does not exist,
    /// `None` when its kind is not kept (then it is read).
    fn get(&self, workload: &Workload) -> Option<Option<serde_json::Value>> {
        fn kept<K>(store: &Store<K>, workload: &Workload) -> Option<serde_json::Value>
        where
            K: kube::Resource<DynamicType = ()> + Clone + serde::Serialize,
        {
            let key = ObjectRef::new(&workload.name).within(&workload.namespace);
            store
                .get(&key)
                .and_then(|object| serde_json::to_value(&*object).ok())
        }
        match workload.kind.as_str() {
            "Deployment" => Some(kept(self.deployments.as_ref()?, workload)),
            "StatefulSet" => Some(kept(self.statefulsets.as_ref()?, workload)),
            "DaemonSet" => Some(kept(self.daemonsets.as_ref()?, workload)),
            "CronJob" => Some(kept(self.cronjobs.as_ref()?, workload)),
            _ => None,
        }
    }
}

/// The StorageClasses that allow volume expansion (none when they cannot be listed in time:
/// claims are then not expanded, only their fixes recorded).
pub async fn expandable_classes(client: &Client, timeout: std::time::Duration) -> BTreeSet<String> {
    let api: Api<StorageClass> = Api::all(client.clone());
    match call::within(
        timeout,
        || "listing StorageClasses".into(),
        api.list(&ListParams::default()),
    )
    .await
    {
        Ok(Ok(list)) => list
            .items
            .into_iter()
            .filter(|c| c.allow_volume_expansion == Some(true))
            .filter_map(|c| c.metadata.name)
            .collect(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not list StorageClasses; no claim is expanded");
            BTreeSet::new()
        }
        Err(elapsed) => {
            tracing::warn!(%elapsed, "no claim is expanded");
            BTreeSet::new()
        }
    }
}
