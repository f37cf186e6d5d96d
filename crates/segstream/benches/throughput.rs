//! End-to-end ingest throughput on the reference workload (shared/WORKLOAD.md), in
//! process: events are generated, ingested in batches through `Engine::ingest`, every
//! live segment is updated and every change is durable in the change log before the
//! next batch. Reports events/s (and per core), peak RSS and state bytes per user, then
//! the recovery time: reopening the data directory and answering a first lookup.
//!
//! ```sh
//! SEGSTREAM_BENCH_USERS=1000000 SEGSTREAM_BENCH_EVENTS=2000000 cargo bench -p segstream --bench throughput
//! SEGSTREAM_BENCH_SEGMENTS=all cargo bench -p segstream --bench throughput   # all seven segments
//! SEGSTREAM_BENCH_SEGMENTS=many cargo bench -p segstream --bench throughput  # the 105 of the many-segment workload
//! SEGSTREAM_BENCH_STORAGE_FLOOR=1 cargo bench -p segstream --bench throughput # + storage alone
//! SEGSTREAM_BENCH_STORAGE_FLOOR=families cargo bench -p segstream --bench throughput # + per family
//! SEGSTREAM_BENCH_JOURNAL_FLOOR=1 cargo bench -p segstream --bench throughput  # + the journal alone
//! SEGSTREAM_BENCH_STATE_MIB=2048 cargo bench -p segstream --bench throughput     # another state budget
//! ```
//!
//! Durability is the journal: every ingest call and clock advance is a journal record,
//! synced before the call returns. Each batch is ingested at its generator instant with
//! `Engine::ingest_at`, as a wall-clock ingest catches the clock up: two records (the
//! advance, the rows), one sync. State is held in memory and checkpointed to RocksDB
//! (every 5 s, or at half the state budget), and those checkpoints are inside the timed
//! run, which ends with one (so every change is checkpointed once, wherever the run's
//! end falls). The recovery figures are after `kill -9` at the worst moment: events are
//! ingested (untimed) for almost a checkpoint interval after that last checkpoint, then
//! the engine is closed without one, so reopening replays all of them from the journal.
//!
//! With `SEGSTREAM_BENCH_STORAGE_FLOOR=1` the engine's write batches are recorded and,
//! after the run, written again in the same order into an empty store with the same
//! options and syncs: the events/s of RocksDB alone doing exactly the engine's writes,
//! with no operator work and no reads. No change to the operators can make the engine
//! faster than that, short of writing less. (Recording keeps every batch in memory, so
//! the peak RSS of such a run is not the engine's.)

/// The binary's allocator, configured as it is (see `src/allocator.rs`), so the figures
/// are the binary's.
/// (Its unit test runs with the binary's tests, not here.)
#[allow(dead_code, unused_imports)]
#[path = "../src/allocator.rs"]
mod allocator;

mod support;

use std::time::Instant;

use segstream_engine::{ClockMode, Engine, EngineOptions, IngestRows};
use segstream_types::Timestamp;
use segstream_workload::{EventGenerator, WorkloadConfig};
use support::process_cpu_seconds;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The engine's default checkpoint interval (`EngineOptions`).
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

