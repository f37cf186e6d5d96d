//! Checkpoints and recovery: how state held in memory becomes durable in RocksDB, and
//! how the engine comes back after a crash.
//!
//! ```text
//!   steps ──> journal records (synced before a call is acknowledged)
//!         └─> state changes, held in memory ──(every few seconds, at shutdown, at FORGET KEY,
//!                                              or when they near the state budget)──> Checkpoint
//!
//!   Checkpoint: sync the journal; write every held change to RocksDB in one synced batch
//!               with the marker (journal position, clock); start a new journal file;
//!               delete the journal files the checkpoint covers.
//!   Recovery:   open RocksDB (the last checkpoint, whole); replay every journal record
//!               after its marker through the same step code, checking that each step logs
//!               exactly the changes its record says it logged.
//! ```
//!
//! A journal write or sync that fails leaves the journal refusing appends; the next call
//! that writes first restarts the engine in place from the last checkpoint and the journal
//! (as a restart after a crash would), so a full disk that frees up needs no restart.

use std::time::{Duration, Instant};

use segstream_ops::state_table::CheckpointedState;
use segstream_sql::ast::Name;
use segstream_sql::{parse_statement, Catalog};
use segstream_state::codec::encoded_rows_to_batch;
use segstream_state::CheckpointStats;
use segstream_types::{Error, Result, Timestamp};

use crate::change_log_retention::ChangeLogRetention;
use crate::engine::{Engine, META_NEXT_ID};
use crate::journal_record::{JournalInput, JournalRecord};
use crate::maintain::META_CLOCK;

/// `meta` key of the last checkpoint's journal position: the records after it are what
/// recovery replays.
pub(crate) const META_JOURNAL_POSITION: &str = "journal_position";

/// The journal's directory inside the data directory.
pub(crate) const JOURNAL_DIR: &str = "journal";

/// Where a test stops the engine as a crash would (see `fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultPoint {
    /// A step's record is appended, not yet synced.
    AfterAppend,
    /// A step's record is synced, the call not yet answered.
    AfterSync,
    /// A checkpoint's state is in RocksDB; the journal is not rolled yet.
    AfterCheckpointWrite,
    /// The journal is rolled; the covered files are not deleted yet.
    AfterRoll,
    /// Recovery has replayed the record at this position.
    Replayed(u64),
}

#[cfg(test)]
thread_local! {
    /// The fault a test arms; it fires once.
    pub(crate) static FAULT: std::cell::Cell<Option<FaultPoint>> = const { std::cell::Cell::new(None) };
    /// Set when the armed fault fires: the process counts as dead from there on.
    static FAULT_FIRED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether an injected fault fired since the last call (and forgets it). A fault stands
/// for the process dying at that point, so what a call would do after it (e.g. the sync
/// of [`Engine::with_one_sync`] for the steps it committed before failing) is not done.
/// Always false outside tests.
pub(crate) fn fault_fired() -> bool {
    #[cfg(test)]
    return FAULT_FIRED.with(|f| f.replace(false));
    #[cfg(not(test))]
    false
}

/// Fails with "fault injected" when a test armed this point (never outside tests).
#[inline]
pub(crate) fn fault(at: FaultPoint) -> Result<()> {
    #[cfg(test)]
    if FAULT.with(|f| f.get()) == Some(at) {
        FAULT.with(|f| f.set(None));
        FAULT_FIRED.with(|f| f.set(true));
        return Err(Error::internal(format!("fault injected: {at:?}")));
    }
    let _ = at;
    Ok(())
}

/// When checkpoints are taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointPolicy {
    pub every: Duration,
    /// Changed state held in memory that triggers a checkpoint early.
    pub bytes: usize,
    /// The operators' typed state kept in memory at most (the state budget): past it,
    /// a checkpoint is followed by evicting what it wrote.
    pub resident_bytes: usize,
}

