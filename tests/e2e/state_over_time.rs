//! Bounded state over time: months of steady traffic on the manual clock, with the
//! reference workload's seven segments live, an `events` stream kept for 90 days (the
//! longest window of any segment, so no segment's result changes) and a change log kept
//! for 7 days. Once the retention has passed, the state stops growing: the keys of
//! every kind and the compacted bytes on disk stay flat while events keep arriving.
//!
//! What the server does every second is done here once a simulated day: delete the
//! events past the retention and trim the change logs. At each checkpoint every segment's
//! maintained members and attributes must equal its SELECT run in batch (DataFusion, with
//! `NOW()` at the clock) over the events kept: months of deletions and trimming must not
//! change what a segment holds.
//!
//! CI simulates 130 days of 1,000 events a day (about 1.5 minutes in a debug build); a longer run:
//! `SEGSTREAM_STATE_DAYS=365 SEGSTREAM_STATE_EVENTS_PER_DAY=5000 cargo test -p segstream --test e2e state_over_time -- --nocapture`.

use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use segstream_engine::{ChangeLogRetention, Engine, IngestRows};
use segstream_types::Timestamp;
use segstream_workload::{profiles, EventGenerator, WorkloadConfig};

use crate::support::{fresh_engine, workload_schema, workload_segments};

const RETENTION_DAYS: i64 = 90;

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Bytes of the data directory's table files (after a compaction: live data only).
fn table_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("lists the data directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sst"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// A segment's rows as text, sorted by the key (the first column).
fn rows_by_key(batch: &RecordBatch) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = (0..batch.num_rows())
        .map(|r| batch.columns().iter().map(|c| array_value_to_string(c, r).unwrap_or_default()).collect())
        .collect();
    rows.sort();
    rows
}

/// Every segment's maintained members and attributes against its SELECT run in batch.
/// The same keys, and the same attributes; a float SUM or AVG only to 1e-9 of its value,
/// since a running sum kept through retractions can differ from a batch sum in its last
/// bits (docs/architecture.md).
async fn check_segments(engine: &Engine, day: i64) {
    let (mut compared, mut inexact) = (0, 0);
    for name in crate::support::WORKLOAD_SEGMENTS {
        let maintained = engine.members(name).await.expect("members");
        let judged = engine.batch_members(name).await.expect("batch members");
        let (got, want) = (rows_by_key(&maintained), rows_by_key(&judged));
        let keys = |rows: &[Vec<String>]| rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        assert_eq!(keys(&got), keys(&want), "day {day}: the members of {name}");
        let floats: Vec<bool> = judged
            .schema()
            .fields()
            .iter()
            .map(|f| matches!(f.data_type(), DataType::Float64 | DataType::Float32))
            .collect();
        for (g, w) in got.iter().zip(&want) {
            for ((a, b), float) in g.iter().zip(w).zip(&floats) {
                let close = || match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                    _ => false,
                };
                assert!(
                    a == b || (*float && close()),
                    "day {day}: {name}'s member {}: {g:?} but batch SQL says {w:?}",
                    g[0]
                );
                inexact += usize::from(a != b);
            }
        }
        compared += usize::from(!got.is_empty());
    }
    eprintln!("day {day:>4}: {compared} segments with members, as batch SQL says ({inexact} float values off in their last bits)");
    assert!(compared >= 3, "day {day}: only {compared} segments have members to compare");
}

struct Checkpoint {
    day: i64,
    keys: Vec<(&'static str, u64)>,
    bytes: u64,
}

impl Checkpoint {
    fn total(&self) -> u64 {
        self.keys.iter().map(|(_, n)| n).sum()
    }

