//! The scheduler as a pure state machine: [`SchedulerState::handle`] takes an
//! [`Event`] and the current time and returns the [`Command`]s to carry out.
//! No I/O happens here; the gRPC server around it is a thin loop.
//!
//! Task states (`SchedTask::state`):
//!
//! ```text
//!                 submit                 deps in memory          slot free
//!   (new) ──────────────► Waiting ──────────────────► Queued ──────────────► Processing
//!                           ▲  ▲                         ▲                     │    │
//!              dep lost     │  │ dep lost / data missing │ retry / worker lost │    │ finished
//!                           │  └─────────────────────────┼─────────────────────┘    ▼
//!                           └──────────────── Released ◄─┴─── holder lost ──── Memory
//!                                                                                  │ nobody needs it
//!   Processing ── failed, no retries left / killed 3 workers ──► Erred              ▼
//!   Waiting ── a dependency erred ──► Erred                                    (forgotten)
//! ```
//!
//! Placement: ready tasks wait in one queue ordered by (client priority,
//! submission order). A task leaves the queue only when some running worker
//! has a free slot (`nthreads × SATURATION` tasks in flight), so a huge fan-out
//! of roots is not pushed onto workers at once (root-task queuing). Among
//! workers with a free slot it goes to the one that would fetch the fewest
//! bytes of dependencies (data locality), then to the least occupied one.
//! Because assignment happens this late, a busy worker holds at most a short
//! backlog (20 ms of expected work per thread); when workers sit idle with
//! nothing queued, the scheduler steals unstarted tasks from that backlog,
//! best compute-to-communication ratio first.
//!
//! Gangs ([`Gang`]): members wait, queued, until every member is queued;
//! then all are assigned at once to distinct running workers with a free
//! thread (pinned members first), or none is. A member's failure, its
//! input's failure, its worker's death or the loss of its result errs the
//! whole gang (running members are freed on their workers); nothing in a
//! gang is retried alone.

pub mod activity;
pub mod logs;
mod state;

pub use state::*;
