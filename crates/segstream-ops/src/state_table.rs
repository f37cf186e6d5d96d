//! Operator state held in memory as typed values, and written to the store only at
//! checkpoints.
//!
//! An operator that keeps state per key (an aggregate's groups) holds it here as the
//! values it computes with: a step reads and changes a group without decoding or
//! encoding bytes, and without passing through the store's layers. The store sees the
//! state once per checkpoint, as the bytes of every entry changed since the last one
//! ([`CheckpointedState::changed_entries`]), in the same RocksDB batch as the rest of the
//! checkpoint.
//!
//! ```text
//!   step:        operator ──get / set──▶ StateTable (typed, in memory; undo log for the step)
//!   checkpoint:  StateTable ──changed entries, encoded──▶ Store::checkpoint ──▶ RocksDB
//!   miss:        StateTable ◀──get_many, decoded── StepContext ◀── store (last checkpoint)
//! ```
//!
//! - **Misses.** A table knows whether it holds every key that has state
//!   (`complete`): true for an operator whose state began empty and has evicted
//!   nothing, so a key never seen costs no RocksDB read. Otherwise a missing key is read
//!   through the step's context (the last checkpoint, overlaid with the step's own
//!   writes) and decoded once.
//! - **Steps.** Every change a step makes is recorded with what it replaced, under a
//!   mark from the step's context: a step that fails, or a savepoint taken back, undoes
//!   its changes (`StepContext` calls [`StepUndo`]), so a failed step leaves no trace
//!   here either. A committed step forgets its undo log. An entry unchanged since the
//!   last checkpoint is not copied for the log: taking its change back drops it, and
//!   the next step reads it back from RocksDB.
//! - **Memory.** After a checkpoint every entry is clean; when the tables hold more
//!   than the state budget, the engine evicts clean entries, which are read back on a
//!   miss.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use segstream_state::{codec, KeyHash, StateWrite};
use segstream_types::{Error, Result};

use crate::context::StepContext;

/// A value an operator keeps per key.
pub trait TableValue: Clone + Send + 'static {
    /// The bytes stored at a checkpoint (read back by the operator's decoder).
    fn encode(&self) -> Result<Vec<u8>>;
    /// Roughly what the value holds on the heap, for the state budget.
    fn heap_bytes(&self) -> usize;
}

/// What a step's context asks of each table the step changed.
pub trait StepUndo: Send + Sync {
    /// Takes back every change made under a mark at or after `mark`.
    fn rollback_to(&self, mark: u64);
    /// The step is over: committed (`keep`) or abandoned (everything from the step's
    /// first mark, `floor`, taken back).
    fn end_step(&self, keep: bool, floor: u64);
}

