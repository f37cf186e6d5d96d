//! Every segment's timers, held in memory in instant order, and written to the store
//! only at checkpoints.
//!
//! A temporal filter sets a timer at each instant a row enters or leaves its window
//! (`temporal_filter.rs`), and a clock advance fires the due ones in instant order
//! (`Engine::advance_clock_to`). Both happen here, in memory: setting a timer costs one
//! ordered-map change, with no RocksDB read and no write until the next checkpoint, and
//! a timer set and fired (or cancelled) between two checkpoints never reaches RocksDB.
//!
//! ```text
//!   step:        TemporalFilter ──add weights──▶ TimerQueue ◀──next_instant / due / fire── clock advance
//!   checkpoint:  TimerQueue ──changed timers──▶ Store::checkpoint ──▶ RocksDB (family `timers`)
//!   cold:        TimerQueue ◀──pages in key order, or one MultiGet── RocksDB (last checkpoint)
//! ```
//!
//! A timer's key is the store's: `instant | segment | node | row`, the instant encoded
//! so that byte order is time order; its value is the weight the row gets at that
//! instant. A retraction adds the opposite weight to the same key, so it never searches.
//!
//! **What is held.** Every timer changed since the last checkpoint is held. Beyond
//! that, the queue holds every timer RocksDB has below a key bound (`Loaded`): all of
//! them when the store held none when the queue started (the usual case: a timer never
//! seen costs no read), else what firing has paged in so far. Past the state budget a
//! checkpoint evicts unchanged timers from the far end (the latest instants) and lowers
//! the bound. So a key the queue does not hold has no timer if it is below the bound,
//! and otherwise has what RocksDB holds.
//!
//! **Steps.** Every change is recorded with what it replaced, under a mark from the
//! step's context, as in `state_table.rs`: a failed step, or a pass a clock advance
//! takes back, leaves no trace.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use segstream_state::codec::{decode_instant, encode_instant, ByteReader, ByteWriter};
use segstream_state::{StateWrite, Store, CF_TIMERS};
use segstream_types::{Error, Result};

use crate::context::StepContext;
use crate::state_table::{CheckpointedState, StepUndo, TableBytes};

/// A due timer, as [`TimerQueue::due`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub key: Vec<u8>,
    pub segment: u64,
    pub node: u32,
    pub weight: i64,
}

/// Where a timer key's row starts: after `instant u64 | segment u64 | node u32`.
const ROW_START: usize = 20;

impl DueTimer {
    /// The row the timer carries (the end of its key, not a copy).
    pub fn row(&self) -> &[u8] {
        &self.key[ROW_START..]
    }
}

/// What a held timer costs beyond its key: the B-tree's share, the key's vector and the
/// allocator's rounding, roughly.
const ENTRY_OVERHEAD: usize = 72;

/// Timers are read from RocksDB in pages of this many.
const PAGE: usize = 4096;

#[derive(Clone, Copy)]
struct Timer {
    /// 0: no timer (cancelled, fired, or known absent from RocksDB).
    weight: i64,
    /// Changed since the last checkpoint.
    changed: bool,
    /// RocksDB held the key at the last checkpoint: removing it must reach RocksDB.
    stored: bool,
    /// The mark under which the undo log last recorded what this timer replaced.
    recorded: u64,
}

impl Timer {
    /// Adds `weight` to a held timer. Returns the timer as it was, and whether the undo
    /// log must record it (the step's or savepoint's first change to it, under the mark
    /// now in `recorded`).
    fn add_weight(&mut self, cx: &mut StepContext, weight: i64) -> (Timer, bool) {
        let old = *self;
        let record = old.recorded < cx.undo_floor();
        if record {
            self.recorded = cx.next_mark();
        }
        self.weight += weight;
        self.changed = true;
        (old, record)
    }
}

/// Which of RocksDB's timers the queue holds (besides every changed one).
#[derive(Clone, PartialEq, Eq, Debug)]
enum Loaded {
    /// Not known yet: the first step that needs it looks at the store.
    Unknown,
    /// Every stored timer with a key below this one.
    Below(Vec<u8>),
    /// Every stored timer.
    All,
}

impl Loaded {
    /// Whether every stored timer with a key below `key` is held.
    fn covers(&self, key: &[u8]) -> bool {
        match self {
            Loaded::Unknown => false,
            Loaded::Below(bound) => key <= bound.as_slice(),
            Loaded::All => true,
        }
    }

