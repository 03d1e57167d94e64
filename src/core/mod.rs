//! Domain types and pure rules, with no Kubernetes I/O: the fix model and its merge rule, byte
//! quantities, the `fixes.yaml` document, the lookup index, the owner chain, the kinds of
//! workload and the memory raise rule both halves apply (`raise`).

pub mod document;
pub mod fix;
pub mod index;
pub mod owners;
pub mod quantity;
pub mod raise;
pub mod workload;