/// What the engine asks of every table at a checkpoint and for the state budget.
pub trait CheckpointedState: Send + Sync {
    /// Every entry changed since the last checkpoint, encoded: `(family, key, value)`,
    /// `None` for a deleted one. The entries stay changed until
    /// [`CheckpointedState::checkpointed`].
    fn changed_entries(&self, out: &mut Vec<StateWrite>) -> Result<()>;
    /// The entries given by the last `changed_entries` are in RocksDB.
    fn checkpointed(&self);
    /// Bytes held in memory, and of them, changed since the last checkpoint.
    fn bytes(&self) -> TableBytes;
    /// Starts a new period of use: with `evict`, first drops every entry that is in
    /// RocksDB as it is here and was not used in the period that ends (read back on a
    /// miss, if ever needed again).
    fn age(&self, evict: bool);
    /// Drops every entry that is in RocksDB as it is here, used or not.
    fn evict_clean(&self);
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableBytes {
    pub resident: usize,
    pub changed: usize,
}

/// What an entry costs beyond its key and value: the map slot, the key's vector and the
/// allocator's rounding, roughly.
const ENTRY_OVERHEAD: usize = 64;

struct Entry<V> {
    /// `None`: the key has no state (deleted, or known absent from the store).
    value: Option<V>,
    /// Changed since the last checkpoint.
    changed: bool,
    /// The mark under which the undo log last recorded what this entry replaced: a
    /// change after it, and after the current step's (or savepoint's) first mark, needs
    /// no second record, since taking the step back restores the first one.
    recorded: u64,
    /// Read or changed since the table last aged (about one checkpoint interval).
    used: bool,
    /// RocksDB may hold the key (it did at the last checkpoint): deleting it must reach
    /// RocksDB. A key created and deleted between two checkpoints never does.
    stored: bool,
    /// What the entry costs in memory, key included (see [`entry_bytes`]).
    size: usize,
}

impl<V: TableValue> Entry<V> {
    /// Records what the entry holds in the undo log before a step first changes it (once
    /// per step or savepoint): for an entry unchanged since the last checkpoint, only that
    /// RocksDB has it, so nothing is copied.
    fn record_undo(&mut self, cx: &mut StepContext, key: &[u8], undo: &mut Vec<(u64, Vec<u8>, Replaced<V>)>) {
        if self.recorded >= cx.undo_floor() {
            return;
        }
        let mark = cx.next_mark();
        let old = if self.stored && !self.changed {
            Replaced::Stored
        } else {
            Replaced::Entry(Entry { value: self.value.clone(), ..*self })
        };
        undo.push((mark, key.to_vec(), old));
        self.recorded = mark;
    }
}

fn entry_bytes<V: TableValue>(key: &[u8], value: &Option<V>) -> usize {
    key.len() + ENTRY_OVERHEAD + value.as_ref().map_or(0, |v| std::mem::size_of::<V>() + v.heap_bytes())
}

/// What a change replaced, for the undo log.
enum Replaced<V> {
    /// The key was not held.
    Nothing,
    /// The entry as it was.
    Entry(Entry<V>),
    /// An entry RocksDB holds as it was (clean since the last checkpoint): taking the
    /// change back drops it, to be read back when next needed, so the change copied
    /// nothing.
    Stored,
}

struct Inner<V> {
    entries: HashMap<Vec<u8>, Entry<V>, KeyHash>,
    /// Whether `entries` holds every key that has state: `None` until a step first
    /// needs to know (it depends on what the store holds under the table's prefix).
    complete: Option<bool>,
    /// The current step's changes: its mark, the key, and what it replaced.
    undo: Vec<(u64, Vec<u8>, Replaced<V>)>,
    /// Keys a step taken back dropped while the table held every key with state
    /// (`complete`): RocksDB has them as they were, and the next `load` reads them back.
    read_back: HashSet<Vec<u8>, KeyHash>,
    /// Registered with the current step's context.
    in_step: bool,
    resident: usize,
    changed: usize,
}

impl<V: TableValue> Inner<V> {
    /// Keeps the entries `keep` says to (it may also update them); a table that dropped
    /// any no longer holds every key with state.
    fn evict_where(&mut self, mut keep: impl FnMut(&mut Entry<V>) -> bool) {
        let before = self.entries.len();
        let mut freed = 0;
        self.entries.retain(|_, entry| {
            let kept = keep(entry);
            if !kept {
                freed += entry.size;
            }
            kept
        });
        self.resident -= freed;
        if self.entries.len() < before {
            self.complete = Some(false);
            // Every key the table does not hold is read from RocksDB now.
            self.read_back.clear();
        }
    }

    fn replace(&mut self, key: Vec<u8>, entry: Option<Entry<V>>) -> Option<Entry<V>> {
        if let Some(e) = &entry {
            self.resident += e.size;
            self.changed += usize::from(e.changed) * e.size;
        }
        let old = match entry {
            Some(e) => self.entries.insert(key, e),
            None => self.entries.remove(&key),
        };
        if let Some(e) = &old {
            self.resident -= e.size;
            self.changed -= usize::from(e.changed) * e.size;
        }
        old
    }
}

/// A page of keys and values in key order, and where the next page starts (`None`: no
/// key after these).
pub type Page<V> = (Vec<(Vec<u8>, V)>, Option<Vec<u8>>);

/// One operator's state by key. Keys are the full store keys (the operator's prefix
/// included), so a checkpoint writes them as they are.
pub struct StateTable<V> {
    inner: Arc<Mutex<Inner<V>>>,
    family: &'static str,
    /// The store keys of this table start with it.
    prefix: Vec<u8>,
}

struct Handle<V>(Arc<Mutex<Inner<V>>>);

fn poisoned() -> Error {
    Error::internal("an operator's state lock is poisoned")
}

impl<V: TableValue> StateTable<V> {
    pub fn new(family: &'static str, prefix: Vec<u8>) -> Self {
        let inner = Inner {
            entries: HashMap::with_hasher(KeyHash::default()),
            complete: None,
            undo: Vec::new(),
            read_back: HashSet::with_hasher(KeyHash::default()),
            in_step: false,
            resident: 0,
            changed: 0,
        };
        Self { inner: Arc::new(Mutex::new(inner)), family, prefix }
    }

    /// A key's state as a reader outside a step sees it (a query, a member lookup): what
    /// the table holds, else what the last checkpoint wrote. Changes nothing here.
    pub fn read(
        &self,
        cx: &StepContext,
        key: &[u8],
        decode: impl Fn(&[u8]) -> Result<V>,
    ) -> Result<Option<V>> {
        {
            let inner = self.inner.lock().map_err(|_| poisoned())?;
            if let Some(entry) = inner.entries.get(key) {
                return Ok(entry.value.clone());
            }
        }
        cx.get(self.family, key)?.map(|bytes| decode(&bytes)).transpose()
    }