fn main() {
    allocator::configure();
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let users = env("SEGSTREAM_BENCH_USERS", 100_000) as usize;
    let events = env("SEGSTREAM_BENCH_EVENTS", 200_000);
    let batch = env("SEGSTREAM_BENCH_BATCH", 1000) as usize;
    let dir = tempfile::tempdir().expect("temporary directory");
    // The state budget (`serve --state-cache-mib`); the engine's default unless given.
    let options = |dir: &std::path::Path| {
        let options = EngineOptions::new(dir).with_clock(ClockMode::Manual);
        match std::env::var("SEGSTREAM_BENCH_STATE_MIB").ok().and_then(|v| v.parse::<usize>().ok()) {
            Some(mib) => options.with_state_cache_bytes(mib << 20),
            None => options,
        }
    };
    let mut engine = Engine::open(options(dir.path())).expect("engine opens");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(engine.execute(include_str!("../../../sql-examples/workload/schema.sql")))
        .expect("workload schema");
    // The three segments of the incremental-core issue by default; `all`: the seven;
    // `many`: the 105 of the many-segment workload.
    let which = std::env::var("SEGSTREAM_BENCH_SEGMENTS").unwrap_or_default();
    let floor_mode = std::env::var("SEGSTREAM_BENCH_STORAGE_FLOOR").unwrap_or_default();
    let storage_floor = floor_mode == "1" || floor_mode == "families";
    if storage_floor {
        engine.record_store_writes().expect("recording");
    }
    let core = ["pricing_hot", "recent_buyers", "rfm_champions"];
    let definitions = match which.as_str() {
        "all" => segstream_workload::segments::seven(),
        "many" => segstream_workload::segments::many(),
        _ => segstream_workload::segments::seven()
            .into_iter()
            .filter(|(n, _)| core.contains(&n.as_str()))
            .collect(),
    };
    let with_profiles = which == "all" || which == "many";
    let mut segments = Vec::new();
    for (name, sql) in definitions {
        runtime.block_on(engine.execute(&sql)).expect("segment");
        segments.push(name);
    }
    let config = WorkloadConfig::new(users, events, 30);
    let mut generator = EventGenerator::new(config.clone());
    engine.advance_clock(Timestamp(config.start)).expect("clock");
    if with_profiles {
        // Every user has a profile; loaded before the clock starts, not timed.
        let mut from = 0;
        while from < users {
            let to = (from + 10_000).min(users);
            let report = engine
                .ingest("profiles", IngestRows::Arrow(segstream_workload::profiles(&config, from, to)))
                .expect("profiles");
            assert!(report.rejected.is_empty(), "{:?}", report.rejected.first());
            from = to;
        }
    }

    let setup_writes = if storage_floor {
        let setup = engine.take_recorded_store_writes().expect("recorded setup");
        engine.record_store_writes().expect("recording");
        setup
    } else {
        Vec::new()
    };

    // Generating events is the client's work, not the engine's: its time is measured and
    // taken out of both the wall time and the process's CPU time (the generator runs on
    // this thread, CPU-bound, so its wall time is its CPU time).
    let journal = engine.journal();
    let (records_before, bytes_before, syncs_before) =
        (journal.last().expect("journal position"), journal.bytes_written(), journal.syncs());
    let direct_before = engine.rocksdb_writes_outside_checkpoints();
    // The setup's checkpoints (segments created, profiles loaded) are not the run's.
    let checkpoints_before = engine.checkpoint_totals();
    let started = Instant::now();
    let cpu_started = process_cpu_seconds();
    let mut generating = std::time::Duration::ZERO;
    let mut rejected = 0;
    while generator.generated() < events {
        let n = batch.min((events - generator.generated()) as usize);
        let generated = Instant::now();
        let rows = generator.next_batch(n);
        generating += generated.elapsed();
        let report = engine
            .ingest_at("events", IngestRows::Arrow(rows), Timestamp(generator.clock()))
            .expect("ingest");
        rejected += report.rejected.len();
    }
    // Every change of the run checkpointed inside it: whether the run's end fell just
    // before or just after a timed checkpoint must not move the figure.
    engine.checkpoint().expect("final checkpoint");
    let elapsed = (started.elapsed() - generating).as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_started - generating.as_secs_f64();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rate = events as f64 / elapsed;
    let changes = engine.change_records().map(|r| r.len()).unwrap_or(0);
    let cache = engine.state_cache_stats().expect("cache stats");
    let passes = engine.timer_pass_stats();
    let run_writes = engine.take_recorded_store_writes().expect("recorded run");
    let checkpoints = engine.checkpoint_totals();
    let run_checkpoints = checkpoints.checkpoints - checkpoints_before.checkpoints;
    let run_entries = checkpoints.entries - checkpoints_before.entries;
    let run_checkpoint_bytes = checkpoints.bytes - checkpoints_before.bytes;
    let entries_per_family: Vec<String> = segstream_state::FAMILIES
        .iter()
        .zip(checkpoints.entries_by_family.iter().zip(checkpoints_before.entries_by_family))
        .zip(checkpoints.bytes_by_family.iter().zip(checkpoints_before.bytes_by_family))
        .filter(|((_, (after, before)), _)| **after > *before)
        .map(|((family, (after, before)), (bytes_after, bytes_before))| {
            let entries = after - before;
            format!(
                "{family} {:.2} of {:.0} bytes",
                entries as f64 / events as f64,
                (bytes_after - bytes_before) as f64 / entries as f64
            )
        })
        .collect();
    let records = journal.last().expect("journal position") - records_before;
    let journal_bytes = journal.bytes_written() - bytes_before;
    let journal_syncs = journal.syncs() - syncs_before;
    let direct_writes = engine.rocksdb_writes_outside_checkpoints() - direct_before;
    // Recovery at its worst: more events for as long as a checkpoint interval (untimed,
    // after the run's final checkpoint), then closed as `kill -9` would (no checkpoint)
    // just before the next checkpoint was due, and reopened: RocksDB holds the last
    // checkpoint and the journal after it is replayed; then a first lookup.
    let mut tail_started = Instant::now();
    let giving_up = Instant::now();
    let mut tail_events = 0;
    let mut checkpoints_seen = checkpoints.checkpoints;
    while tail_started.elapsed() < CHECKPOINT_INTERVAL.saturating_sub(std::time::Duration::from_secs(1))
        && giving_up.elapsed() < 3 * CHECKPOINT_INTERVAL
    {
        let rows = generator.next_batch(batch);
        tail_events += rows.num_rows();
        engine.ingest_at("events", IngestRows::Arrow(rows), Timestamp(generator.clock())).expect("ingest");
        // A checkpoint came early (the changes held reached half the state budget): the
        // tail to replay starts again after it.
        if engine.checkpoint_totals().checkpoints != checkpoints_seen {
            checkpoints_seen = engine.checkpoint_totals().checkpoints;
            tail_started = Instant::now();
            tail_events = 0;
        }
    }
    engine.close_without_checkpoint();
    drop(journal);
    let tail_elapsed = tail_started.elapsed();
    let disk = dir_bytes(dir.path());
    let wal = wal_bytes(dir.path());
    let journal_on_disk = dir_bytes(&dir.path().join("journal"));
    let reopening = Instant::now();
    let engine = Engine::open(options(dir.path())).expect("engine reopens");
    let opened = reopening.elapsed();
    let replayed = engine.checkpoint_totals().replayed;
    let member_of = engine.memberships_of("u1").expect("lookup after reopening");
    let last_seqs: Vec<u64> = segments.iter().map(|s| engine.last_seq(s).expect("log position")).collect();
    let recovered = reopening.elapsed();
    drop(engine);
    println!(
        "segstream throughput: {users} users, {events} events in batches of {batch}, state budget {} MiB, segments {segments:?}",
        options(dir.path()).state_cache_bytes >> 20
    );
    println!(
        "| users | events | seconds | events/s | events per CPU-second | events/s / {cores} cores | CPU cores busy | peak RSS MiB | state bytes/user | changes | rejected |"
    );
    println!(
        "| {users} | {events} | {elapsed:.1} | {rate:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {changes} | {rejected} |",
        events as f64 / cpu,
        rate / cores as f64,
        cpu / elapsed,
        peak_rss_bytes() as f64 / (1024.0 * 1024.0),
        disk as f64 / users as f64
    );
    println!(
        "hot-state cache: {} entries, {:.1} MiB, {} hits and {} misses ({:.1}% hits)",
        cache.entries,
        cache.bytes as f64 / (1024.0 * 1024.0),
        cache.hits,
        cache.misses,
        100.0 * cache.hits as f64 / (cache.hits + cache.misses).max(1) as f64
    );
    println!(
        "timers: {} instants fired in {} passes ({:.1} instants per pass, {} passes run again)",
        passes.instants,
        passes.passes,
        passes.instants as f64 / passes.passes.max(1) as f64,
        passes.retried
    );
    println!(
        "journal: {records} records ({:.0} bytes each), {journal_syncs} syncs; checkpoints in the run: \
         {run_checkpoints} ({run_entries} entries, {:.1} MiB; per event: {}); RocksDB writes outside \
         checkpoints: {direct_writes} ({:.4} per event)",
        journal_bytes as f64 / records.max(1) as f64,
        run_checkpoint_bytes as f64 / (1024.0 * 1024.0),
        entries_per_family.join(", "),
        direct_writes as f64 / events as f64
    );
    println!(
        "recovery after kill -9 ({tail_events} events after the last checkpoint, ingested for {:.1} s): \
         journal {:.1} MiB and write-ahead log {:.1} MiB on disk; reopened in {:.0} ms replaying \
         {replayed} journal records, first lookup answered after {:.0} ms (u1 in {member_of:?}; log \
         positions {last_seqs:?})",
        tail_elapsed.as_secs_f64(),
        journal_on_disk as f64 / (1024.0 * 1024.0),
        wal as f64 / (1024.0 * 1024.0),
        opened.as_secs_f64() * 1e3,
        recovered.as_secs_f64() * 1e3
    );
    if std::env::var("SEGSTREAM_BENCH_JOURNAL_FLOOR").is_ok_and(|v| v == "1") {
        journal_alone(events, records, journal_syncs, journal_bytes / records.max(1));
    }
    if storage_floor {
        storage_alone(events, &setup_writes, &run_writes);
    }
    if floor_mode == "families" {
        storage_by_family(events, &setup_writes, &run_writes);
    }
}

