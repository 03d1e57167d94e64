//! A Service whose selected pods have no ready endpoint.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{Problem, ProblemKind};

/// Whether `labels` satisfy an equality `selector` (a Service's `spec.selector`).
pub fn selects(
    selector: &std::collections::BTreeMap<String, String>,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    !selector.is_empty()
        && labels.is_some_and(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The problem of a Service whose selected pods (`pods`, same namespace) have no ready endpoint
/// in its EndpointSlices (`slices`, those labelled with its name).
pub fn service_problem(
    service: &Service,
    pods: &[Pod],
    slices: &[EndpointSlice],
) -> Option<Problem> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let spec = service.spec.as_ref()?;
    let selector = spec.selector.as_ref()?;
    let selected_pods = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|p| selects(selector, p.metadata.labels.as_ref()))
        .count();
    if selected_pods == 0 {
        return None;
    }
    let ready = slices
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                == Some(&name)
        })
        .flat_map(|s| s.endpoints.iter())
        // A missing `ready` means unknown, which consumers treat as ready.
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .count();
    (ready == 0).then(|| Problem {
        namespace,
        object_kind: "Service",
        object_name: name,
        uid: service.metadata.uid.clone().unwrap_or_default(),
        kind: ProblemKind::NoReadyEndpoints {
            selected_pods,
            port: spec.ports.as_ref().and_then(|p| p.first()).map(|p| p.port),
        },
    })
}