/// What checkpoints have done since the engine opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointTotals {
    pub checkpoints: u64,
    /// Entries (puts, deletes, range deletes) written to RocksDB by them.
    pub entries: u64,
    /// Of them, per column family (`segstream_state::FAMILIES` order).
    pub entries_by_family: [u64; segstream_state::FAMILIES.len()],
    pub bytes: u64,
    /// Of them, per column family.
    pub bytes_by_family: [u64; segstream_state::FAMILIES.len()],
    /// Journal records replayed at open (or at a restart after a failed journal write).
    pub replayed: u64,
}

impl Engine {
    /// Starts the journal: from here on every step is journaled and its state held in
    /// memory until a checkpoint. Replays what the journal holds after the last
    /// checkpoint, then checkpoints if it replayed anything (so a crash loop does not
    /// replay ever more).
    pub(crate) fn start_journal(&mut self) -> Result<()> {
        self.store.hold_writes_in_memory();
        self.journaling = true;
        self.replay_journal()
    }

    /// Replays every journal record after the checkpoint's position.
    fn replay_journal(&mut self) -> Result<()> {
        let from = self.store.meta_u64(META_JOURNAL_POSITION)?.unwrap_or(0);
        let last = self.journal.last()?;
        if last < from {
            return Err(Error::storage(format!(
                "the journal in {} ends at record {last}, but the last checkpoint is at record {from}: \
                 journal files are missing; restore the data directory from a backup",
                self.data_dir.join(JOURNAL_DIR).display()
            )));
        }
        let journal = self.journal.clone();
        self.replaying = true;
        let replayed = journal.replay_after(from, |position, payload| {
            let record = JournalRecord::decode(payload)
                .map_err(|e| Error::storage(format!("journal record {position}: {e}")))?;
            self.replay(position, record)?;
            fault(FaultPoint::Replayed(position))
        });
        self.replaying = false;
        let replayed = match replayed {
            Ok(n) => n,
            Err(e) => {
                // The state is part-way through the journal: nothing may checkpoint it.
                self.broken = Some(e.to_string());
                return Err(e);
            }
        };
        self.broken = None;
        if let Ok(mut totals) = self.checkpoint_totals.lock() {
            totals.replayed += replayed;
        }
        if replayed > 0 {
            // Not needed for correctness (the journal still holds every record); a full
            // disk that refuses it must not keep the engine from serving.
            if let Err(e) = self.checkpoint() {
                eprintln!("segstream: the checkpoint after recovery failed (retrying later): {e}");
            }
        }
        Ok(())
    }

    /// Runs one journaled step again and checks it logged what it logged the first time.
    fn replay(&mut self, position: u64, record: JournalRecord) -> Result<()> {
        self.clock.manual = Timestamp(record.clock);
        if let Ok(mut replayed) = self.replayed.lock() {
            *replayed = None;
        }
        let named = |name: &String| Name { value: name.clone(), position: None };
        let ran = match &record.input {
            JournalInput::Rows { relation, rows, keep_existing, marker } => {
                let relation = self.relation(&named(relation))?.clone();
                let batch = encoded_rows_to_batch(&relation.schema, rows.rows())?;
                self.write_rows(&relation, batch, *keep_existing, marker.clone()).map(drop)
            }
            JournalInput::DeleteKeys { relation, keys } => {
                let relation = self.relation(&named(relation))?.clone();
                let keys = crate::rows::decode_keys(&relation, keys)?;
                self.delete_keys(&relation, keys).map(drop)
            }
            JournalInput::Definition { text } => {
                let statement = parse_statement(text)?;
                self.run_definition(&statement).map(drop)
            }
            JournalInput::Advance { to } => self.advance_clock_to(Timestamp(*to)),
            JournalInput::Forget { key, only } => {
                let only: Vec<Name> = only.iter().map(named).collect();
                self.forget_key_now(key, &only).map(drop)
            }
            JournalInput::ExpireKeys { window_nanos } => self.expire_keys_older_than(*window_nanos).map(drop),
            JournalInput::TrimChangeLogs { max_age_nanos, max_changes } => {
                let retention = ChangeLogRetention {
                    max_age: max_age_nanos.map(|n| Duration::from_nanos(n.max(0) as u64)),
                    max_changes: *max_changes,
                };
                self.trim_change_logs(&retention).map(drop)
            }
            JournalInput::DropExpiredEvents => self.drop_expired_events().map(drop),
        };
        ran.map_err(|e| {
            Error::storage(format!(
                "journal record {position} ({}) no longer runs: {e}; the engine stops rather than \
                 publish a different history",
                kind_name(&record.input)
            ))
        })?;
        let replayed = self.replayed.lock().ok().and_then(|mut r| r.take());
        if replayed != Some(record.digest) {
            return Err(Error::storage(format!(
                "journal record {position} ({}): replaying it logged {}, but the first run logged {}; \
                 the engine stops rather than publish a different history",
                kind_name(&record.input),
                replayed.map_or_else(|| "nothing (no step)".to_string(), |d| d.to_string()),
                record.digest
            )));
        }
        Ok(())
    }