    /// A page of the keys with state that start with `prefix`, from `from` (included),
    /// in key order, as a reader outside a step sees them (see [`StateTable::read`]),
    /// and where the next page starts (`None`: no key after these). A page spans the
    /// store's next `limit` keys, overlaid with the table and the step: it may hold a few
    /// more or fewer (even none, with a next page to read).
    pub fn read_page(
        &self,
        cx: &StepContext,
        from: &[u8],
        prefix: &[u8],
        limit: usize,
        decode: impl Fn(&[u8]) -> Result<V>,
    ) -> Result<Page<V>> {
        let stored = cx.store().scan_range_limit(self.family, from, prefix, limit.max(1))?;
        // The page covers keys up to the last one read from the store; with a short read,
        // every key to the end of the prefix.
        let last = (stored.len() >= limit.max(1)).then(|| stored.last().map(|(k, _)| k.clone())).flatten();
        let page = self.overlay(cx, from, prefix, last.as_deref(), stored, decode)?;
        let next = last.map(|mut l| {
            l.push(0); // the smallest key after the page's last
            l
        });
        Ok((page, next))
    }

    /// Every key with state under `prefix`, in key order, as a reader outside a step sees
    /// them (see [`StateTable::read`]): one scan of the store, one pass over the table.
    pub fn read_prefix(
        &self,
        cx: &StepContext,
        prefix: &[u8],
        decode: impl Fn(&[u8]) -> Result<V>,
    ) -> Result<Vec<(Vec<u8>, V)>> {
        let stored = cx.store().scan_prefix(self.family, prefix)?;
        self.overlay(cx, prefix, prefix, None, stored, decode)
    }

    /// The keys from `from` to `last` (included; `None`: to the end of `prefix`) with
    /// their values: what the table holds wins (the entries changed since the
    /// checkpoint, and the clean ones, which equal the store's), then the step's own
    /// writes (a rebuild deletes the stored members first), then `stored`.
    fn overlay(
        &self,
        cx: &StepContext,
        from: &[u8],
        prefix: &[u8],
        last: Option<&[u8]>,
        stored: Vec<(Vec<u8>, Vec<u8>)>,
        decode: impl Fn(&[u8]) -> Result<V>,
    ) -> Result<Vec<(Vec<u8>, V)>> {
        let in_range = |key: &[u8]| key >= from && key.starts_with(prefix) && last.is_none_or(|l| key <= l);
        let mut page: std::collections::BTreeMap<Vec<u8>, Option<V>> = std::collections::BTreeMap::new();
        {
            let inner = self.inner.lock().map_err(|_| poisoned())?;
            for (key, entry) in inner.entries.iter().filter(|(k, _)| in_range(k)) {
                page.insert(key.clone(), entry.value.clone());
            }
        }
        for (key, bytes) in cx.written_from(self.family, from).take_while(|(k, _)| in_range(k)) {
            if let std::collections::btree_map::Entry::Vacant(slot) = page.entry(key.to_vec()) {
                slot.insert(bytes.map(&decode).transpose()?);
            }
        }
        for (key, bytes) in stored {
            if let std::collections::btree_map::Entry::Vacant(slot) = page.entry(key) {
                slot.insert(Some(decode(&bytes)?));
            }
        }
        Ok(page.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
    }

    /// The table for one operator's part of a step: registers it with the step's
    /// context (so the step can take its changes back) and holds it until dropped.
    pub fn open(&self, cx: &mut StepContext) -> Result<TableStep<'_, V>> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if !inner.in_step {
            inner.in_step = true;
            cx.touched(Arc::new(Handle(Arc::clone(&self.inner))));
        }
        Ok(TableStep { inner, family: self.family, prefix: &self.prefix })
    }
}

/// A table opened for a step (see [`StateTable::open`]).
pub struct TableStep<'t, V> {
    inner: MutexGuard<'t, Inner<V>>,
    family: &'static str,
    prefix: &'t [u8],
}

