//! Cluster-wide state that both halves use: leader election and the LimitRange snapshot.

pub mod leader;
pub mod limits;
