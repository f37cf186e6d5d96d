//! What every call shares: the engine (one writer at a time), the signal that the change
//! log moved, the metrics, and backfill notices for the Execute call that caused them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use segstream_engine::{ChangeKind, Engine};
use tokio::sync::{watch, Mutex, MutexGuard};

use crate::metrics::{Metrics, SegmentCounts};

pub struct Shared {
    engine: Mutex<Engine>,
    /// Bumped after every step; subscribers wait on it instead of polling.
    log_version: watch::Sender<u64>,
    pub metrics: Arc<Metrics>,
    /// Backfill progress lines, taken by the Execute call that ran the backfill.
    pub notices: Arc<StdMutex<Vec<String>>>,
    /// Per segment, the last sequence number the metrics have counted.
    counted: StdMutex<BTreeMap<String, u64>>,
    next_subscriber: AtomicU64,
}

/// The engine, held for one step: when dropped, the step is timed, the metrics follow
/// the change log, and subscribers are woken.
pub struct Step<'a> {
    pub engine: MutexGuard<'a, Engine>,
    shared: &'a Shared,
    started: Instant,
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
        self.shared.follow_log(&self.engine);
        self.shared.log_version.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl Shared {
    pub fn new(mut engine: Engine) -> Arc<Self> {
        let notices = Arc::new(StdMutex::new(Vec::new()));
        {
            let notices = Arc::clone(&notices);
            engine.on_backfill_progress(move |p| {
                if let Ok(mut n) = notices.lock() {
                    n.push(format!(
                        "backfill {}: {} rows of {} from {}",
                        p.segment, p.rows, p.total, p.relation
                    ));
                }
            });
        }
        let metrics = Arc::new(Metrics::default());
        let mut counted = BTreeMap::new();
        if let Ok(mut segments) = metrics.segments.lock() {
            // Segments that exist at start: their members now, changes counted from here.
            for name in engine.segment_names() {
                let members = engine.member_count(&name).unwrap_or(0);
                segments.insert(name.clone(), SegmentCounts { members, ..Default::default() });
                counted.insert(name.clone(), engine.last_seq(&name).unwrap_or(0));
            }
        }
        Arc::new(Self {
            engine: Mutex::new(engine),
            log_version: watch::channel(0).0,
            metrics,
            notices,
            counted: StdMutex::new(counted),
            next_subscriber: AtomicU64::new(1),
        })
    }

    /// The engine for a step that may change things (statements, ingest, the clock).
    pub async fn step(&self) -> Step<'_> {
        let engine = self.engine.lock().await;
        Step { engine, shared: self, started: Instant::now() }
    }

    /// The engine for a read (lookups, subscriptions): no metrics, no wake-up.
    pub async fn read(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().await
    }

    pub fn watch_log(&self) -> watch::Receiver<u64> {
        self.log_version.subscribe()
    }

    pub fn subscriber_id(&self) -> u64 {
        self.next_subscriber.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts the changes logged since the last step into the per-segment metrics.
    fn follow_log(&self, engine: &Engine) {
        let (Ok(mut counted), Ok(mut segments)) = (self.counted.lock(), self.metrics.segments.lock()) else {
            return;
        };
        let names = engine.segment_names();
        counted.retain(|name, _| names.contains(name));
        segments.retain(|name, _| names.contains(name));
        for name in names {
            let Ok(last) = engine.last_seq(&name) else { continue };
            // A segment created since the start is counted from its first change.
            let from = counted.get(&name).copied().unwrap_or(0);
            if last <= from {
                continue;
            }
            let counts = segments.entry(name.clone()).or_default();
            let mut next = from + 1;
            while next <= last {
                let Ok(page) = engine.changes_page(&name, next, 4096) else { break };
                let Some(end) = page.last().map(|c| c.seq) else { break };
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
                    }
                }
                next = end + 1;
            }
            counted.insert(name, last);
        }
    }
}