/// The storage floor again, once per group of writes left out: what each family's writes
/// cost RocksDB is the difference from the whole floor (in CPU microseconds per event).
fn storage_by_family(events: u64, setup: &[Vec<u8>], run: &[Vec<u8>]) {
    type Keep = fn(&str, bool) -> bool;
    let variants: [(&str, Keep); 7] = [
        ("everything", |_, _| true),
        ("without events", |f, _| f != segstream_state::CF_ROWS),
        ("without state", |f, _| f != segstream_state::CF_STATE),
        ("without timers", |f, _| f != segstream_state::CF_TIMERS),
        ("without timer deletes", |f, delete| !(f == segstream_state::CF_TIMERS && delete)),
        ("without members", |f, _| f != segstream_state::CF_MEMBERS),
        ("without changes", |f, _| f != segstream_state::CF_CHANGES),
    ];
    let mut whole = None;
    for (name, keep) in variants {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = segstream_state::Store::open(dir.path()).expect("store opens");
        let run: Vec<Vec<u8>> =
            run.iter().map(|b| store.filter_recorded(b, &keep).expect("filtered batch")).collect();
        let (_, cpu) = write_timed(&store, setup, &run);
        let micros = cpu * 1e6 / events as f64;
        let saved = whole.map_or(String::new(), |w: f64| format!(", {:.2} µs per event less", w - micros));
        whole.get_or_insert(micros);
        println!("storage alone, {name}: {micros:.2} CPU µs per event{saved}");
    }
}