    /// Writes every change held in memory to RocksDB with the journal position and clock
    /// it corresponds to, then deletes the journal files it covers. Happens by itself
    /// (every few seconds, when held changes near the state budget, at `FORGET KEY` and
    /// at shutdown); a caller may take one at any time.
    pub fn checkpoint(&self) -> Result<CheckpointStats> {
        if !self.journaling {
            return Ok(CheckpointStats::default());
        }
        if let Some(why) = &self.broken {
            return Err(Error::storage(format!("no checkpoint of a state recovery did not finish: {why}")));
        }
        // Every record the held state includes must be durable before the state is:
        // otherwise a crash could leave state on disk for a step no one was told of,
        // and replay would not know to skip it.
        self.journal.sync()?;
        let position = self.journal.last()?;
        let position_bytes = position.to_be_bytes();
        // The clock is not part of the marker: every step stamps its own instant into the
        // state (a checkpoint inside a clock advance's commit, before the engine's clock
        // has moved, must not put the old instant over the advance's).
        let mut operator_state = Vec::new();
        for table in self.state_tables() {
            table.changed_entries(&mut operator_state)?;
        }
        let stats =
            self.store.checkpoint(&[(META_JOURNAL_POSITION.as_bytes(), &position_bytes)], &operator_state)?;
        drop(operator_state);
        let tables = || self.state_tables();
        tables().for_each(|t| t.checkpointed());
        // Past the state budget: first what no step used since the last checkpoint, then,
        // if that is not enough, everything the checkpoint just wrote.
        let resident = || tables().map(|t| t.bytes().resident).sum::<usize>();
        let over = resident() > self.checkpoint_policy.resident_bytes;
        tables().for_each(|t| t.age(over));
        if over && resident() > self.checkpoint_policy.resident_bytes {
            tables().for_each(|t| t.evict_clean());
        }
        fault(FaultPoint::AfterCheckpointWrite)?;
        self.journal.roll()?;
        fault(FaultPoint::AfterRoll)?;
        self.journal.delete_covered(position)?;
        if let Ok(mut last) = self.last_checkpoint.lock() {
            *last = Instant::now();
        }
        if let Ok(mut totals) = self.checkpoint_totals.lock() {
            totals.checkpoints += 1;
            totals.entries += stats.entries;
            for (total, n) in totals.entries_by_family.iter_mut().zip(stats.by_family) {
                *total += n;
            }
            totals.bytes += stats.bytes;
            for (total, n) in totals.bytes_by_family.iter_mut().zip(stats.bytes_by_family) {
                *total += n;
            }
        }
        Ok(stats)
    }

    /// Checkpoints if the interval has passed or the changes held in memory near the
    /// budget. A failed checkpoint does not fail the step that triggered it (the step is
    /// journaled); it is reported and tried again after the interval.
    pub fn checkpoint_if_due(&self) {
        let Ok(last) = self.last_checkpoint.lock().map(|l| *l) else { return };
        let due = last.elapsed() >= self.checkpoint_policy.every
            || self
                .store
                .unwritten_bytes()
                .is_ok_and(|b| b + self.operator_state_changed() >= self.checkpoint_policy.bytes);
        if !due {
            return;
        }
        if let Err(e) = self.checkpoint() {
            eprintln!("segstream: checkpoint failed (the journal keeps every step; retrying later): {e}");
            if let Ok(mut last) = self.last_checkpoint.lock() {
                *last = Instant::now();
            }
        }
    }