impl<V: TableValue> TableStep<'_, V> {
    /// Makes every key in `keys` resident: those the table may not hold are read from
    /// the store through `cx` (one MultiGet) and decoded with `decode`.
    pub fn load(
        &mut self,
        cx: &mut StepContext,
        keys: &[&[u8]],
        decode: impl Fn(&[u8]) -> Result<V>,
    ) -> Result<()> {
        // A table that holds every key with state reads only what a step taken back
        // dropped.
        let complete = self.holds_everything(cx)?;
        if complete && self.inner.read_back.is_empty() {
            return Ok(());
        }
        let inner = &*self.inner;
        let missing: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| !inner.entries.contains_key(**k) && (!complete || inner.read_back.contains(**k)))
            .map(|k| k.to_vec())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let stored = cx.get_many(self.family, &missing)?;
        for (key, bytes) in missing.into_iter().zip(stored) {
            let value = bytes.map(|b| decode(&b)).transpose()?;
            self.hold_read(cx, key, value);
        }
        Ok(())
    }

    /// Whether the table holds every key that has state (found out on first use).
    fn holds_everything(&mut self, cx: &StepContext) -> Result<bool> {
        if self.inner.complete.is_none() {
            let complete = self.store_holds_nothing(cx)?;
            self.inner.complete = Some(complete);
        }
        Ok(self.inner.complete == Some(true))
    }

    /// Holds what was read from the store for `key` (`None`: absent), unchanged.
    fn hold_read(&mut self, cx: &mut StepContext, key: Vec<u8>, value: Option<V>) {
        // Recorded like a change: what was read may include the step's own writes, so a
        // step taken back must not leave it behind.
        let mark = cx.next_mark();
        // Read as absent, the key may still be in RocksDB under a deletion the step or
        // the held writes made: that deletion reaches RocksDB by itself.
        let stored = value.is_some();
        let size = entry_bytes(&key, &value);
        let entry = Entry { value, changed: false, recorded: mark, used: true, stored, size };
        // A key read back after a step was taken back goes back to being read back if
        // this step is taken back too.
        let replaced = if self.inner.read_back.remove(&key) { Replaced::Stored } else { Replaced::Nothing };
        self.inner.replace(key.clone(), Some(entry));
        self.inner.undo.push((mark, key, replaced));
    }

    /// Makes every key under `prefix` (within the table's own) that has state resident,
    /// reading from the store those the table may not hold (one scan), and returns them
    /// with their values. For the rare step that must see all of an operator's state
    /// (NOT IN when its right side's NULL status changes).
    pub fn load_prefix(
        &mut self,
        cx: &mut StepContext,
        prefix: &[u8],
        decode: impl Fn(&[u8]) -> Result<V>,
    ) -> Result<Vec<(&[u8], &V)>> {
        if !self.holds_everything(cx)? {
            for (key, bytes) in cx.scan_prefix(self.family, prefix)? {
                if !self.inner.entries.contains_key(&key) {
                    let value = decode(&bytes)?;
                    self.hold_read(cx, key, Some(value));
                }
            }
        } else if !self.inner.read_back.is_empty() {
            let keys: Vec<Vec<u8>> =
                self.inner.read_back.iter().filter(|k| k.starts_with(prefix)).cloned().collect();
            let stored = cx.get_many(self.family, &keys)?;
            for (key, bytes) in keys.into_iter().zip(stored) {
                let value = bytes.map(|b| decode(&b)).transpose()?;
                self.hold_read(cx, key, value);
            }
        }
        Ok(self
            .inner
            .entries
            .iter_mut()
            .filter(|(key, entry)| key.starts_with(prefix) && entry.value.is_some())
            .filter_map(|(key, entry)| {
                entry.used = true;
                Some((key.as_slice(), entry.value.as_ref()?))
            })
            .collect())
    }

    /// Whether neither the store nor the step holds anything under the table's prefix.
    fn store_holds_nothing(&self, cx: &StepContext) -> Result<bool> {
        let written = cx
            .written_from(self.family, self.prefix)
            .take_while(|(k, _)| k.starts_with(self.prefix))
            .any(|(_, v)| v.is_some());
        if written {
            return Ok(false);
        }
        let end = codec::prefix_end(self.prefix);
        Ok(cx.store().scan_between(self.family, self.prefix, end.as_deref(), 1)?.is_empty())
    }

    /// The state of `key` (loaded first with [`TableStep::load`]).
    pub fn get(&mut self, key: &[u8]) -> Option<&V> {
        let entry = self.inner.entries.get_mut(key)?;
        entry.used = true;
        entry.value.as_ref()
    }

    /// Changes the state of `key` (loaded first with [`TableStep::load`]) in place:
    /// `change` gets the value (`None`: no state) and may change, replace or delete it.
    /// One map lookup, where a read with [`TableStep::get`] and a write with
    /// [`TableStep::set`] take two and a copy of the value to change. What the entry held
    /// is recorded for the undo log once per step (or savepoint), before `change` runs,
    /// so a step that fails inside `change` is taken back whole.
    pub fn update<R>(
        &mut self,
        cx: &mut StepContext,
        key: &[u8],
        change: impl FnOnce(&mut Option<V>) -> Result<R>,
    ) -> Result<R> {
        let Inner { entries, undo, resident, changed, .. } = &mut *self.inner;
        let entry = match entries.get_mut(key) {
            Some(entry) => {
                entry.record_undo(cx, key, undo);
                entry
            }
            None => {
                // Not held, so not in RocksDB (see `set`).
                let mark = cx.next_mark();
                undo.push((mark, key.to_vec(), Replaced::Nothing));
                let size = entry_bytes::<V>(key, &None);
                *resident += size;
                entries.entry(key.to_vec()).or_insert(Entry {
                    value: None,
                    changed: false,
                    recorded: mark,
                    used: true,
                    stored: false,
                    size,
                })
            }
        };
        let (old_size, was_changed) = (entry.size, entry.changed);
        let result = change(&mut entry.value);
        entry.size = entry_bytes(key, &entry.value);
        entry.changed = true;
        entry.used = true;
        *resident = *resident + entry.size - old_size;
        *changed = *changed + entry.size - usize::from(was_changed) * old_size;
        result
    }

    /// Takes the value of `key` (loaded first with [`TableStep::load`]) out of the table
    /// for the rest of the step, to be given back with [`TableStep::set`] if changed or
    /// [`TableStep::restore`] if not: for an operator that works on several keys' values
    /// at once (a join's arrangements). The undo log records what the entry held, copying
    /// nothing for an entry unchanged since the last checkpoint, so a step that fails
    /// before giving the value back leaves the table as it was.
    pub fn take(&mut self, cx: &mut StepContext, key: &[u8]) -> Option<V> {
        let Inner { entries, undo, .. } = &mut *self.inner;
        let entry = entries.get_mut(key)?;
        entry.value.as_ref()?;
        entry.record_undo(cx, key, undo);
        entry.used = true;
        entry.value.take()
    }

    /// Gives back, unchanged, a value taken with [`TableStep::take`]: the entry is as it
    /// was (a clean one stays clean, with nothing for the next checkpoint to write).
    pub fn restore(&mut self, key: &[u8], value: V) {
        if let Some(entry) = self.inner.entries.get_mut(key) {
            entry.value = Some(value);
        }
    }

    /// Sets (or with `None`, deletes) the state of `key`.
    pub fn set(&mut self, cx: &mut StepContext, key: Vec<u8>, value: Option<V>) {
        let size = entry_bytes(&key, &value);
        let floor = cx.undo_floor();
        let inner = &mut *self.inner;
        if let Some(entry) = inner.entries.get_mut(&key) {
            // Changed in place. The undo log needs what it replaced only once per step
            // (or savepoint): taking the step back restores the first record.
            let recorded = if entry.recorded >= floor { entry.recorded } else { cx.next_mark() };
            let new = Entry { value, changed: true, recorded, used: true, stored: entry.stored, size };
            let old = std::mem::replace(entry, new);
            inner.resident = inner.resident + size - old.size;
            inner.changed = inner.changed + size - usize::from(old.changed) * old.size;
            if old.recorded < floor {
                inner.undo.push((recorded, key, Replaced::Entry(old)));
            }
            return;
        }
        // A key the table does not hold is not in RocksDB: the table is complete, or
        // `load` made every key it may hold resident.
        let mark = cx.next_mark();
        let entry = Entry { value, changed: true, recorded: mark, used: true, stored: false, size };
        inner.resident += size;
        inner.changed += size;
        inner.entries.insert(key.clone(), entry);
        inner.undo.push((mark, key, Replaced::Nothing));
    }
}