    /// Whether `key` may be in RocksDB without being held.
    fn may_miss(&self, key: &[u8]) -> bool {
        match self {
            Loaded::Unknown => true,
            Loaded::Below(bound) => key >= bound.as_slice(),
            Loaded::All => false,
        }
    }
}

struct Inner {
    timers: BTreeMap<Vec<u8>, Timer>,
    loaded: Loaded,
    /// The current step's changes: the mark, the key, and the timer it replaced (`None`:
    /// not held).
    undo: Vec<(u64, Vec<u8>, Option<Timer>)>,
    /// Registered with the current step's context.
    in_step: bool,
    resident: usize,
    changed: usize,
    /// Timers read from RocksDB in a page, for tests.
    page: usize,
}

fn entry_bytes(key: &[u8]) -> usize {
    key.len() + ENTRY_OVERHEAD
}

fn decode_weight(bytes: &[u8]) -> Result<i64> {
    ByteReader::new(bytes).i64()
}

fn poisoned() -> Error {
    Error::internal("the timer queue's lock is poisoned")
}

impl Inner {
    /// Puts (or with `None`, removes) a held timer, keeping the byte counts.
    fn replace(&mut self, key: Vec<u8>, timer: Option<Timer>) -> Option<Timer> {
        let size = entry_bytes(&key);
        if let Some(t) = &timer {
            self.resident += size;
            self.changed += usize::from(t.changed) * size;
        }
        let old = match timer {
            Some(t) => self.timers.insert(key, t),
            None => self.timers.remove(&key),
        };
        if let Some(t) = &old {
            self.resident -= size;
            self.changed -= usize::from(t.changed) * size;
        }
        old
    }

    /// Holds a timer as RocksDB has it (`weight` 0: RocksDB has none), unless the queue
    /// already holds the key (then its own value is the newer one).
    fn hold_stored(&mut self, key: &[u8], weight: i64) {
        if !self.timers.contains_key(key) {
            let timer = Timer { weight, changed: false, stored: weight != 0, recorded: 0 };
            self.replace(key.to_vec(), Some(timer));
        }
    }

    /// Adds `weight` to the timer at `key`, which is held or known absent. One search of
    /// the tree, whether the timer is held or new.
    fn add(&mut self, cx: &mut StepContext, key: Vec<u8>, weight: i64) {
        if weight == 0 {
            return;
        }
        let size = entry_bytes(&key);
        match self.timers.entry(key) {
            std::collections::btree_map::Entry::Occupied(mut held) => {
                let timer = held.get_mut();
                let (old, record) = timer.add_weight(cx, weight);
                let gone = timer.weight == 0 && !timer.stored;
                let recorded = timer.recorded;
                self.changed += usize::from(!old.changed) * size;
                if record {
                    self.undo.push((recorded, held.key().clone(), Some(old)));
                }
                if gone {
                    // Never in RocksDB: nothing to hold, nothing for a checkpoint to write.
                    held.remove();
                    self.resident -= size;
                    self.changed -= size;
                }
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                let mark = cx.next_mark();
                self.undo.push((mark, slot.key().clone(), None));
                slot.insert(Timer { weight, changed: true, stored: false, recorded: mark });
                self.resident += size;
                self.changed += size;
            }
        }
    }

    /// [`Inner::add`] for a key the queue may already hold (a due timer being fired):
    /// changed where it is, with no copy of the key unless the undo log needs one.
    fn add_held(&mut self, cx: &mut StepContext, key: &[u8], weight: i64) {
        if weight == 0 {
            return;
        }
        let Some(timer) = self.timers.get_mut(key) else {
            return self.add(cx, key.to_vec(), weight);
        };
        let size = entry_bytes(key);
        let (old, record) = timer.add_weight(cx, weight);
        if record {
            self.undo.push((timer.recorded, key.to_vec(), Some(old)));
        }
        let gone = timer.weight == 0 && !timer.stored;
        self.changed += usize::from(!old.changed) * size;
        if gone {
            // Never in RocksDB: nothing to hold, nothing for a checkpoint to write.
            self.timers.remove(key);
            self.resident -= size;
            self.changed -= size;
        }
    }