    /// Bytes of the operators' typed state changed since the last checkpoint.
    fn operator_state_changed(&self) -> usize {
        self.state_tables().map(|t| t.bytes().changed).sum()
    }

    /// The operators' state held in memory: every segment's typed tables and the timers.
    pub(crate) fn state_tables(&self) -> impl Iterator<Item = &dyn CheckpointedState> {
        self.dataflows.values().flat_map(|df| df.state_tables()).chain(std::iter::once(self.timers.state()))
    }

    /// What checkpoints and recovery have done since the engine opened.
    pub fn checkpoint_totals(&self) -> CheckpointTotals {
        self.checkpoint_totals.lock().map(|t| *t).unwrap_or_default()
    }

    /// Before a call that writes: if a journal write or sync failed, restarts the engine
    /// in place from the last checkpoint and the journal, as a restart after a crash
    /// would (steps never made durable are gone; their callers were told of the failure).
    pub(crate) fn ready_to_write(&mut self) -> Result<()> {
        if self.journal.failed().is_none() && self.broken.is_none() {
            return Ok(());
        }
        self.broken = Some("a restart from the last checkpoint is under way".into());
        self.journal.reopen()?;
        self.store.discard_unwritten()?;
        self.load()
    }

    /// Loads everything from the store (the last checkpoint): the clock, the catalog and
    /// the operators, with the data directory's upgrades; then starts the journal and
    /// replays it. What `Engine::open` does, and a restart in place does again.
    pub(crate) fn load(&mut self) -> Result<()> {
        self.catalog = Catalog::new();
        self.ids.clear();
        self.dataflows.clear();
        self.timers = std::sync::Arc::new(segstream_ops::timer_queue::TimerQueue::new());
        if let Ok(mut memo) = self.segment_order_memo.lock() {
            *memo = None;
        }
        self.next_id = self.store.meta_u64(META_NEXT_ID)?.unwrap_or(1);
        self.clock.manual = Timestamp(self.store.meta_i64(META_CLOCK)?.unwrap_or(0));
        self.journaling = false;
        self.reload_catalog()?;
        self.migrate_event_keys()?;
        self.build_dataflows()?;
        self.upgrade_join_state()?;
        self.start_journal()
    }

    /// Closes the engine as `kill -9` would: no checkpoint, and journal records not yet
    /// synced are dropped. For tests of recovery.
    pub fn close_without_checkpoint(mut self) {
        self.journaling = false;
    }
}

impl Drop for Engine {
    /// A clean shutdown checkpoints, so the next open replays nothing.
    fn drop(&mut self) {
        if !self.journaling || self.broken.is_some() || self.journal.failed().is_some() {
            return;
        }
        if let Err(e) = self.checkpoint() {
            eprintln!("segstream: the checkpoint at shutdown failed (the journal keeps every step): {e}");
        }
    }
}