    fn family(&self, name: &str) -> u64 {
        self.keys.iter().find(|(f, _)| *f == name).map(|(_, n)| *n).unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_stays_flat_after_the_longest_window() {
    let days = env("SEGSTREAM_STATE_DAYS", 130).max(RETENTION_DAYS + 20);
    let per_day = env("SEGSTREAM_STATE_EVENTS_PER_DAY", 1_000).max(8);
    let users = 300;
    let (mut engine, dir) = fresh_engine();
    let schema = workload_schema().replace("key = 'user_id')", "key = 'user_id', retention = '90 days')");
    assert!(schema.contains("retention = '90 days'"), "the workload's events stream takes the retention");
    engine.execute(&schema).await.expect("schema");
    let config = WorkloadConfig::new(users, (days * per_day) as u64, days);
    engine.advance_clock(Timestamp(config.start)).expect("clock");
    engine.ingest("profiles", IngestRows::Arrow(profiles(&config, 0, users))).expect("profiles");
    engine.execute(&workload_segments()).await.expect("segments");
    let change_logs =
        ChangeLogRetention { max_age: Some(Duration::from_secs(7 * 86_400)), max_changes: None };

    // Every 3 simulated hours: that period's events, then the clock to their end.
    let mut generator = EventGenerator::new(config.clone());
    let per_step = (per_day / 8) as usize;
    let checkpoints_at = [RETENTION_DAYS + 10, (RETENTION_DAYS + 10 + days) / 2, days];
    let mut checkpoints = Vec::new();
    for day in 1..=days {
        for _ in 0..8 {
            let batch = generator.next_batch(per_step);
            let report = engine.ingest("events", IngestRows::Arrow(batch)).expect("ingests");
            assert!(report.rejected.is_empty(), "{:?}", report.rejected);
            engine.advance_clock(Timestamp(generator.clock())).expect("advances");
        }
        engine.drop_expired_events().expect("drops expired events");
        engine.trim_change_logs(&change_logs).expect("trims the change logs");
        if checkpoints_at.contains(&day) {
            engine.compact_state().expect("compacts");
            check_segments(&engine, day).await;
            let checkpoint = Checkpoint {
                day,
                keys: engine.state_keys().expect("counts"),
                bytes: table_bytes(dir.path()),
            };
            eprintln!(
                "day {:>4}: {:>8} keys {:?}, {:>10} bytes in table files",
                checkpoint.day,
                checkpoint.total(),
                checkpoint.keys,
                checkpoint.bytes
            );
            checkpoints.push(checkpoint);
        }
    }

    // Stored events are the last 90 days' (plus the profiles), not the whole history.
    // Events are stored one block per ingest step (8 a day), and a block leaves with its
    // newest event: at most a day's blocks of slack.
    let first = &checkpoints[0];
    let retained_blocks = (RETENTION_DAYS * 8) as u64;
    for c in &checkpoints {
        let rows = c.family("rows");
        assert!(
            rows <= retained_blocks + users as u64 + 8,
            "day {}: {rows} stored rows and blocks for {retained_blocks} blocks of events in 90 days",
            c.day
        );
        assert!(rows >= retained_blocks * 9 / 10 + users as u64, "day {}: only {rows} stored rows", c.day);
    }
    // What a query sees of the stream is the 90 days' events, no more.
    let retained_events = (RETENTION_DAYS * per_day) as u64;
    let outputs = engine.execute("SELECT COUNT(*) AS n FROM events").await.expect("counts");
    let Some(segstream_engine::Output::Rows { batches, .. }) = outputs.last() else { panic!("{outputs:?}") };
    let seen =
        datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).expect("count");
    let seen: u64 = seen.parse().expect("a number");
    assert!(
        seen <= retained_events + per_day as u64 / 4 && seen >= retained_events * 9 / 10,
        "a query sees {seen} events, the 90 days hold {retained_events}"
    );
    // Flat: after the longest window, later checkpoints hold no more state than the
    // first one, within the noise of which users happen to be active.
    for c in &checkpoints[1..] {
        assert!(
            c.total() * 100 <= first.total() * 110,
            "state keys grew from {} on day {} to {} on day {}",
            first.total(),
            first.day,
            c.total(),
            c.day
        );
        assert!(
            c.bytes * 100 <= first.bytes * 115,
            "table files grew from {} bytes on day {} to {} on day {}",
            first.bytes,
            first.day,
            c.bytes,
            c.day
        );
    }
}
