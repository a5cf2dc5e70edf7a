//! The single-threaded executor: runs nodes one by one in priority order, on the
//! calling thread. Deterministic; use it to debug (a panic's backtrace is yours).

use super::plan::{Plan, Run};
use crate::error::ComputeError;

pub(crate) fn execute(plan: &Plan, run: &Run<'_>) -> Result<(), ComputeError> {
    for &i in &plan.order {
        run.execute(i, 0)?;
    }
    Ok(())
}