fn kind_name(input: &JournalInput) -> &'static str {
    match input {
        JournalInput::Rows { .. } => "rows",
        JournalInput::DeleteKeys { .. } => "DELETE",
        JournalInput::Definition { .. } => "definition",
        JournalInput::Advance { .. } => "clock advance",
        JournalInput::Forget { .. } => "FORGET KEY",
        JournalInput::ExpireKeys { .. } => "idempotency-key expiry",
        JournalInput::TrimChangeLogs { .. } => "change-log trim",
        JournalInput::DropExpiredEvents => "expired events dropped",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{ChangeRecord, ClockMode, EngineOptions, IngestRows};

    /// 2026-04-01 10:00:00 UTC.
    const BASE_SECONDS: i64 = 1_775_037_600;
    const MINUTE: i64 = 60_000_000_000;
    const USERS: u64 = 6;

    /// One call of the scenario.
    #[derive(Debug, Clone)]
    enum Op {
        /// Events at the clock's instant, with an idempotency key.
        Ingest(Vec<(u64, &'static str)>, String),
        /// The clock moved forward by minutes and events at the new instant, in one call
        /// (`Engine::ingest_at`: two steps, one sync); the string names the events.
        IngestAt(i64, Vec<(u64, &'static str)>, String),
        Sql(String),
        /// Moves the clock forward by minutes.
        Advance(i64),
        Forget(u64),
        Trim(u64),
        ExpireKeys,
        DropExpired,
    }

    fn time_text(minute: i64) -> String {
        let total = 600 + minute; // minutes since 2026-04-01 00:00
        format!("2026-04-{:02}T{:02}:{:02}:00", 1 + total / 1440, (total / 60) % 24, total % 60)
    }

    /// A pseudo-random scenario over the seven workload segments: events of every kind,
    /// profile upserts and deletes, clock advances that fire absences and expiries,
    /// `FORGET KEY`, trims, key expiry and retention.
    fn scenario(seed: u64, steps: usize) -> Vec<Op> {
        let mut state = seed;
        let mut next = move |n: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let mut ops = vec![
            Op::Sql(include_str!("../../../sql-examples/workload/schema.sql").to_string()),
            Op::Sql(include_str!("../../../sql-examples/workload/segments.sql").to_string()),
            Op::Sql("ADVANCE TIME TO TIMESTAMP '2026-04-01 10:00:00'".to_string()),
        ];
        let mut minute = 0;
        let kinds = ["page_view", "add_to_cart", "purchase", "login", "email_open"];
        for i in 0..steps {
            ops.push(match next(10) {
                0..=3 => {
                    let events = (0..1 + next(4)).map(|_| (next(USERS), kinds[next(5) as usize])).collect();
                    if next(4) == 0 {
                        let by = [1, 5, 30, 61][next(4) as usize];
                        minute += by;
                        Op::IngestAt(by, events, format!("call-{i}"))
                    } else {
                        Op::Ingest(events, format!("call-{i}"))
                    }
                }
                4 | 5 => {
                    let by = [1, 4, 5, 30, 61, 180, 600][next(7) as usize];
                    minute += by;
                    Op::Advance(by)
                }
                6 => Op::Sql(format!(
                    "INSERT INTO profiles VALUES ('u{}', 'DE', {}.0, TIMESTAMP '{}')",
                    next(USERS),
                    [100, 600, 900][next(3) as usize],
                    time_text((minute - 60 * next(200) as i64).max(-600)).replace('T', " ")
                )),
                7 => Op::Sql(format!("DELETE FROM profiles WHERE user_id = 'u{}'", next(USERS))),
                8 => match next(4) {
                    0 => Op::Forget(next(USERS)),
                    1 => Op::Trim(3 + next(5)),
                    2 => Op::ExpireKeys,
                    _ => Op::DropExpired,
                },
                _ => Op::Sql(format!("INSERT INTO profiles VALUES ('u{}', 'IT', 700.0, NULL)", next(USERS))),
            });
        }
        ops
    }

    fn options(dir: &Path) -> EngineOptions {
        EngineOptions::new(dir)
            .with_clock(ClockMode::Manual)
            .with_checkpoint_interval(Duration::from_secs(3600))
    }

    fn ingest(engine: &mut Engine, events: &[(u64, &str)], key: &str) -> Result<crate::IngestReport> {
        let rows = event_rows(engine.now(), events, key);
        engine.ingest_once("events", IngestRows::Json(rows), Some(key))
    }

    /// The events of a call at instant `at`, each up to two hours late.
    fn event_rows(at: Timestamp, events: &[(u64, &str)], key: &str) -> Vec<serde_json::Value> {
        let now = (at.nanos() - BASE_SECONDS * 1_000_000_000) / MINUTE;
        events
            .iter()
            .enumerate()
            .map(|(i, (user, kind))| {
                // Up to two hours late, out of order within a call.
                let late = (i as i64 * 37 + key.len() as i64 * 11 + *user as i64 * 5) % 120;
                serde_json::json!({
                    "event_id": format!("{key}-{i}"), "user_id": format!("u{user}"),
                    "event_type": kind, "page": "/pricing", "product_id": "sku",
                    "amount": 120.0, "ts": time_text(now - late),
                })
            })
            .collect()
    }

    async fn apply(engine: &mut Engine, op: &Op) -> Result<()> {
        match op {
            Op::Ingest(events, key) => ingest(engine, events, key).map(drop),
            Op::IngestAt(minutes, events, name) => {
                let at = Timestamp(engine.now().nanos() + minutes * MINUTE);
                engine.ingest_at("events", IngestRows::Json(event_rows(at, events, name)), at).map(drop)
            }
            Op::Sql(sql) => engine.execute(sql).await.map(drop),
            Op::Advance(minutes) => engine.advance_clock(Timestamp(engine.now().nanos() + minutes * MINUTE)),
            Op::Forget(user) => engine.forget_key(&format!("u{user}"), &[]).map(drop),
            Op::Trim(keep) => engine
                .trim_change_logs(&ChangeLogRetention { max_changes: Some(*keep), ..Default::default() })
                .map(drop),
            Op::ExpireKeys => engine.expire_idempotency_keys(Duration::from_secs(3 * 3600)).map(drop),
            Op::DropExpired => engine.drop_expired_events().map(drop),
        }
    }

    /// Everything a run leaves that a subscriber or a query could see: every change
    /// record, the first kept seq and the members of every segment.
    fn outcome(engine: &Engine) -> (Vec<ChangeRecord>, Vec<(String, u64, u64)>) {
        let segments = engine
            .segment_names()
            .into_iter()
            .map(|s| {
                let first = engine.first_kept_seq(&s).expect("first kept");
                let members = engine.member_count(&s).expect("members");
                (s, first, members)
            })
            .collect();
        (engine.change_records().expect("records"), segments)
    }

    async fn reference(ops: &[Op]) -> (Vec<ChangeRecord>, Vec<(String, u64, u64)>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = Engine::open(options(dir.path())).expect("opens");
        for op in ops {
            apply(&mut engine, op).await.expect("applies");
        }
        outcome(&engine)
    }

    /// Crashes (no checkpoint, unsynced records dropped) after `crash_after` calls, with
    /// a checkpoint taken after `checkpoint_after`, reopens and runs the rest.
    async fn crashed_run(
        ops: &[Op],
        checkpoint_after: usize,
        crash_after: usize,
        options: impl Fn(&Path) -> EngineOptions,
    ) -> (Vec<ChangeRecord>, Vec<(String, u64, u64)>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = Engine::open(options(dir.path())).expect("opens");
        for (i, op) in ops[..crash_after].iter().enumerate() {
            apply(&mut engine, op).await.expect("applies");
            if i + 1 == checkpoint_after {
                engine.checkpoint().expect("checkpoints");
            }
        }
        engine.close_without_checkpoint();
        let mut engine = Engine::open(options(dir.path())).expect("reopens");
        for op in &ops[crash_after..] {
            apply(&mut engine, op).await.expect("applies");
        }
        outcome(&engine)
    }

    /// The scenario crashed at several points, with checkpoints taken at several others
    /// (before the crash, or none since the start), writes what an uninterrupted run
    /// writes: the journal replayed from any checkpoint gives the same history.
    #[tokio::test]
    async fn recovery_from_any_checkpoint_writes_the_uninterrupted_history() {
        let ops = scenario(7, 60);
        let expected = reference(&ops).await;
        assert!(expected.0.len() > 20, "the scenario logs changes: {}", expected.0.len());
        let n = ops.len();
        for (checkpoint_after, crash_after) in
            [(0, 2), (0, n / 2), (n / 4, n / 2), (n / 2, n / 2), (5, n - 1)]
        {
            let got = crashed_run(&ops, checkpoint_after, crash_after, options).await;
            assert_eq!(got, expected, "checkpoint after {checkpoint_after}, crash after {crash_after}");
        }
    }

    /// A state budget so small that every step checkpoints gives the same history as
    /// an ample one, crash included.
    #[tokio::test]
    async fn a_tiny_state_budget_writes_the_same_history() {
        let ops = scenario(11, 40);
        let expected = reference(&ops).await;
        let tiny = |dir: &Path| options(dir).with_state_cache_bytes(1);
        // Crashes right after clock advances too: their checkpoint is taken inside the
        // advance's commit, before the engine's clock has moved.
        let after_advances =
            (3..ops.len()).filter(|&i| matches!(ops[i - 1], Op::Advance(_) | Op::IngestAt(..))).take(3);
        for crash_after in after_advances.chain([ops.len() / 2]) {
            let got = crashed_run(&ops, 0, crash_after, tiny).await;
            assert_eq!(got, expected, "crash after {crash_after}");
        }
    }

    /// Runs the scenario with `point` armed during call `at`; the call fails as a crash
    /// there would be seen, the engine is closed as `kill -9` closes it, reopened, and
    /// the call retried (a key-less call only if it did not survive). Returns the outcome
    /// and whether the failed call had survived.
    async fn run_with_fault(
        ops: &[Op],
        at: usize,
        point: FaultPoint,
    ) -> ((Vec<ChangeRecord>, Vec<(String, u64, u64)>), bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = Engine::open(options(dir.path())).expect("opens");
        for op in &ops[..at] {
            apply(&mut engine, op).await.expect("applies");
        }
        let steps = engine.writes();
        FAULT.with(|f| f.set(Some(point)));
        let failed = match point {
            FaultPoint::AfterCheckpointWrite | FaultPoint::AfterRoll => {
                apply(&mut engine, &ops[at]).await.expect("applies");
                engine.checkpoint().is_err()
            }
            _ => apply(&mut engine, &ops[at]).await.is_err(),
        };
        assert!(failed, "the fault {point:?} fired");
        assert!(engine.writes() > steps, "the call wrote");
        engine.close_without_checkpoint();
        let mut engine = Engine::open(options(dir.path())).expect("reopens");
        // The call is retried with its idempotency key: `duplicate` says whether it survived.
        let Op::Ingest(events, key) = &ops[at] else { panic!("faults are tried on an ingest call") };
        let survived = ingest(&mut engine, events, key).expect("retries").duplicate;
        for op in &ops[at + 1..] {
            apply(&mut engine, op).await.expect("applies");
        }
        (outcome(&engine), survived)
    }

    /// A crash after a step's record is appended but before it is synced loses the
    /// step (its call was never answered; the retry applies it once); after the sync,
    /// the step survives though its call was not answered (a retry with its key is a
    /// duplicate); in the middle of a checkpoint nothing is lost or applied twice.
    #[tokio::test]
    async fn crashes_at_each_fault_point_lose_and_duplicate_nothing() {
        let ops = scenario(3, 40);
        let expected = reference(&ops).await;
        // An ingest call late in the scenario that logs a change.
        let at = (ops.len() / 2..ops.len()).find(|&i| matches!(ops[i], Op::Ingest(..))).expect("an ingest");
        let (got, survived) = run_with_fault(&ops, at, FaultPoint::AfterAppend).await;
        assert!(!survived, "an unsynced record does not survive");
        assert_eq!(got, expected, "after append, before sync");
        let (got, survived) = run_with_fault(&ops, at, FaultPoint::AfterSync).await;
        assert!(survived, "a synced record survives: the retry is a duplicate");
        assert_eq!(got, expected, "after sync, before the answer");
        for point in [FaultPoint::AfterCheckpointWrite, FaultPoint::AfterRoll] {
            let (got, survived) = run_with_fault(&ops, at, point).await;
            assert!(survived, "{point:?}: the call had been answered");
            assert_eq!(got, expected, "{point:?}");
        }
    }

    /// Recovery stopped part-way (a crash during replay) leaves nothing behind: the next
    /// open replays from the same checkpoint and ends where an uninterrupted run does.
    #[tokio::test]
    async fn a_crash_during_replay_is_recovered_by_the_next_open() {
        let ops = scenario(5, 40);
        let expected = reference(&ops).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = Engine::open(options(dir.path())).expect("opens");
        for op in &ops {
            apply(&mut engine, op).await.expect("applies");
        }
        let last = engine.journal().last().expect("last");
        let from = engine.store.meta_u64(META_JOURNAL_POSITION).expect("marker").unwrap_or(0);
        assert!(last >= from + 2, "records to replay after the last checkpoint: {from}..{last}");
        engine.close_without_checkpoint();
        FAULT.with(|f| f.set(Some(FaultPoint::Replayed((from + last) / 2))));
        let error = Engine::open(options(dir.path())).err().expect("the replay is cut short").to_string();
        assert!(error.contains("fault injected"), "{error}");
        let engine = Engine::open(options(dir.path())).expect("reopens");
        assert_eq!(engine.checkpoint_totals().replayed, last - from, "replayed from the checkpoint again");
        assert_eq!(outcome(&engine), expected);
    }

    /// A journal whose step no longer logs what it logged stops the engine with the
    /// record's position and both digests, rather than publishing another history.
    #[tokio::test]
    async fn a_step_that_replays_differently_stops_the_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ops = scenario(9, 10);
        let mut engine = Engine::open(options(dir.path())).expect("opens");
        for op in &ops {
            apply(&mut engine, op).await.expect("applies");
        }
        engine.close_without_checkpoint();
        // A record claiming an ingest logged changes it cannot have logged.
        {
            let (journal, opened) =
                segstream_state::Journal::open(&dir.path().join(JOURNAL_DIR)).expect("journal");
            let forged = JournalRecord {
                clock: BASE_SECONDS * 1_000_000_000,
                digest: crate::journal_record::ChangeDigest { changes: 99, crc: 1 },
                input: JournalInput::Advance { to: BASE_SECONDS * 1_000_000_000 },
            };
            journal.append(&forged.encode()).expect("appends");
            journal.sync().expect("syncs");
            assert!(opened.last > 0);
        }
        let error = Engine::open(options(dir.path())).err().expect("refused").to_string();
        assert!(error.contains("replaying it logged") && error.contains("99 change-log writes"), "{error}");
    }

    /// Once `FORGET KEY` returns, no journal file holds the key: the checkpoint it takes
    /// covers the files with the key's events (and the FORGET's own record), which are
    /// deleted.
    #[tokio::test]
    async fn forget_key_leaves_no_journal_file_with_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = Engine::open(options(dir.path())).expect("opens");
        for op in scenario(1, 5) {
            apply(&mut engine, &op).await.expect("applies");
        }
        let event = serde_json::json!({"event_id": "e1", "user_id": "zed-to-forget", "event_type": "purchase",
            "amount": 5.0, "ts": time_text(0)});
        engine.ingest("events", IngestRows::Json(vec![event])).expect("ingests");
        let holds_key = |dir: &Path| {
            std::fs::read_dir(dir.join(JOURNAL_DIR)).expect("lists").any(|f| {
                let bytes = std::fs::read(f.expect("entry").path()).expect("reads");
                bytes.windows(13).any(|w| w == b"zed-to-forget")
            })
        };
        assert!(holds_key(dir.path()), "the journal holds the event before FORGET KEY");
        engine.execute("FORGET KEY 'zed-to-forget'").await.expect("forgets");
        assert!(!holds_key(dir.path()), "no journal file holds the key after FORGET KEY");
        engine.close_without_checkpoint();
        let engine = Engine::open(options(dir.path())).expect("reopens");
        assert!(engine.memberships_of("zed-to-forget").expect("memberships").is_empty());
    }

    /// A data directory written before the journal (all state in RocksDB, no journal,
    /// no checkpoint marker) opens with its state and goes on.
    #[tokio::test]
    async fn a_directory_without_a_journal_opens_with_its_state() {
        let ops = scenario(13, 30);
        let expected = reference(&ops).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = Engine::open(options(dir.path())).expect("opens");
        for op in &ops[..15] {
            apply(&mut engine, op).await.expect("applies");
        }
        drop(engine); // checkpoints: everything is in RocksDB
        std::fs::remove_dir_all(dir.path().join(JOURNAL_DIR)).expect("removes the journal");
        {
            let store = segstream_state::Store::open(dir.path()).expect("store");
            let mut batch = store.batch();
            batch.delete(segstream_state::CF_META, META_JOURNAL_POSITION.as_bytes()).expect("deletes");
            store.write(batch).expect("writes");
        }
        let mut engine = Engine::open(options(dir.path())).expect("opens the older layout");
        for op in &ops[15..] {
            apply(&mut engine, op).await.expect("applies");
        }
        assert_eq!(outcome(&engine), expected);
    }
}