    /// Reads the next page of stored timers from the bound on (up to `end`, excluded)
    /// and raises the bound past it.
    fn load_page(&mut self, store: &Store, end: Option<&[u8]>) -> Result<()> {
        let Loaded::Below(from) = &self.loaded else { return Ok(()) };
        let page = store.scan_between(CF_TIMERS, from, end, self.page)?;
        for (key, value) in &page {
            self.hold_stored(key, decode_weight(value)?);
        }
        self.loaded = match (page.len() < self.page, end) {
            (true, Some(end)) => Loaded::Below(end.to_vec()),
            (true, None) => Loaded::All,
            (false, _) => {
                let mut after = page.last().map(|(k, _)| k.clone()).unwrap_or_default();
                after.push(0);
                Loaded::Below(after)
            }
        };
        Ok(())
    }

    /// Pages stored timers in until every one below `key` is held.
    fn load_below(&mut self, store: &Store, key: &[u8]) -> Result<()> {
        while !self.loaded.covers(key) {
            self.load_page(store, Some(key))?;
        }
        Ok(())
    }

    /// Drops unchanged timers, from the latest on, while `more` says to; the bound goes
    /// down to the earliest one dropped.
    fn evict_latest(&mut self, mut more: impl FnMut(usize) -> bool) {
        let mut dropped: Vec<Vec<u8>> = Vec::new();
        let mut freed = 0;
        for (key, timer) in self.timers.iter().rev() {
            if !more(freed) {
                break;
            }
            if !timer.changed {
                freed += entry_bytes(key);
                dropped.push(key.clone());
            }
        }
        let Some(earliest) = dropped.last().cloned() else { return };
        for key in dropped {
            self.replace(key, None);
        }
        if self.loaded.covers(&earliest) {
            self.loaded = Loaded::Below(earliest);
        }
    }
}

/// The timers of every running segment (one per engine, shared by its temporal filters).
pub struct TimerQueue {
    inner: Arc<Mutex<Inner>>,
}

impl Default for TimerQueue {
    fn default() -> Self {
        Self::new()
    }
}

struct Handle(Arc<Mutex<Inner>>);

