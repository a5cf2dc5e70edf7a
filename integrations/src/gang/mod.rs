//! What gang trainings share (distributed XGBoost, the native DL trainer):
//! which worker trains on which blocks ([`plan`]), and rank 0's progress
//! and checkpoint channel to the client ([`report`]).

pub mod plan;
pub mod report;

use rask_core::array::Block;
use rask_distributed::{Client, Future};

/// Each block's holder (`None` while it is being recomputed) and bytes
/// (`estimate` when no worker holds it): the input of [`plan::assign`].
pub fn holders<'a>(
    client: &Client,
    blocks: impl IntoIterator<Item = (&'a Future<Block>, u64)>,
) -> Vec<(Option<String>, u64)> {
    blocks
        .into_iter()
        .map(|(f, estimate)| match client.who_has(f) {
            Some((addr, bytes)) => (Some(addr), bytes),
            None => (None, estimate),
        })
        .collect()
}
