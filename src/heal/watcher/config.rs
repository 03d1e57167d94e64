//! How the watcher behaves.

use std::time::Duration;

use crate::cluster::limits::LimitSnapshot;
use crate::heal::detect::Thresholds;
use crate::heal::plan::Rails;
use crate::heal::probe::ProbeTarget;
use crate::heal::run::Scope;

/// How the watcher behaves.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    pub scope: Scope,
    /// Only these namespaces (empty: all).
    pub include: Vec<String>,
    pub rails: Rails,
    pub thresholds: Thresholds,
    /// Watch `kubernetes.io/tls` Secrets and check their certificates (needs RBAC on Secrets).
    pub check_certificates: bool,
    /// How soon a certificate still wrong after its handling is looked at again.
    pub certificate_interval: Duration,
    /// The namespaces' LimitRange maxima, kept current by a watch (`limits::keep_current`).
    pub limits: LimitSnapshot,
    /// Dependencies probed over TCP (`namespace/service:port`).
    pub probes: Vec<ProbeTarget>,
    pub probe_interval: Duration,
    /// Workloads handled at the same time.
    pub concurrency: usize,
    /// Longest time one workload's diagnosis and fix may take; then it is retried later.
    pub handle_timeout: Duration,
    /// Keep Deployments, StatefulSets, DaemonSets and CronJobs in stores (RBAC list/watch on
    /// them), so a raise or a restart reads its workload with no GET; off, each is read when a
    /// decision needs it.
    pub watch_workloads: bool,
}

impl WatcherConfig {
    /// The defaults `selfheal serve` uses, for a scope (its protected namespaces are protected
    /// for the rails too).
    pub fn new(scope: Scope, mut rails: Rails, limits: LimitSnapshot) -> Self {
        for namespace in &scope.protected {
            if !rails.targeting.is_protected(namespace) {
                rails.targeting.protected.push(namespace.clone());
            }
        }
        Self {
            scope,
            include: Vec::new(),
            rails,
            thresholds: Thresholds::default(),
            check_certificates: true,
            certificate_interval: Duration::from_secs(600),
            limits,
            probes: Vec::new(),
            probe_interval: Duration::from_secs(30),
            concurrency: 4,
            handle_timeout: Duration::from_secs(60),
            watch_workloads: false,
        }
    }
}