impl TimerQueue {
    pub fn new() -> Self {
        let inner = Inner {
            timers: BTreeMap::new(),
            loaded: Loaded::Unknown,
            undo: Vec::new(),
            in_step: false,
            resident: 0,
            changed: 0,
            page: PAGE,
        };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    /// A queue that reads stored timers `page` at a time (tests of paging).
    #[cfg(test)]
    fn with_page(page: usize) -> Self {
        let queue = Self::new();
        queue.inner.lock().expect("new lock").page = page;
        queue
    }

    /// The queue for a step: registered with the step's context (so a failed step takes
    /// its changes back), and knowing what the store holds.
    fn enter(&self, cx: &mut StepContext) -> Result<MutexGuard<'_, Inner>> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if !inner.in_step {
            inner.in_step = true;
            cx.touched(Arc::new(Handle(Arc::clone(&self.inner))));
        }
        if inner.loaded == Loaded::Unknown {
            let empty = cx.store().scan_between(CF_TIMERS, &[], None, 1)?.is_empty();
            inner.loaded = if empty { Loaded::All } else { Loaded::Below(Vec::new()) };
        }
        Ok(inner)
    }

    /// Adds weights to timers: `(key, weight)` pairs, in any order, a key possibly more
    /// than once. Keys RocksDB may hold that the queue does not are read first, with one
    /// MultiGet.
    pub fn add(&self, cx: &mut StepContext, changes: Vec<(Vec<u8>, i64)>) -> Result<()> {
        let mut inner = self.enter(cx)?;
        let mut cold: Vec<Vec<u8>> = changes
            .iter()
            .filter(|(key, _)| inner.loaded.may_miss(key) && !inner.timers.contains_key(key))
            .map(|(key, _)| key.clone())
            .collect();
        if !cold.is_empty() {
            cold.sort_unstable();
            cold.dedup();
            let stored = cx.store().multi_get(CF_TIMERS, &cold)?;
            for (key, value) in cold.iter().zip(stored) {
                let weight = value.as_deref().map(decode_weight).transpose()?.unwrap_or(0);
                inner.hold_stored(key, weight);
            }
        }
        for (key, weight) in changes {
            inner.add(cx, key, weight);
        }
        Ok(())
    }

    /// The earliest instant in `[from, through]` with a timer.
    pub fn next_instant(&self, cx: &mut StepContext, from: i64, through: i64) -> Result<Option<i64>> {
        let mut inner = self.enter(cx)?;
        let start = encode_instant(from);
        let end = through.checked_add(1).map(encode_instant);
        loop {
            // Held timers are all there are below the bound.
            let found = inner
                .timers
                .range::<[u8], _>((Bound::Included(&start[..]), Bound::Unbounded))
                .take_while(|(key, _)| end.as_ref().is_none_or(|end| key.as_slice() < &end[..]))
                .take_while(|(key, _)| inner.loaded.covers(key))
                .find(|(_, timer)| timer.weight != 0)
                .map(|(key, _)| decode_instant(key))
                .transpose()?;
            if found.is_some() {
                return Ok(found);
            }
            let done = match &end {
                Some(end) => inner.loaded.covers(end),
                None => inner.loaded == Loaded::All,
            };
            if done {
                return Ok(None);
            }
            inner.load_page(cx.store(), end.as_ref().map(|e| &e[..]))?;
        }
    }

    /// Every timer set for exactly `instant`, in key order.
    pub fn due(&self, cx: &mut StepContext, instant: i64) -> Result<Vec<DueTimer>> {
        let mut inner = self.enter(cx)?;
        let start = encode_instant(instant);
        let end = instant.checked_add(1).map(encode_instant);
        match &end {
            Some(end) => inner.load_below(cx.store(), end)?,
            None => {
                while inner.loaded != Loaded::All {
                    inner.load_page(cx.store(), None)?;
                }
            }
        }
        inner
            .timers
            .range::<[u8], _>((Bound::Included(&start[..]), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(&start))
            .filter(|(_, timer)| timer.weight != 0)
            .map(|(key, timer)| due_timer(key.clone(), timer.weight))
            .collect()
    }

    /// The timers due at each instant of `[from, through]`, instant by instant in key
    /// order (each as [`TimerQueue::due`] gives it), for at most `max_instants` instants:
    /// what a clock advance fires next. When the queue holds every timer up to `through`
    /// (the usual case), one walk of the ordered map; otherwise instant by instant,
    /// paging stored timers in.
    pub fn due_instants(
        &self,
        cx: &mut StepContext,
        from: i64,
        through: i64,
        max_instants: usize,
    ) -> Result<Vec<(i64, Vec<DueTimer>)>> {
        let mut out: Vec<(i64, Vec<DueTimer>)> = Vec::new();
        {
            let inner = self.enter(cx)?;
            let start = encode_instant(from);
            let end = through.checked_add(1).map(encode_instant);
            let all_held = match &end {
                Some(end) => inner.loaded.covers(end),
                None => inner.loaded == Loaded::All,
            };
            if all_held {
                let held = inner
                    .timers
                    .range::<[u8], _>((Bound::Included(&start[..]), Bound::Unbounded))
                    .take_while(|(key, _)| end.as_ref().is_none_or(|end| key.as_slice() < &end[..]))
                    .filter(|(_, timer)| timer.weight != 0);
                for (key, timer) in held {
                    let instant = decode_instant(key)?;
                    let same = out.last().is_some_and(|(last, _)| *last == instant);
                    if !same && out.len() == max_instants {
                        break;
                    }
                    let timer = due_timer(key.clone(), timer.weight)?;
                    match out.last_mut() {
                        Some((_, due)) if same => due.push(timer),
                        _ => out.push((instant, vec![timer])),
                    }
                }
                return Ok(out);
            }
        }
        let mut cursor = from;
        while out.len() < max_instants {
            let Some(next) = self.next_instant(cx, cursor, through)? else { break };
            out.push((next, self.due(cx, next)?));
            cursor = next.saturating_add(1);
        }
        Ok(out)
    }

    /// Fired timers are gone (their weight is now the operator's output).
    pub fn fire(&self, cx: &mut StepContext, fired: &[DueTimer]) -> Result<()> {
        let mut inner = self.enter(cx)?;
        for timer in fired {
            inner.add_held(cx, &timer.key, -timer.weight);
        }
        Ok(())
    }

    /// The earliest instant in `[from, through]` with a timer, among those held: for a
    /// clock advance that has paged in every timer up to `through`.
    pub fn first_held_between(&self, from: i64, through: i64) -> Result<Option<i64>> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        let start = encode_instant(from);
        let end = through.checked_add(1).map(encode_instant);
        inner
            .timers
            .range::<[u8], _>((Bound::Included(&start[..]), Bound::Unbounded))
            .take_while(|(key, _)| end.as_ref().is_none_or(|end| key.as_slice() < &end[..]))
            .find(|(_, timer)| timer.weight != 0)
            .map(|(key, _)| decode_instant(key))
            .transpose()
    }

    /// Removes every timer of a segment (dropped or replaced), held or stored.
    pub fn remove_segment(&self, cx: &mut StepContext, segment: u64) -> Result<()> {
        let mut inner = self.enter(cx)?;
        let of_segment = |key: &[u8]| key.get(8..16) == Some(&segment.to_be_bytes()[..]);
        if let Loaded::Below(from) = inner.loaded.clone() {
            for (key, value) in cx.store().scan_between(CF_TIMERS, &from, None, usize::MAX)? {
                if of_segment(&key) {
                    inner.hold_stored(&key, decode_weight(&value)?);
                }
            }
        }
        let held: Vec<(Vec<u8>, i64)> = inner
            .timers
            .iter()
            .filter(|(key, timer)| timer.weight != 0 && of_segment(key))
            .map(|(key, timer)| (key.clone(), -timer.weight))
            .collect();
        for (key, weight) in held {
            inner.add(cx, key, weight);
        }
        Ok(())
    }

    /// This queue's share of a checkpoint and of the state budget.
    pub fn state(&self) -> &dyn CheckpointedState {
        self
    }

    /// How many timers are held, and how many of them are set.
    pub fn held(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|inner| (inner.timers.len(), inner.timers.values().filter(|t| t.weight != 0).count()))
            .unwrap_or_default()
    }
}

