//! Prometheus metrics, served on the health port at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub kind: String,
    pub operation: String,
    /// `patched`, `unchanged`, a skip reason, `error` or `bad_request`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FixTypeLabels {
    pub fix_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabels {
    /// `document` (the whole store unreadable), `entry` (one bad fix), `write`, `watch`,
    /// `deleted` (the ConfigMap vanished; the fixes in memory are kept), `too_large` (the
    /// apiserver refused a write past the 1 MiB ConfigMap limit; nothing stored changed).
    pub error: String,
}

/// The labels of `selfheal_healing_actions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealingLabels {
    /// The decision: `RaiseMemory`, `EvictPod`, `UnsealVault`, `Report`, ...
    pub action: String,
    /// `done`, `unchanged`, `dry_run`, `rate_limited`, `reported`, `alerted`, `refused`,
    /// `failed`.
    pub result: String,
    /// For `refused` (and `dry_run`): the rail that stopped the action (`protected_namespace`,
    /// `disruption_budget`, ...); empty otherwise.
    pub rail: String,
}

/// `selfheal_healing_actions_total` without its `rail` label (counted with `rail=""`): the
/// label set this family had before it had one. Prefer [`HealingLabels`].
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ActionLabels {
    pub action: String,
    pub result: String,
}

impl From<&ActionLabels> for HealingLabels {
    fn from(labels: &ActionLabels) -> Self {
        HealingLabels {
            action: labels.action.clone(),
            result: labels.result.clone(),
            rail: String::new(),
        }
    }
}

impl From<&HealingLabels> for HealingLabels {
    fn from(labels: &HealingLabels) -> Self {
        labels.clone()
    }
}

/// The family `selfheal_healing_actions_total`.
#[derive(Clone, Debug, Default)]
pub struct HealingActions(Family<HealingLabels, Counter>);

impl HealingActions {
    /// The counter of one label set (created at zero).
    pub fn get_or_create<'a, L>(&self, labels: &'a L) -> impl std::ops::Deref<Target = Counter> + '_
    where
        &'a L: Into<HealingLabels>,
    {
        self.0.get_or_create(&labels.into())
    }

    /// Counts one decision carried out (or not).
    pub fn count(&self, action: &str, result: &str, rail: &str) {
        self.0
            .get_or_create(&HealingLabels {
                action: action.to_string(),
                result: result.to_string(),
                rail: rail.to_string(),
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProblemLabels {
    pub problem: String,
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretLabels {
    pub namespace: String,
    pub secret: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AddressLabels {
    pub address: String,
}

/// Every metric selfheal exports.
pub struct Metrics {
    registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub review_seconds: Histogram,
    pub patches_applied: Family<FixTypeLabels, Counter>,
    pub store_errors: Family<StoreErrorLabels, Counter>,
    pub fixes_loaded: Gauge,
    /// Bytes of the stored `fixes.yaml` (a ConfigMap's data may hold at most 1 MiB).
    pub store_bytes: Gauge,
    pub store_reloads: Counter,
    pub problems_detected: Family<ProblemLabels, Counter>,
    pub healing_actions: HealingActions,
    pub leader: Gauge,
    /// Workloads and objects waiting for the watcher (due now or at a later check).
    pub watcher_queue: Gauge,
    /// Objects the watcher holds in memory (a problem to handle or a check due later).
    pub watcher_tracked: Gauge,
    pub certificate_expiry: Family<SecretLabels, Gauge>,
    pub vault_sealed: Family<AddressLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("selfheal");
        let reviews = Family::<ReviewLabels, Counter>::default();
        // 50µs .. ~0.4s: admission decisions are sub-millisecond, the tail tells of trouble.
        let review_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 14));
        let patches_applied = Family::<FixTypeLabels, Counter>::default();
        let store_errors = Family::<StoreErrorLabels, Counter>::default();
        let fixes_loaded = Gauge::default();
        let store_reloads = Counter::default();
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Bytes of the stored fixes.yaml; the apiserver refuses a ConfigMap whose data exceeds 1048576 bytes",
            store_bytes.clone(),
        );
        registry.register(
            "admission_reviews",
            "AdmissionReviews answered, by kind, operation and result",
            reviews.clone(),
        );
        registry.register(
            "admission_review_duration_seconds",
            "Time to decide and encode one AdmissionReview",
            review_seconds.clone(),
        );
        registry.register(
            "patches_applied",
            "Fix applications made at admission (dry-run requests excluded)",
            patches_applied.clone(),
        );
        registry.register(
            "store_errors",
            "Problems reading or writing the fix store",
            store_errors.clone(),
        );
        registry.register(
            "fixes_loaded",
            "Fixes in the snapshot the webhook serves from",
            fixes_loaded.clone(),
        );
        registry.register(
            "store_reloads",
            "Times the fix snapshot was replaced",
            store_reloads.clone(),
        );
        let problems_detected = Family::<ProblemLabels, Counter>::default();
        let healing_actions = HealingActions::default();
        let leader = Gauge::default();
        let certificate_expiry = Family::<SecretLabels, Gauge>::default();
        let vault_sealed = Family::<AddressLabels, Gauge>::default();
        registry.register(
            "vault_sealed",
            "1 while a watched Vault server is sealed or unreachable, 0 when unsealed",
            vault_sealed.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the certificate in each kubernetes.io/tls Secret, as a Unix time",
            certificate_expiry.clone(),
        );
        registry.register(
            "problems_detected",
            "Problems the watcher handled, by problem and diagnosed cause",
            problems_detected.clone(),
        );
        registry.register(
            "healing_actions",
            "Healing decisions carried out (or not), by action, result and the rail that stopped one",
            healing_actions.0.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the watcher lease and may act",
            leader.clone(),
        );
        let watcher_queue = Gauge::default();
        registry.register(
            "watcher_queue_keys",
            "Keys (workloads, claims, Secrets) in the watcher's queue, due now or at a later check",
            watcher_queue.clone(),
        );
        let watcher_tracked = Gauge::default();
        registry.register(
            "watcher_tracked_objects",
            "Objects the watcher holds: a problem to handle or a time-based check due later",
            watcher_tracked.clone(),
        );
        Self {
            watcher_queue,
            watcher_tracked,
            registry,
            problems_detected,
            healing_actions,
            leader,
            certificate_expiry,
            vault_sealed,
            reviews,
            review_seconds,
            patches_applied,
            store_errors,
            fixes_loaded,
            store_bytes,
            store_reloads,
        }
    }

    pub fn store_error(&self, error: &str) {
        self.store_errors
            .get_or_create(&StoreErrorLabels {
                error: error.to_string(),
            })
            .inc();
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
