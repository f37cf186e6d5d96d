//! Incremental operators over delta batches, one file per operator, with their state
//! in the store, and the dataflow that runs one segment's operators for a step.
//!
//! ```text
//!   relation deltas ─▶ Source ─▶ Filter/Project ─▶ TemporalFilter ─▶ Aggregate ─▶ Membership ─▶ changes
//!                                                   │  timers ▲          state        members
//!                                                   └─────────┘ TimerQueue: one per engine, in instant order
//! ```

pub mod aggregate;
pub mod context;
pub mod dataflow;
pub mod expr;
pub mod filter;
pub mod join;
pub mod membership;
pub mod project;
pub mod state_table;
pub mod temporal_filter;
pub mod timer_queue;

pub use context::StepContext;
pub use dataflow::{SegmentDataflow, StepInput};
pub use membership::{ChangeKind, MemberChange};