fn due_timer(key: Vec<u8>, weight: i64) -> Result<DueTimer> {
    let corrupt = || Error::storage("a timer key is damaged");
    let segment = u64::from_be_bytes(key.get(8..16).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
    let node =
        u32::from_be_bytes(key.get(16..ROW_START).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
    Ok(DueTimer { key, segment, node, weight })
}

impl StepUndo for Handle {
    fn rollback_to(&self, mark: u64) {
        let Ok(mut inner) = self.0.lock() else { return };
        while inner.undo.last().is_some_and(|(m, _, _)| *m >= mark) {
            if let Some((_, key, old)) = inner.undo.pop() {
                inner.replace(key, old);
            }
        }
    }

    fn end_step(&self, keep: bool, floor: u64) {
        if !keep {
            self.rollback_to(floor);
        }
        if let Ok(mut inner) = self.0.lock() {
            inner.undo.clear();
            inner.in_step = false;
        }
    }
}

impl CheckpointedState for TimerQueue {
    fn changed_entries(&self, out: &mut Vec<StateWrite>) -> Result<()> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        for (key, timer) in inner.timers.iter().filter(|(_, t)| t.changed && (t.stored || t.weight != 0)) {
            let value = (timer.weight != 0).then(|| {
                let mut w = ByteWriter::default();
                w.i64(timer.weight);
                w.0
            });
            out.push((CF_TIMERS, key.clone(), value));
        }
        Ok(())
    }

    fn checkpointed(&self) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let inner = &mut *inner;
        let mut freed = 0;
        inner.timers.retain(|key, timer| {
            timer.changed = false;
            timer.stored = timer.weight != 0;
            // A removed timer is absent from RocksDB now: below the bound, not holding
            // it says as much; above it, RocksDB does.
            if !timer.stored {
                freed += entry_bytes(key);
            }
            timer.stored
        });
        inner.resident -= freed;
        inner.changed = 0;
    }

    fn bytes(&self) -> TableBytes {
        self.inner
            .lock()
            .map(|inner| TableBytes { resident: inner.resident, changed: inner.changed })
            .unwrap_or_default()
    }

    /// Timers are used in instant order, so the latest ones are the coldest: evicting
    /// drops the latest half of what is held.
    fn age(&self, evict: bool) {
        if !evict {
            return;
        }
        if let Ok(mut inner) = self.inner.lock() {
            let half = inner.resident / 2;
            inner.evict_latest(|freed| freed < half);
        }
    }

    fn evict_clean(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.evict_latest(|_| true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segstream_types::Timestamp;

    fn key(instant: i64, row: u8) -> Vec<u8> {
        let mut k = encode_instant(instant).to_vec();
        k.extend_from_slice(&7u64.to_be_bytes());
        k.extend_from_slice(&1u32.to_be_bytes());
        k.push(row);
        k
    }

    fn checkpoint(queue: &TimerQueue, store: &Store) -> Vec<StateWrite> {
        let mut changed = Vec::new();
        queue.changed_entries(&mut changed).unwrap();
        store.checkpoint(&[], &changed).unwrap();
        queue.checkpointed();
        changed
    }

    /// Every due instant and its timers, as a clock advance over all time finds them.
    fn schedule(queue: &TimerQueue, store: &Store) -> Vec<(i64, Vec<(u8, i64)>)> {
        let mut cx = StepContext::new(store, Timestamp(0));
        let mut out = Vec::new();
        let mut from = i64::MIN;
        while let Some(at) = queue.next_instant(&mut cx, from, i64::MAX).unwrap() {
            let due = queue.due(&mut cx, at).unwrap();
            out.push((at, due.iter().map(|t| (*t.row().last().unwrap(), t.weight)).collect()));
            from = at + 1;
        }
        cx.end(true);
        out
    }

    /// The same schedule, walked as a clock advance does: `max` instants per walk.
    fn walked(queue: &TimerQueue, store: &Store, max: usize) -> Vec<(i64, Vec<(u8, i64)>)> {
        let mut cx = StepContext::new(store, Timestamp(0));
        let mut out = Vec::new();
        let mut from = i64::MIN;
        loop {
            let walk = queue.due_instants(&mut cx, from, i64::MAX - 1, max).unwrap();
            assert!(walk.len() <= max);
            let Some(&(last, _)) = walk.last() else { break };
            for (at, due) in walk {
                out.push((at, due.iter().map(|t| (*t.row().last().unwrap(), t.weight)).collect()));
            }
            from = last + 1;
        }
        cx.end(true);
        out
    }

    /// A walk of the due instants gives what instant-by-instant reads give, whole
    /// instants only (never part of one), whether the queue holds every timer or pages
    /// stored ones in; a fired timer's row is the end of its key.
    #[test]
    fn due_instants_walk_the_schedule_whole_instants_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.hold_writes_in_memory();
        let queue = TimerQueue::new();
        let mut cx = StepContext::new(&store, Timestamp(0));
        let mut changes: Vec<(Vec<u8>, i64)> = (0..12).map(|i| (key(i / 3 * 10, i as u8), 1)).collect();
        changes.push((key(20, 7), -1)); // cancels row 7 at 20 (weight 0: not due)
        queue.add(&mut cx, changes).unwrap();
        cx.end(true);
        let expected = schedule(&queue, &store);
        assert_eq!(expected[2], (20, vec![(6, 1), (8, 1)]));
        for max in [1, 2, 3, 100] {
            assert_eq!(walked(&queue, &store, max), expected, "{max} instants per walk");
        }
        let mut cx = StepContext::new(&store, Timestamp(0));
        let walk = queue.due_instants(&mut cx, 10, 25, 100).unwrap();
        assert_eq!(walk.iter().map(|(at, due)| (*at, due.len())).collect::<Vec<_>>(), vec![(10, 3), (20, 2)]);
        assert_eq!(walk[0].1[0].row(), &[3u8][..]);
        cx.end(true);
        // After a restart the stored timers are paged in, two at a time.
        checkpoint(&queue, &store);
        let restarted = TimerQueue::with_page(2);
        for max in [1, 2, 100] {
            assert_eq!(walked(&restarted, &store, max), expected, "paged, {max} instants per walk");
        }
    }

    /// Weights add up per key; a failed step and a savepoint taken back leave nothing;
    /// fired timers are gone; a timer set and removed between checkpoints never reaches
    /// RocksDB.
    #[test]
    fn timers_add_up_undo_fire_and_checkpoint_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.hold_writes_in_memory();
        let queue = TimerQueue::new();

        let mut cx = StepContext::new(&store, Timestamp(0));
        queue.add(&mut cx, vec![(key(10, 1), 1), (key(20, 1), -1), (key(10, 1), 1)]).unwrap();
        drop(cx); // never committed
        assert_eq!(schedule(&queue, &store), vec![]);

        let mut cx = StepContext::new(&store, Timestamp(0));
        queue.add(&mut cx, vec![(key(10, 1), 1), (key(20, 1), -1), (key(10, 1), 1)]).unwrap();
        cx.savepoint();
        queue.add(&mut cx, vec![(key(10, 1), -2), (key(15, 2), 1)]).unwrap();
        cx.rollback();
        queue.add(&mut cx, vec![(key(30, 3), 1)]).unwrap();
        cx.end(true);
        assert_eq!(
            schedule(&queue, &store),
            vec![(10, vec![(1, 2)]), (20, vec![(1, -1)]), (30, vec![(3, 1)])]
        );

        let written = checkpoint(&queue, &store);
        assert_eq!(written.len(), 3);
        assert_eq!(queue.bytes().changed, 0);

        // Fired, then checkpointed: deleted from RocksDB.
        let mut cx = StepContext::new(&store, Timestamp(0));
        let due = queue.due(&mut cx, 10).unwrap();
        queue.fire(&mut cx, &due).unwrap();
        // Set and cancelled within the interval: nothing to write.
        queue.add(&mut cx, vec![(key(40, 4), 1)]).unwrap();
        queue.add(&mut cx, vec![(key(40, 4), -1)]).unwrap();
        cx.end(true);
        assert_eq!(checkpoint(&queue, &store), vec![(CF_TIMERS, key(10, 1), None)]);
        assert_eq!(queue.held(), (2, 2));
        assert_eq!(store.scan_prefix(CF_TIMERS, &[]).unwrap().len(), 2);
    }

    /// A queue over a store that holds timers reads them in pages as firing needs them,
    /// and one MultiGet for a timer it adds to; evicted timers come back the same way.
    #[test]
    fn stored_timers_are_paged_in_and_evicted_ones_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.hold_writes_in_memory();
        let first = TimerQueue::new();
        let mut cx = StepContext::new(&store, Timestamp(0));
        first.add(&mut cx, (0..10).map(|i| (key(i * 10, i as u8), 1)).collect()).unwrap();
        cx.end(true);
        checkpoint(&first, &store);
        let expected = schedule(&first, &store);
        assert_eq!(expected.len(), 10);

        // A new queue (a restart) pages the stored timers in two at a time.
        let queue = TimerQueue::with_page(2);
        let mut cx = StepContext::new(&store, Timestamp(0));
        assert_eq!(queue.next_instant(&mut cx, 25, 45).unwrap(), Some(30));
        assert_eq!(
            queue.held().0,
            4,
            "read up to the first due one: {:?}",
            queue.inner.lock().unwrap().loaded
        );
        // A change to a stored timer the queue has not read adds to its stored weight.
        queue.add(&mut cx, vec![(key(90, 9), 2), (key(95, 1), 1)]).unwrap();
        cx.end(true);
        let mut want = expected.clone();
        want[9].1 = vec![(9, 3)];
        want.push((95, vec![(1, 1)]));
        assert_eq!(schedule(&queue, &store), want);

        // Evicted from the latest on; what is changed stays.
        checkpoint(&queue, &store);
        queue.age(true);
        let held = queue.held().0;
        assert!(held < 11 && held > 0, "{held}");
        assert_eq!(schedule(&queue, &store), want);
        queue.evict_clean();
        assert_eq!(queue.held().0, 0);
        let mut cx = StepContext::new(&store, Timestamp(0));
        queue.add(&mut cx, vec![(key(0, 0), -1)]).unwrap();
        cx.end(true);
        want.remove(0);
        assert_eq!(schedule(&queue, &store), want);
        assert_eq!(checkpoint(&queue, &store), vec![(CF_TIMERS, key(0, 0), None)]);

        // Removing a segment's timers reaches the ones only RocksDB holds.
        queue.evict_clean();
        let mut cx = StepContext::new(&store, Timestamp(0));
        queue.remove_segment(&mut cx, 7).unwrap();
        cx.end(true);
        assert_eq!(schedule(&queue, &store), vec![]);
        assert_eq!(checkpoint(&queue, &store).len(), 10);
        assert!(store.scan_prefix(CF_TIMERS, &[]).unwrap().is_empty());
    }
}