/// The journal's own floor: as many records of the run's average size and as many syncs
/// (one per ingest call, after its records), into an empty journal: the CPU and wall time
/// per event of durability with no operator work.
fn journal_alone(events: u64, records: u64, syncs: u64, bytes_each: u64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (journal, _) = segstream_state::Journal::open(dir.path()).expect("journal opens");
    let payload = vec![0x5a_u8; bytes_each as usize];
    let started = Instant::now();
    let cpu_started = process_cpu_seconds();
    let per_sync = ((records + syncs / 2) / syncs.max(1)).max(1);
    for i in 1..=records {
        let position = journal.append(&payload).expect("appends");
        if i % per_sync == 0 || i == records {
            journal.sync_to(position).expect("syncs");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_started;
    println!(
        "journal alone: {records} records of {bytes_each} bytes, {per_sync} per sync: {:.2} CPU µs and {:.2} wall µs per event \
         ({:.0} µs wall per sync)",
        cpu * 1e6 / events as f64,
        wall * 1e6 / events as f64,
        wall * 1e6 / records.max(1) as f64
    );
}

/// Writes `setup` (untimed, then compacted) and `run` (timed) into `store`: the run's wall
/// and CPU seconds.
fn write_timed(store: &segstream_state::Store, setup: &[Vec<u8>], run: &[Vec<u8>]) -> (f64, f64) {
    for batch in setup {
        store.write_recorded(batch).expect("setup batch");
    }
    // The setup's flushes and compactions are done before the clock starts, so none of
    // their background work is counted (a floor errs low, not high).
    store.compact().expect("compaction after the setup");
    let started = Instant::now();
    let cpu_started = process_cpu_seconds();
    for batch in run {
        store.write_recorded(batch).expect("recorded batch");
    }
    (started.elapsed().as_secs_f64(), process_cpu_seconds() - cpu_started)
}

/// Writes the recorded batches into an empty store: the setup's untimed and compacted, the run's
/// timed (wall and CPU of the whole process, RocksDB's background work included), and
/// prints the events/s this storage work alone allows.
fn storage_alone(events: u64, setup: &[Vec<u8>], run: &[Vec<u8>]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = segstream_state::Store::open(dir.path()).expect("store opens");
    let (elapsed, cpu) = write_timed(&store, setup, run);
    let bytes: usize = run.iter().map(Vec::len).sum();
    for f in segstream_state::count_recorded_writes(run) {
        println!(
            "  {}: {} puts, {} deletes ({:.2} per event), keys {:.0} bytes on average, values {:.0} bytes per put",
            f.family,
            f.puts,
            f.deletes,
            (f.puts + f.deletes) as f64 / events as f64,
            f.key_bytes as f64 / (f.puts + f.deletes).max(1) as f64,
            f.value_bytes as f64 / f.puts.max(1) as f64
        );
    }
    println!(
        "storage alone: the run's {} write batches ({:.1} MiB) written again into an empty store \
         in {elapsed:.2} s: {:.0} events/s, {:.0} events per CPU-second",
        run.len(),
        bytes as f64 / (1024.0 * 1024.0),
        events as f64 / elapsed,
        events as f64 / cpu
    );
}

/// Bytes in RocksDB's write-ahead log files: what a reopen replays.
fn wal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
