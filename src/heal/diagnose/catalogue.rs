//! The catalogue: known causes and the error patterns that reveal them, one row each, in
//! priority order. Adding a pattern is adding a row and a test with a realistic line.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// A known cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Cause {
    OutOfMemory,
    NoSpaceLeft,
    ConnectionRefused,
    DnsFailure,
    PermissionDenied,
    MissingConfigMap,
    MissingSecret,
    ImageNotFound,
    ImageUnauthorized,
    RegistryTimeout,
    UnboundClaim,
    StorageClassMissing,
    NoDefaultStorageClass,
    ProvisioningFailed,
    MountFailed,
    InsufficientCpu,
    InsufficientMemory,
    /// A certificate is expired, not yet valid, expiring, unparsable or mismatched.
    CertificateInvalid,
    /// `Unhealthy`: "Readiness probe failed: ..." (or "errored": the probe could not run).
    ReadinessProbeFailed,
    /// `FailedCreatePodSandBox`: the runtime could not set up the pod (network, cgroups).
    SandboxFailed,
    /// `NetworkNotReady`: the node's network plugin (CNI) is not ready.
    NetworkNotReady,
    /// "couldn't find key K in Secret ns/name".
    MissingSecretKey,
    /// "couldn't find key K in ConfigMap ns/name".
    MissingConfigMapKey,
    /// The container's configuration is refused for another reason than a missing object.
    InvalidContainerConfig,
    /// The container's command does not exist in its image.
    CommandNotFound,
    /// `InvalidImageName`: the image reference does not parse.
    InvalidImageName,
    /// `ErrImageNeverPull`: the image is not on the node and `imagePullPolicy: Never`.
    ImageNeverPulled,
    /// `ImageInspectError`: the runtime could not inspect the image.
    ImageInspectFailed,
    /// `RunContainerError`: the runtime could not start the container.
    ContainerStartFailed,
    /// `CreateContainerError`: the runtime could not create the container.
    ContainerCreateFailed,
    /// `PreStartHookError` / `PreCreateHookError`: the kubelet's own hook before the container.
    KubeletHookFailed,
    /// The container exited non-zero (the exit code and the kubelet's reason are the evidence).
    NonZeroExit,
    /// Evicted because the node ran low on memory.
    NodeLowOnMemory,
    /// Evicted because the node ran low on disk (ephemeral storage, nodefs, imagefs).
    NodeLowOnDisk,
    /// Evicted for exceeding its own ephemeral storage limit (containers or an emptyDir).
    EphemeralStorageExceeded,
    /// Evicted, for a reason the message gives.
    Evicted,
    /// `DeadlineExceeded`: `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// The node shut down and terminated the pod.
    NodeShutdown,
    /// The node refused the pod at admission (`OutOfcpu`, `NodeAffinity`, ...).
    RejectedByNode,
    /// `SchedulingGated`: `spec.schedulingGates` hold the pod back from the scheduler.
    SchedulingGated,
    /// Nodes carry taints the pod does not tolerate.
    UntoleratedTaint,
    /// No node matches the pod's node selector or affinity.
    NodeSelectorMismatch,
    /// The scheduler found no node for the pod (its message says which filters failed).
    NoFittingNode,
    /// A Lost claim: its PersistentVolume is gone.
    VolumeLost,
    /// Nothing in the catalogue matched and the cluster gave no reason.
    Unknown,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::OutOfMemory => "out of memory",
            Cause::NoSpaceLeft => "no space left on device",
            Cause::ConnectionRefused => "connection refused",
            Cause::DnsFailure => "DNS resolution failure",
            Cause::PermissionDenied => "permission denied",
            Cause::MissingConfigMap => "missing ConfigMap",
            Cause::MissingSecret => "missing Secret",
            Cause::ImageNotFound => "image not found",
            Cause::ImageUnauthorized => "image pull unauthorized",
            Cause::RegistryTimeout => "registry timeout",
            Cause::UnboundClaim => "unbound PersistentVolumeClaim",
            Cause::StorageClassMissing => "StorageClass not found",
            Cause::NoDefaultStorageClass => "no StorageClass and no default",
            Cause::ProvisioningFailed => "volume provisioning failed",
            Cause::MountFailed => "volume mount failed",
            Cause::InsufficientCpu => "insufficient cpu on nodes",
            Cause::InsufficientMemory => "insufficient memory on nodes",
            Cause::CertificateInvalid => "certificate invalid",
            Cause::ReadinessProbeFailed => "readiness probe failing",
            Cause::SandboxFailed => "pod sandbox creation failed",
            Cause::NetworkNotReady => "node network plugin not ready",
            Cause::MissingSecretKey => "missing key in Secret",
            Cause::MissingConfigMapKey => "missing key in ConfigMap",
            Cause::InvalidContainerConfig => "invalid container configuration",
            Cause::CommandNotFound => "command not found in image",
            Cause::InvalidImageName => "invalid image name",
            Cause::ImageNeverPulled => "image not on node, pull policy Never",
            Cause::ImageInspectFailed => "image inspection failed",
            Cause::ContainerStartFailed => "container runtime could not start the container",
            Cause::ContainerCreateFailed => "container runtime could not create the container",
            Cause::KubeletHookFailed => "kubelet internal container hook failed",
            Cause::NonZeroExit => "exited with an error",
            Cause::NodeLowOnMemory => "evicted: node low on memory",
            Cause::NodeLowOnDisk => "evicted: node low on disk",
            Cause::EphemeralStorageExceeded => "evicted: ephemeral storage limit exceeded",
            Cause::Evicted => "evicted by the kubelet",
            Cause::DeadlineExceeded => "active deadline exceeded",
            Cause::NodeShutdown => "node shut down",
            Cause::RejectedByNode => "rejected by the node",
            Cause::SchedulingGated => "held by scheduling gates",
            Cause::UntoleratedTaint => "untolerated node taints",
            Cause::NodeSelectorMismatch => "no node matches selector or affinity",
            Cause::NoFittingNode => "no node fits the pod",
            Cause::VolumeLost => "bound volume is gone",
            Cause::Unknown => "unknown",
        }
    }
}

