//! Domain types and pure rules, with no Kubernetes I/O: the fix model and its merge rule, byte
//! quantities, the `fixes.yaml` document, the lookup index, the owner chain, the kinds of
//! workload, the memory raise rule both halves apply (`raise`), whether a raise fits the
//! cluster's quotas and nodes (`headroom`), and targeting (which objects selfheal may change).

pub mod document;
pub mod fix;
pub mod headroom;
pub mod index;
pub mod owners;
pub mod quantity;
pub mod raise;
pub mod targeting;
pub mod workload;