impl<V: TableValue> StepUndo for Handle<V> {
    fn rollback_to(&self, mark: u64) {
        let Ok(mut inner) = self.0.lock() else { return };
        while inner.undo.last().is_some_and(|(m, _, _)| *m >= mark) {
            match inner.undo.pop() {
                Some((_, key, Replaced::Nothing)) => {
                    inner.replace(key, None);
                }
                Some((_, key, Replaced::Entry(old))) => {
                    inner.replace(key, Some(old));
                }
                Some((_, key, Replaced::Stored)) => {
                    inner.replace(key.clone(), None);
                    if inner.complete == Some(true) {
                        inner.read_back.insert(key);
                    }
                }
                None => {}
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

impl<V: TableValue> CheckpointedState for StateTable<V> {
    fn changed_entries(&self, out: &mut Vec<StateWrite>) -> Result<()> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        for (key, entry) in inner.entries.iter().filter(|(_, e)| e.changed && (e.stored || e.value.is_some()))
        {
            out.push((self.family, key.clone(), entry.value.as_ref().map(TableValue::encode).transpose()?));
        }
        Ok(())
    }

    fn checkpointed(&self) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let inner = &mut *inner;
        let mut freed = 0;
        inner.entries.retain(|_, entry| {
            entry.changed = false;
            entry.stored = entry.value.is_some();
            // A deleted key is absent from RocksDB now, as from a complete table.
            let keep = entry.value.is_some();
            if !keep {
                freed += entry.size;
            }
            keep
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

    fn age(&self, evict: bool) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.evict_where(|entry| {
                let keep = !evict || entry.changed || entry.used;
                entry.used = false;
                keep
            });
        }
    }

    fn evict_clean(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.evict_where(|entry| entry.changed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segstream_state::{Store, CF_STATE};
    use segstream_types::Timestamp;

    #[derive(Clone, Debug, PartialEq)]
    struct Count(i64);

    impl TableValue for Count {
        fn encode(&self) -> Result<Vec<u8>> {
            Ok(self.0.to_be_bytes().to_vec())
        }
        fn heap_bytes(&self) -> usize {
            0
        }
    }

    fn decode(bytes: &[u8]) -> Result<Count> {
        Ok(Count(i64::from_be_bytes(bytes.try_into().map_err(|_| Error::storage("bad count"))?)))
    }

    fn add(table: &StateTable<Count>, cx: &mut StepContext, key: &[u8], n: i64) {
        let mut t = table.open(cx).unwrap();
        t.load(cx, &[key], decode).unwrap();
        let now = t.get(key).map_or(0, |c| c.0) + n;
        t.set(cx, key.to_vec(), (now != 0).then_some(Count(now)));
    }

    fn value(table: &StateTable<Count>, store: &Store, key: &[u8]) -> Option<i64> {
        let mut cx = StepContext::new(store, Timestamp(0));
        let mut t = table.open(&mut cx).unwrap();
        t.load(&mut cx, &[key], decode).unwrap();
        let v = t.get(key).map(|c| c.0);
        drop(t);
        cx.end(true);
        v
    }

    /// Writes the table's changed entries to the store as a checkpoint and marks them
    /// written; returns them (sorted) for assertions.
    fn checkpoint(table: &StateTable<Count>, store: &Store) -> Vec<StateWrite> {
        let mut changed = Vec::new();
        table.changed_entries(&mut changed).unwrap();
        changed.sort();
        store.checkpoint(&[], &changed).unwrap();
        table.checkpointed();
        changed
    }

    /// A failed step and a savepoint taken back leave nothing; a committed step's
    /// changes reach RocksDB at a checkpoint, and are read back after eviction.
    #[test]
    fn steps_undo_checkpoints_write_and_evicted_entries_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.hold_writes_in_memory();
        let table = StateTable::<Count>::new(CF_STATE, vec![9]);

        let mut cx = StepContext::new(&store, Timestamp(0));
        add(&table, &mut cx, b"\x09a", 2);
        cx.savepoint();
        add(&table, &mut cx, b"\x09a", 5);
        add(&table, &mut cx, b"\x09b", 1);
        cx.rollback();
        add(&table, &mut cx, b"\x09c", 3);
        drop(cx); // never committed
        assert_eq!(value(&table, &store, b"\x09a"), None);
        assert_eq!(table.bytes().changed, 0);

        let mut cx = StepContext::new(&store, Timestamp(0));
        add(&table, &mut cx, b"\x09a", 2);
        cx.savepoint();
        add(&table, &mut cx, b"\x09a", 5);
        cx.rollback();
        add(&table, &mut cx, b"\x09b", 1);
        cx.end(true);
        assert_eq!(value(&table, &store, b"\x09a"), Some(2));

        assert_eq!(checkpoint(&table, &store).len(), 2);
        assert_eq!(table.bytes().changed, 0);
        table.evict_clean();
        assert_eq!(table.bytes().resident, 0);
        assert_eq!(value(&table, &store, b"\x09a"), Some(2), "read back from RocksDB");
        let mut cx = StepContext::new(&store, Timestamp(0));
        add(&table, &mut cx, b"\x09b", -1);
        cx.end(true);
        assert_eq!(checkpoint(&table, &store), vec![(CF_STATE, b"\x09b".to_vec(), None)]);
        table.evict_clean();
        assert_eq!(value(&table, &store, b"\x09b"), None);

        // A key created and deleted between two checkpoints never reaches RocksDB.
        let mut cx = StepContext::new(&store, Timestamp(0));
        add(&table, &mut cx, b"\x09f", 1);
        cx.end(true);
        let mut cx = StepContext::new(&store, Timestamp(0));
        add(&table, &mut cx, b"\x09f", -1);
        cx.end(true);
        let mut changed = Vec::new();
        table.changed_entries(&mut changed).unwrap();
        assert!(changed.is_empty(), "{changed:?}");
        table.checkpointed();

        // Aging evicts only what went unused since the last time.
        let mut cx = StepContext::new(&store, Timestamp(0));
        add(&table, &mut cx, b"\x09d", 1);
        add(&table, &mut cx, b"\x09e", 1);
        cx.end(true);
        checkpoint(&table, &store);
        table.age(true);
        assert_eq!(table.inner.lock().unwrap().entries.len(), 2, "d and e were used");
        assert_eq!(value(&table, &store, b"\x09d"), Some(1));
        table.age(true);
        let held: Vec<Vec<u8>> = table.inner.lock().unwrap().entries.keys().cloned().collect();
        assert_eq!(held, vec![b"\x09d".to_vec()], "only d was used since");
        assert_eq!(value(&table, &store, b"\x09e"), Some(1), "read back");

        // A new table over a prefix the store holds nothing under reads nothing.
        let fresh = StateTable::<Count>::new(CF_STATE, vec![7]);
        assert_eq!(value(&fresh, &store, b"\x07a"), None);
        assert_eq!(fresh.inner.lock().unwrap().complete, Some(true));
        assert_eq!(table.inner.lock().unwrap().complete, Some(false));
    }

    /// A change in place (`update`) is what a read and a write would do: created, changed
    /// and deleted keys, memory accounted, and a failure inside it, or a step taken back
    /// after it, leaves the entry as it was.
    #[test]
    fn changes_in_place_are_undone_with_their_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.hold_writes_in_memory();
        let table = StateTable::<Count>::new(CF_STATE, vec![9]);
        let bump = |cx: &mut StepContext, key: &[u8], n: i64| {
            let mut t = table.open(cx).unwrap();
            t.load(cx, &[key], decode).unwrap();
            t.update(cx, key, |slot| {
                let now = slot.as_ref().map_or(0, |c| c.0) + n;
                *slot = (now != 0).then_some(Count(now));
                Ok(now)
            })
            .unwrap()
        };

        let mut cx = StepContext::new(&store, Timestamp(0));
        assert_eq!(bump(&mut cx, b"\x09a", 2), 2);
        assert_eq!(bump(&mut cx, b"\x09a", 3), 5, "the step sees its own change");
        cx.end(true);
        let held = table.bytes();
        assert!(held.resident > 0 && held.changed == held.resident, "{held:?}");

        // Failing half-way through a change: the step is taken back whole.
        let mut cx = StepContext::new(&store, Timestamp(0));
        bump(&mut cx, b"\x09b", 1);
        let mut t = table.open(&mut cx).unwrap();
        let failed: Result<()> = t.update(&mut cx, b"\x09a", |slot| {
            slot.as_mut().expect("held").0 = 100;
            Err(Error::invalid_input("overflow"))
        });
        assert!(failed.is_err());
        drop(t);
        drop(cx); // a failed step is never committed
        assert_eq!(value(&table, &store, b"\x09a"), Some(5));
        assert_eq!(value(&table, &store, b"\x09b"), None);
        assert_eq!(table.bytes(), held, "memory accounted as before the step");

        // Deleted in place, then checkpointed and read back after eviction.
        let mut cx = StepContext::new(&store, Timestamp(0));
        bump(&mut cx, b"\x09c", 4);
        cx.end(true);
        assert_eq!(checkpoint(&table, &store).len(), 2);

        // A clean entry (as RocksDB has it) changed by a step taken back is dropped, not
        // copied, and read back by the next step, which may be taken back too; the table
        // still holds every other key without reading.
        for _ in 0..2 {
            let mut cx = StepContext::new(&store, Timestamp(0));
            assert_eq!(bump(&mut cx, b"\x09c", 10), 14);
            drop(cx);
        }
        assert_eq!(table.inner.lock().unwrap().complete, Some(true));
        let mut cx = StepContext::new(&store, Timestamp(0));
        let mut t = table.open(&mut cx).unwrap();
        let held: Vec<(Vec<u8>, i64)> = t
            .load_prefix(&mut cx, &[9], decode)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.0))
            .collect();
        assert!(held.contains(&(b"\x09c".to_vec(), 4)), "{held:?}");
        drop(t);
        drop(cx);
        assert_eq!(value(&table, &store, b"\x09c"), Some(4));
        assert!(table.inner.lock().unwrap().read_back.is_empty());
        let mut cx = StepContext::new(&store, Timestamp(0));
        assert_eq!(bump(&mut cx, b"\x09a", -5), 0);
        cx.end(true);
        assert_eq!(checkpoint(&table, &store), vec![(CF_STATE, b"\x09a".to_vec(), None)]);
        table.evict_clean();
        assert_eq!(value(&table, &store, b"\x09a"), None);
        let mut cx = StepContext::new(&store, Timestamp(0));
        assert_eq!(bump(&mut cx, b"\x09c", 1), 5, "read back from RocksDB, then changed");
        cx.end(true);
    }

    /// A value taken out for a step and restored unchanged leaves a clean entry clean
    /// (nothing for the next checkpoint); a step that fails while holding it, or after
    /// writing it back changed, leaves the entry as it was.
    #[test]
    fn taken_values_come_back_restored_or_undone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.hold_writes_in_memory();
        let table = StateTable::<Count>::new(CF_STATE, vec![9]);
        let mut cx = StepContext::new(&store, Timestamp(0));
        add(&table, &mut cx, b"\x09a", 3);
        cx.end(true);
        checkpoint(&table, &store);

        let mut cx = StepContext::new(&store, Timestamp(0));
        let mut t = table.open(&mut cx).unwrap();
        t.load(&mut cx, &[b"\x09a", b"\x09z"], decode).unwrap();
        assert!(t.take(&mut cx, b"\x09z").is_none(), "no state, nothing taken");
        let taken = t.take(&mut cx, b"\x09a").expect("held");
        assert_eq!(taken.0, 3);
        t.restore(b"\x09a", taken);
        drop(t);
        cx.end(true);
        assert_eq!(table.bytes().changed, 0, "restored as it was: still clean");
        assert_eq!(value(&table, &store, b"\x09a"), Some(3));

        // Held by a step that fails: back from RocksDB.
        let mut cx = StepContext::new(&store, Timestamp(0));
        let mut t = table.open(&mut cx).unwrap();
        t.load(&mut cx, &[b"\x09a"], decode).unwrap();
        let _held = t.take(&mut cx, b"\x09a");
        drop(t);
        drop(cx);
        assert_eq!(value(&table, &store, b"\x09a"), Some(3));

        // Written back changed, then the step taken back; then changed for good.
        for keep in [false, true] {
            let mut cx = StepContext::new(&store, Timestamp(0));
            let mut t = table.open(&mut cx).unwrap();
            t.load(&mut cx, &[b"\x09a"], decode).unwrap();
            let held = t.take(&mut cx, b"\x09a").expect("held");
            t.set(&mut cx, b"\x09a".to_vec(), Some(Count(held.0 + 1)));
            drop(t);
            if keep {
                cx.end(true);
            }
        }
        assert_eq!(value(&table, &store, b"\x09a"), Some(4));
        assert_eq!(checkpoint(&table, &store).len(), 1);
    }

