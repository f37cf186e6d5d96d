use std::path::PathBuf;

use segstream_engine::{ClockMode, Engine, EngineOptions};

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh engine on a temporary data directory with the manual clock. The directory
/// lives as long as the returned guard. Backfills run in the default batches of 50,000
/// rows; the oracle test runs some cases in batches of three.
pub fn fresh_engine() -> (Engine, tempfile::TempDir) {
    fresh_engine_with(|options| options)
}

/// [`fresh_engine`] with options changed by `configure`.
pub fn fresh_engine_with(
    configure: impl FnOnce(EngineOptions) -> EngineOptions,
) -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Engine::open(configure(EngineOptions::new(dir.path()).with_clock(ClockMode::Manual)))
        .expect("engine opens");
    (engine, dir)
}

/// The reference workload's seven segments (sql-examples/workload/segments.sql), in order.
pub const WORKLOAD_SEGMENTS: [&str; 7] = [
    "pricing_hot",
    "cart_abandoners",
    "recent_buyers",
    "lapsed_high_value",
    "winback_now",
    "rfm_champions",
    "welcome_offer",
];

/// The reference workload's schema, as the product ships it.
pub fn workload_schema() -> String {
    std::fs::read_to_string(repo_root().join("sql-examples/workload/schema.sql")).expect("workload schema")
}

pub fn workload_segments() -> String {
    std::fs::read_to_string(repo_root().join("sql-examples/workload/segments.sql"))
        .expect("workload segments")
}