/// One row of the catalogue: a cause and the (case-insensitive) pattern that reveals it. Named
/// captures `host`, `port`, `name` (or `missing`, which wins) are carried into the diagnosis.
pub(super) struct Pattern {
    cause: Cause,
    regex: &'static str,
}

/// The catalogue, most specific first. Lines of events read `Reason: message`, so a row may match
/// an event's reason (`^FailedMount:`).
pub(super) const CATALOGUE: &[Pattern] = &[
    // What the kubelet reports about probes, sandboxes and evictions quotes other errors (a probe's
    // "connection refused", a CNI plugin's "Unauthorized"): those rows come first.
    Pattern {
        cause: Cause::ReadinessProbeFailed,
        regex: r"Readiness probe (?:failed|errored)",
    },
    Pattern {
        cause: Cause::SandboxFailed,
        regex: r"Failed to create pod sandbox|^FailedCreatePodSandBox:",
    },
    Pattern {
        cause: Cause::NetworkNotReady,
        regex: r"network is not ready|NetworkPluginNotReady|cni plugin not initialized",
    },
    Pattern {
        cause: Cause::NodeLowOnMemory,
        regex: r"The node was low on resource: memory",
    },
    Pattern {
        cause: Cause::NodeLowOnDisk,
        regex: r"The node was low on resource: (?:ephemeral-storage|nodefs|imagefs)|The node had condition: \[DiskPressure\]",
    },
    Pattern {
        cause: Cause::EphemeralStorageExceeded,
        regex: r"ephemeral local storage usage exceeds|exceeded its local ephemeral storage limit|Usage of EmptyDir volume .* exceeds the limit",
    },
    Pattern {
        cause: Cause::DeadlineExceeded,
        regex: r"Pod was active on the node longer than the specified deadline",
    },
    Pattern {
        cause: Cause::NodeShutdown,
        regex: r"in response to imminent node shutdown|node is shutting down",
    },
    Pattern {
        cause: Cause::OutOfMemory,
        regex: r"OOMKilled|out of memory|OutOfMemoryError|Cannot allocate memory|heap out of memory|\bMemoryError\b|memory limit exceeded",
    },
    Pattern {
        cause: Cause::NoSpaceLeft,
        regex: r"no space left on device|ENOSPC|disk quota exceeded|could not extend file",
    },
    Pattern {
        cause: Cause::MissingSecretKey,
        regex: r"couldn't find (?P<missing>key \S+ in Secret [a-z0-9.-]+/[a-z0-9.-]+)",
    },
    Pattern {
        cause: Cause::MissingConfigMapKey,
        regex: r"couldn't find (?P<missing>key \S+ in ConfigMap [a-z0-9.-]+/[a-z0-9.-]+)",
    },
    Pattern {
        cause: Cause::MissingConfigMap,
        regex: r#"configmaps? "(?P<name>[a-z0-9.-]+)" not found"#,
    },
    Pattern {
        cause: Cause::MissingSecret,
        regex: r#"secrets? "(?P<name>[a-z0-9.-]+)" not found"#,
    },
    Pattern {
        cause: Cause::StorageClassMissing,
        regex: r#"storageclass\.storage\.k8s\.io "(?P<name>[a-z0-9.-]+)" not found"#,
    },
    Pattern {
        cause: Cause::NoDefaultStorageClass,
        regex: r"no persistent volumes available for this claim and no storage class is set",
    },
    Pattern {
        cause: Cause::UnboundClaim,
        regex: r"unbound immediate PersistentVolumeClaims|persistentvolumeclaim .* not found|waiting for first consumer",
    },
    Pattern {
        cause: Cause::ProvisioningFailed,
        regex: r"failed to provision volume|ProvisioningFailed",
    },
    Pattern {
        cause: Cause::MountFailed,
        regex: r"MountVolume\.\w+ failed|Unable to attach or mount volumes|timed out waiting for the condition|AttachVolume\.Attach failed|^Failed(?:Mount|AttachVolume|MapVolume):",
    },
    Pattern {
        cause: Cause::ImageUnauthorized,
        regex: r"unauthorized|authentication required|pull access denied|403 Forbidden|denied: requested access",
    },
    Pattern {
        cause: Cause::ImageNotFound,
        regex: r"manifest unknown|not found: manifest|repository does not exist|name unknown|failed to resolve reference .*: not found",
    },
    Pattern {
        cause: Cause::RegistryTimeout,
        regex: r"i/o timeout|TLS handshake timeout|context deadline exceeded|dial tcp .*: connect: connection timed out",
    },
    Pattern {
        cause: Cause::ConnectionRefused,
        regex: r"(?:(?:dial tcp|connect to|connecting to|connect\(\)|at|to)\s+(?P<host>[A-Za-z0-9_.-]+):(?P<port>\d{2,5})\b.{0,80}?)?(?:connection refused|ECONNREFUSED)(?:.{0,80}?\b(?P<host2>[A-Za-z0-9_.-]+):(?P<port2>\d{2,5})\b)?",
    },
    Pattern {
        cause: Cause::CommandNotFound,
        regex: r#"exec: "(?P<missing>[^"]+)": (?:stat [^:]+: no such file or directory|executable file not found in \$PATH)"#,
    },
    Pattern {
        cause: Cause::DnsFailure,
        regex: r"no such host|Name or service not known|Temporary failure in name resolution|getaddrinfo (?:ENOTFOUND|EAI_AGAIN)|could not resolve host|Could not resolve hostname",
    },
    Pattern {
        cause: Cause::PermissionDenied,
        regex: r"permission denied|EACCES|Operation not permitted|read-only file system",
    },
    Pattern {
        cause: Cause::InsufficientMemory,
        regex: r"Insufficient memory",
    },
    Pattern {
        cause: Cause::InsufficientCpu,
        regex: r"Insufficient cpu",
    },
    Pattern {
        cause: Cause::UntoleratedTaint,
        regex: r"untolerated taint|had taints? that the pod didn't tolerate",
    },
    Pattern {
        cause: Cause::NodeSelectorMismatch,
        regex: r"didn't match Pod's node affinity/selector|didn't match node selector",
    },
    Pattern {
        cause: Cause::NoFittingNode,
        regex: r"^FailedScheduling:|\d+/\d+ nodes are available",
    },
];

pub(super) static COMPILED: LazyLock<Vec<(Cause, Regex)>> = LazyLock::new(|| {
    CATALOGUE
        .iter()
        .filter_map(|p| {
            regex::RegexBuilder::new(p.regex)
                .case_insensitive(true)
                .build()
                .ok()
                .map(|regex| (p.cause, regex))
        })
        .collect()
});
