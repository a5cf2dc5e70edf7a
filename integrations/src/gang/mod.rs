//! What gang trainings share (distributed XGBoost, the native DL trainer):
//! which worker trains on which blocks ([`plan`]), and rank 0's progress
//! and checkpoint channel to the client ([`report`]).

pub mod plan;
pub mod report;
