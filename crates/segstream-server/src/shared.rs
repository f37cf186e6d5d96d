//! What every call shares: the engine (one writer at a time), group commit, the signal
//! that the durable change log moved, the metrics, and backfill notices for the Execute
//! call that caused them.
//!
//! Group commit: the engine journals each step without syncing; a caller that must
//! acknowledge its step calls [`Shared::commit`], and one caller at a time syncs the
//! journal for every step journaled so far, so concurrent callers share one sync.
//! Subscribers read the change log only up to the positions the last sync made durable,
//! so no one ever sees a change a crash could take back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use segstream_engine::{ChangeKind, ClockMode, Engine};
use segstream_state::Journal;
use segstream_types::Error;
use tokio::sync::{watch, Mutex, MutexGuard, Notify};

use crate::metrics::{Metrics, SegmentCounts};

/// A point in the sequence of steps: how many have been written, and each segment's
/// last sequence number after them.
#[derive(Debug, Clone, Default)]
pub struct LogPoint {
    pub steps: u64,
    pub positions: BTreeMap<String, u64>,
}

pub struct Shared {
    engine: Mutex<Engine>,
    /// The engine's journal: syncing it makes every step journaled so far durable.
    syncer: Journal,
    /// Updated at the end of every step (with the engine held).
    written: StdMutex<LogPoint>,
    /// What the last sync made durable.
    durable: StdMutex<LogPoint>,
    /// One sync at a time; the callers queued behind it are usually covered by it.
    sync_lock: Mutex<()>,
    /// Bumped after every sync; subscribers wait on it instead of polling.
    log_version: watch::Sender<u64>,
    pub metrics: Arc<Metrics>,
    /// Backfill progress lines, taken by the Execute call that ran the backfill.
    pub notices: Arc<StdMutex<Vec<String>>>,
    /// Per segment, the last sequence number the metrics have counted.
    counted: StdMutex<BTreeMap<String, u64>>,
    next_subscriber: AtomicU64,
    /// With the wall clock: the instant of the timer the clock's ticker sleeps until
    /// (`i64::MAX`: none), and how a step that set an earlier one wakes it.
    ticker_due: AtomicI64,
    pub ticker_wake: Notify,
}

/// The engine, held for one step: when dropped, the step is timed, the metrics follow
/// the change log, and subscribers are woken.
pub struct Step<'a> {
    pub engine: MutexGuard<'a, Engine>,
    shared: &'a Shared,
    started: Instant,
    /// The engine's write count when the step began.
    writes_before: u64,
}

impl Step<'_> {
    /// Whether the step has written anything so far.
    pub fn wrote(&self) -> bool {
        self.engine.writes() != self.writes_before
    }
}

impl std::ops::Deref for Step<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl std::ops::DerefMut for Step<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        self.shared.metrics.observe_step(self.started.elapsed());
        if let Ok(mut checkpoints) = self.shared.metrics.checkpoints.lock() {
            *checkpoints = self.engine.checkpoint_totals();
        }
        // A step that wrote nothing (a read, or a write that failed) has nothing to make
        // durable: it does not make the next commit sync, nor fail on a sync that cannot
        // succeed while the disk is full.
        if !self.wrote() {
            return;
        }
        self.shared.wake_ticker_if_earlier(&self.engine);
        let positions = self.shared.follow_log(&self.engine);
        if let Ok(mut written) = self.shared.written.lock() {
            written.steps += 1;
            written.positions = positions;
        }
    }
}

impl Shared {
    pub fn new(mut engine: Engine) -> Arc<Self> {
        let notices = Arc::new(StdMutex::new(Vec::new()));
        {
            let notices = Arc::clone(&notices);
            engine.on_backfill_progress(move |p| {
                // A segment over an empty history has nothing worth reporting.
                if p.total == 0 {
                    return;
                }
                if let Ok(mut n) = notices.lock() {
                    n.push(format!(
                        "backfill {}: {} rows of {} from {}",
                        p.segment, p.rows, p.total, p.relation
                    ));
                }
            });
        }
        let metrics = Arc::new(Metrics::default());
        let syncer = engine.journal();
        // What the journal holds at open is made durable before anything is served from it.
        if let Err(e) = syncer.sync() {
            eprintln!("segstream: syncing the journal at start failed: {e}");
        }
        let mut counted = BTreeMap::new();
        if let Ok(mut segments) = metrics.segments.lock() {
            // Segments that exist at start: their members now, changes counted from here.
            for name in engine.segment_names() {
                let members = engine.member_count(&name).unwrap_or(0);
                segments.insert(name.clone(), SegmentCounts { members, ..Default::default() });
                counted.insert(name.clone(), engine.last_seq(&name).unwrap_or(0));
            }
        }
        let start = LogPoint { steps: 0, positions: counted.clone() };
        Arc::new(Self {
            engine: Mutex::new(engine),
            syncer,
            written: StdMutex::new(start.clone()),
            durable: StdMutex::new(start),
            sync_lock: Mutex::new(()),
            log_version: watch::channel(0).0,
            metrics,
            notices,
            counted: StdMutex::new(counted),
            next_subscriber: AtomicU64::new(1),
            ticker_due: AtomicI64::new(i64::MAX),
            ticker_wake: Notify::new(),
        })
    }

