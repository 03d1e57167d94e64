//! Cluster-wide state that both halves use: leader election, and the facts every raise obeys
//! (LimitRanges, ResourceQuotas, Nodes), kept current by watches in one snapshot (`facts`).

pub mod facts;
pub mod leader;
pub mod limits;
pub mod nodes;
pub mod quotas;

use kube::api::{PatchParams, PostParams};

/// The field manager every write of selfheal's carries, so `managedFields` names selfheal
/// (without it the apiserver records the client's User-Agent, which kube-rs leaves empty, and an
/// owner's non-forced server-side apply then conflicts with the manager `""`).
pub const FIELD_MANAGER: &str = "selfheal";

/// Parameters of a create or replace by selfheal.
pub fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

/// Parameters of a (non-apply) patch by selfheal.
pub fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}
