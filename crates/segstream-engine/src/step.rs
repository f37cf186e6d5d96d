//! The step: the unit in which the engine changes anything.
//!
//! Every kind of step ends here: an ingest, `INSERT` or `DELETE` (rows run through the
//! segments that read them), a statement (DDL, `FORGET KEY`), a clock advance (due
//! timers fired, in passes), maintenance (expired events, trimmed change logs, expired
//! idempotency keys) and the upgrades a data directory gets when it opens.
//!
//! ```text
//!   Step::new(input) ──> operators read and write through step.cx ──> Engine::commit(step)
//!                        (a later operator reads an earlier one's writes)   ├─> journal: the input + a digest of the changes logged
//!                                                                           └─> store: the writes, held in memory until a checkpoint
//! ```
//!
//! A step gathers all its writes before anything reaches the store, and
//! [`Engine::commit`] hands them over as one batch: a step is applied whole or not at
//! all, and a step that fails before its commit leaves no trace. This is the one place
//! a step's writes leave the engine, so it is where a newcomer looks to see when a step
//! is durable: its journal record is appended here, and synced here too unless the
//! server's group commit syncs it for many steps at once, or one call that runs several
//! steps syncs them together ([`Engine::with_one_sync`]). The state itself reaches
//! RocksDB only at a [checkpoint](Engine::checkpoint); after a crash, recovery loads the
//! last checkpoint and runs the journaled steps after it again (`recovery.rs`).

use segstream_ops::StepContext;
use segstream_state::{codec, Store, CF_CHANGES, CF_META};
use segstream_types::{Error, Result, Timestamp};

use crate::engine::Engine;
use crate::journal_record::{ChangeDigest, JournalInput, JournalRecord};
use crate::maintain::META_CLOCK;
use crate::recovery::{fault, fault_fired, FaultPoint};

/// One step's writes, until [`Engine::commit`].
pub(crate) struct Step<'s> {
    /// The step's instant and its writes, read back by its later operators.
    pub(crate) cx: StepContext<'s>,
    /// Key ranges deleted whole, `[start, end)` per family, applied before `cx`'s
    /// writes. The step's own reads do not see them, so a step deletes ranges only of
    /// keys it does not read back: a dropped relation's rows, a trimmed change log,
    /// expired events.
    ranges: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    /// What the journal records to run the step again; `None` only for the upgrades a
    /// data directory gets at open, before the journal starts (written straight to
    /// RocksDB).
    input: Option<JournalInput>,
}

impl<'s> Step<'s> {
    pub(crate) fn new(store: &'s Store, now: Timestamp, input: Option<JournalInput>) -> Self {
        Self { cx: StepContext::new(store, now), ranges: Vec::new(), input }
    }

    /// Deletes every key from `start` (included) to `end` (excluded).
    pub(crate) fn delete_range(&mut self, family: &'static str, start: Vec<u8>, end: Vec<u8>) {
        self.ranges.push((family, start, end));
    }

    /// Deletes every key that starts with `prefix`.
    pub(crate) fn delete_prefix(&mut self, family: &'static str, prefix: &[u8]) -> Result<()> {
        match codec::prefix_end(prefix) {
            Some(end) => self.delete_range(family, prefix.to_vec(), end),
            // All 0xff: no key after the prefix to end a range at.
            None => {
                for (key, _) in self.cx.scan_prefix(family, prefix)? {
                    self.cx.delete(family, key);
                }
            }
        }
        Ok(())
    }

    /// Stores the step's instant as the engine's clock: after a restart the clock never
    /// starts before a change already in a log.
    pub(crate) fn stamp_clock(&mut self) {
        let now = (self.cx.now.nanos() as u64).to_be_bytes().to_vec();
        self.cx.put(CF_META, META_CLOCK.as_bytes().to_vec(), now);
    }

    /// Whether the step writes anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty() && !self.cx.has_writes()
    }
}

impl Engine {
    /// Commits a step. Its journal record (the input, the engine's clock, a digest of the
    /// changes it logged) is appended first, so a step the journal refuses is not
    /// applied; then its range deletions and every write gathered in its context go to
    /// the store as one atomic batch; then, without group commit, the record is synced
    /// before the call returns. While recovery replays the journal nothing is appended:
    /// the digest is kept for recovery to compare with the journaled one.
    pub(crate) fn commit(&self, step: Step) -> Result<()> {
        self.commit_without_checkpoint(step)?;
        self.checkpoint_if_due();
        Ok(())
    }

    /// [`Engine::commit`] without the checkpoint that may follow it: for a step that
    /// adds or removes segments, whose caller checkpoints once the engine's set of
    /// running operators matches the step (a checkpoint writes the state those hold).
    pub(crate) fn commit_without_checkpoint(&self, step: Step) -> Result<()> {
        let Step { mut cx, ranges, input } = step;
        let digest = ChangeDigest::of(cx.written_from(CF_CHANGES, &[]));
        let mut batch = self.store.batch();
        for (family, start, end) in ranges {
            batch.delete_range(family, &start, &end)?;
        }
        cx.write_to(&mut batch)?;
        if !self.journaling {
            // Opening: an upgrade, written straight to RocksDB (synced).
            self.store.write(batch)?;
            cx.end(true);
            return Ok(());
        }
        if self.replaying {
            self.store.write(batch)?;
            cx.end(true);
            if let Ok(mut replayed) = self.replayed.lock() {
                *replayed = Some(digest);
            }
            return Ok(());
        }
        let input = input.ok_or_else(|| Error::internal("a step after open has no journal record"))?;
        let record = JournalRecord { clock: self.clock.manual.nanos(), digest, input };
        let position = self.journal.append(&record.encode())?;
        self.store.write(batch)?;
        // The operators' typed state keeps the step from here: the journal has it.
        cx.end(true);
        fault(FaultPoint::AfterAppend)?;
        if self.sync_held {
            // Synced, and answered, by the caller's `with_one_sync`.
            return Ok(());
        }
        if !self.group_commit {
            self.journal.sync_to(position)?;
        }
        fault(FaultPoint::AfterSync)?;
        Ok(())
    }

    /// Runs `call`, whose steps are acknowledged together: each is appended to the journal
    /// as it commits, and one sync covers them all before this returns, whether `call`
    /// succeeded or not (a step it committed before failing happened, and is kept). An
    /// ingest with the wall clock is two steps, the clock's catch-up (timers firing) and
    /// the rows; the caller is told of neither until both are durable, so one sync
    /// serves. Nothing of theirs is visible to anyone else before this returns: the
    /// engine is borrowed mutably throughout, and with group commit the server syncs
    /// before it publishes, as for any step.
    pub(crate) fn with_one_sync<R>(&mut self, call: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let held = std::mem::replace(&mut self.sync_held, true);
        fault_fired(); // only a fault inside `call` counts
        let result = call(self);
        self.sync_held = held;
        if held || !self.journaling || self.replaying || (result.is_err() && fault_fired()) {
            return result;
        }
        if !self.group_commit {
            // Nothing to write when the call committed no step.
            self.journal.sync()?;
        }
        let value = result?;
        fault(FaultPoint::AfterSync)?;
        Ok(value)
    }
}
