//! Runs segstream statements against a data directory: keeps the catalog (persisted,
//! reloaded on start), the clock, stored stream events and table rows, and answers ad
//! hoc queries with DataFusion in batch.
//!
//! ```text
//!   text -> segstream-sql (parse, plan) -> Engine::execute_statement -> a Step -> Engine::commit -> journal record + state in memory
//!                                                                                                   └─ Engine::checkpoint -> RocksDB
//! ```

mod change_log;
mod change_log_retention;
mod clock;
mod engine;
mod forget;
mod ingest;
mod journal_record;
mod lookup;
mod maintain;
mod output;
mod query;
mod recovery;
mod rows;
mod step;
mod stream_retention;

pub use change_log::ChangeRecord;
pub use change_log_retention::ChangeLogRetention;
pub use clock::ClockMode;
pub use engine::{Engine, EngineOptions, TimerPassStats};
pub use forget::ForgetReport;
pub use ingest::{IngestReport, IngestRows, RejectedRow};
pub use lookup::{ChangeLogReader, MemberRecord};
pub use maintain::BackfillProgress;
pub use output::Output;
pub use recovery::CheckpointTotals;
pub use segstream_ops::ChangeKind;
pub use segstream_state::{CacheStats, DEFAULT_CACHE_BYTES as DEFAULT_STATE_CACHE_BYTES};