    /// The wall-clock ticker sleeps until the timer due at `due` (`None`: no timer). Set
    /// with the engine held, so a later step compares its timers with it.
    pub fn ticker_sleeps_until(&self, due: Option<segstream_types::Timestamp>) {
        self.ticker_due.store(due.map_or(i64::MAX, |t| t.nanos()), Ordering::SeqCst);
    }

    /// After a step that wrote, with the wall clock: wakes the ticker if the step set a
    /// timer due before the one it sleeps until, so that change is not applied late.
    fn wake_ticker_if_earlier(&self, engine: &Engine) {
        if engine.clock_mode() != ClockMode::Wall {
            return;
        }
        if let Ok(Some(due)) = engine.next_timer_due() {
            if due.nanos() < self.ticker_due.load(Ordering::SeqCst) {
                self.ticker_wake.notify_one();
            }
        }
    }

    /// The engine for a step that may change things (statements, ingest, the clock).
    pub async fn step(&self) -> Step<'_> {
        let engine = self.engine.lock().await;
        let writes_before = engine.writes();
        Step { engine, shared: self, started: Instant::now(), writes_before }
    }

    /// The engine for a read (lookups, subscriptions): no metrics, no wake-up.
    pub async fn read(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().await
    }

    /// Makes every step written so far durable (one journal sync, shared with whoever is
    /// waiting at the same time), then wakes the subscribers. Call it after the step and
    /// before acknowledging it.
    pub async fn commit(&self) -> Result<(), Error> {
        let target = self.written_point().steps;
        if self.durable_point().steps >= target {
            return Ok(());
        }
        let _leader = self.sync_lock.lock().await;
        // The sync that held the lock may have covered this caller's step already.
        if self.durable_point().steps >= target {
            return Ok(());
        }
        let point = self.written_point();
        let syncer = self.syncer.clone();
        tokio::task::spawn_blocking(move || syncer.sync())
            .await
            .map_err(|e| Error::internal(format!("the journal sync task failed: {e}")))??;
        let before = self.durable_point().steps;
        self.metrics.journal_syncs.fetch_add(1, Ordering::Relaxed);
        self.metrics.steps_committed.fetch_add(point.steps.saturating_sub(before), Ordering::Relaxed);
        if let Ok(mut durable) = self.durable.lock() {
            if point.steps > durable.steps {
                *durable = point;
            }
        }
        self.log_version.send_modify(|v| *v = v.wrapping_add(1));
        Ok(())
    }

    /// The last sequence number of `segment` a subscriber may be sent.
    pub fn durable_position(&self, segment: &str) -> u64 {
        self.durable.lock().ok().and_then(|d| d.positions.get(segment).copied()).unwrap_or(0)
    }

    /// The last sequence number of `segment` written (synced or not).
    pub fn written_position(&self, segment: &str) -> u64 {
        self.written.lock().ok().and_then(|w| w.positions.get(segment).copied()).unwrap_or(0)
    }

    pub fn durable_point(&self) -> LogPoint {
        self.durable.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn written_point(&self) -> LogPoint {
        self.written.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// The engine, held, with everything written so far durable: what a snapshot reads.
    pub async fn read_durable(&self) -> Result<MutexGuard<'_, Engine>, Error> {
        loop {
            self.commit().await?;
            let engine = self.engine.lock().await;
            // Steps only end with the engine held, so this cannot change while we hold it.
            if self.durable_point().steps >= self.written_point().steps {
                return Ok(engine);
            }
        }
    }

    pub fn watch_log(&self) -> watch::Receiver<u64> {
        self.log_version.subscribe()
    }

    pub fn subscriber_id(&self) -> u64 {
        self.next_subscriber.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts the changes logged since the last step into the per-segment metrics, and
    /// returns each segment's last sequence number.
    fn follow_log(&self, engine: &Engine) -> BTreeMap<String, u64> {
        let (Ok(mut counted), Ok(mut segments)) = (self.counted.lock(), self.metrics.segments.lock()) else {
            return BTreeMap::new();
        };
        let names = engine.segment_names();
        counted.retain(|name, _| names.contains(name));
        segments.retain(|name, _| names.contains(name));
        for name in names {
            let Ok(last) = engine.last_seq(&name) else { continue };
            // A segment created since the start is counted from its first change.
            let from = counted.get(&name).copied().unwrap_or(0);
            if last <= from {
                counted.insert(name, last);
                continue;
            }
            let counts = segments.entry(name.clone()).or_default();
            let mut next = from + 1;
            // Replaying the log cannot follow a change it does not see as it was: one
            // trimmed away before it was counted, or an entry FORGET KEY rewrote before it
            // was counted (its erasing exit would then be subtracted alone). Then the
            // members are counted from state instead.
            let mut recount = false;
            while next <= last {
                // Nothing to read where changes were logged: trimmed (or unreadable).
                let Ok(page) = engine.changes_page(&name, next, 4096) else {
                    recount = true;
                    break;
                };
                let Some(end) = page.last().map(|c| c.seq) else {
                    recount = true;
                    break;
                };
                recount |= page.first().is_some_and(|c| c.seq != next)
                    || page.iter().any(|c| c.kind == ChangeKind::Redacted);
                for change in &page {
                    match change.kind {
                        ChangeKind::Entered => {
                            counts.members += 1;
                            counts.entered += 1;
                        }
                        ChangeKind::Exited => {
                            counts.members = counts.members.saturating_sub(1);
                            counts.exited += 1;
                        }
                        ChangeKind::Updated => counts.updated += 1,
                        // Rewritten from an older change by FORGET KEY; counted then.
                        ChangeKind::Redacted => {}
                    }
                }
                next = end + 1;
            }
            if recount {
                if let Ok(members) = engine.member_count(&name) {
                    counts.members = members;
                }
            }
            counted.insert(name, last);
        }
        counted.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{click, clicked};

    /// Steps written without a sync are invisible to subscribers; one sync makes all of
    /// them durable at once, and a commit with nothing new to sync costs nothing.
    #[tokio::test]
    async fn one_sync_covers_every_step_written_and_only_synced_changes_are_visible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = clicked(dir.path()).await;
        let syncs = shared.metrics.journal_syncs.load(Ordering::Relaxed);
        for user in ["a", "b", "c"] {
            let mut step = shared.step().await;
            step.ingest("clicks", click(user)).expect("ingests");
        }
        assert_eq!(shared.written_point().positions.get("clicked"), Some(&3));
        assert_eq!(shared.durable_position("clicked"), 0, "nothing synced yet: nothing to send");
        shared.commit().await.expect("commits");
        assert_eq!(shared.durable_position("clicked"), 3);
        assert_eq!(
            shared.metrics.journal_syncs.load(Ordering::Relaxed),
            syncs + 1,
            "one sync for three steps"
        );
        shared.commit().await.expect("commits");
        assert_eq!(shared.metrics.journal_syncs.load(Ordering::Relaxed), syncs + 1, "nothing new: no sync");
    }

    /// The members gauge follows the log, and falls back to state where the log no longer
    /// shows what happened: here an entry forgotten (rewritten as redacted) in the step
    /// that made it, whose erasing exit alone would have been subtracted.
    #[tokio::test]
    async fn the_members_gauge_survives_a_key_forgotten_before_it_was_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = clicked(dir.path()).await;
        let members = |shared: &Shared| shared.metrics.segments.lock().expect("metrics")["clicked"].members;
        for user in ["a", "b"] {
            let mut step = shared.step().await;
            step.ingest("clicks", click(user)).expect("ingests");
        }
        assert_eq!(members(&shared), 2);
        {
            let mut step = shared.step().await;
            step.ingest("clicks", click("c")).expect("ingests");
            step.execute("FORGET KEY 'c'").await.expect("forgets");
        }
        assert_eq!(members(&shared), 2, "c entered and was erased in one step");
        {
            let mut step = shared.step().await;
            step.execute("FORGET KEY 'a'").await.expect("forgets");
        }
        assert_eq!(members(&shared), 1, "a was counted, then erased");
        {
            let mut step = shared.step().await;
            step.ingest("clicks", click("d")).expect("ingests");
            let none = segstream_engine::ChangeLogRetention { max_changes: Some(0), ..Default::default() };
            step.trim_change_logs(&none).expect("trims");
        }
        assert_eq!(members(&shared), 2, "d entered, its change trimmed before it was counted");
    }
}