    /// Readers outside a step see the table over the last checkpoint: entries changed
    /// since it (set or deleted), evicted ones from the store, the step's own deletes,
    /// page by page in key order.
    #[test]
    fn readers_see_the_table_over_the_checkpoint_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.hold_writes_in_memory();
        let table = StateTable::<Count>::new(CF_STATE, vec![9]);
        let key = |i: u8| vec![9, b'a' + i];
        let mut cx = StepContext::new(&store, Timestamp(0));
        for i in 0..6 {
            add(&table, &mut cx, &key(i), i64::from(i) + 1);
        }
        cx.end(true);
        checkpoint(&table, &store);
        table.evict_clean();
        // After the checkpoint: b deleted, c changed, g new, all in memory only.
        let mut cx = StepContext::new(&store, Timestamp(0));
        add(&table, &mut cx, &key(1), -2);
        add(&table, &mut cx, &key(2), 10);
        add(&table, &mut cx, &key(6), 7);
        cx.end(true);
        let all = |cx: &StepContext| -> Vec<(Vec<u8>, i64)> {
            table.read_prefix(cx, &[9], decode).unwrap().into_iter().map(|(k, v)| (k, v.0)).collect()
        };
        let cx = StepContext::new(&store, Timestamp(0));
        let expected = vec![(key(0), 1), (key(2), 13), (key(3), 4), (key(4), 5), (key(5), 6), (key(6), 7)];
        assert_eq!(all(&cx), expected);
        assert_eq!(table.read(&cx, &key(1), decode).unwrap(), None, "deleted since the checkpoint");
        assert_eq!(table.read(&cx, &key(3), decode).unwrap(), Some(Count(4)), "evicted, from the store");
        // Pages of two store keys: every key once, in order, whatever the pages hold.
        let mut paged = Vec::new();
        let mut from = vec![9];
        loop {
            let (page, next) = table.read_page(&cx, &from, &[9], 2, decode).unwrap();
            paged.extend(page.into_iter().map(|(k, v)| (k, v.0)));
            match next {
                Some(next) => from = next,
                None => break,
            }
        }
        assert_eq!(paged, expected);
        // The step's own deletion of a stored key hides it.
        let mut cx = StepContext::new(&store, Timestamp(0));
        cx.delete(CF_STATE, key(3));
        assert_eq!(all(&cx).len(), 5);
        assert!(!all(&cx).iter().any(|(k, _)| *k == key(3)));
        // Nothing read was kept: the table holds only what steps loaded and changed.
        assert_eq!(table.inner.lock().unwrap().entries.len(), 3);
    }
}
