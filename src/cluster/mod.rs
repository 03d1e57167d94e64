//! Cluster-wide state that both halves use: leader election, and the facts every raise obeys
//! (LimitRanges, ResourceQuotas, Nodes), kept current by watches in one snapshot (`facts`).

pub mod facts;
pub mod leader;
pub mod limits;
pub mod nodes;
pub mod quotas;
