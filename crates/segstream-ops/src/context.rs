//! What an operator sees during one processing step: the step's instant and the state
//! store, read through the step's own writes.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use segstream_state::codec::encode_key;
use segstream_state::{Store, StoreBatch};
use segstream_types::{DeltaBatch, Error, Result, Timestamp};

use crate::state_table::StepUndo;

/// One family's writes of a step, in key order; `None` is a deletion.
type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// One processing step's view of the store. Writes are kept here, in key order per
/// family, and read back by later operators of the same step (and by later steps
/// sharing the batch); [`StepContext::write_to`] hands them to one atomic write batch.
pub struct StepContext<'s> {
    pub now: Timestamp,
    store: &'s Store,
    /// Per family: a handful of families, so a short list beats hashing the name.
    writes: Vec<(&'static str, Writes)>,
    /// Puts of fresh keys no one reads back within the step (a stream's new events, whose
    /// keys end with their arrival number): kept out of the ordered map, which is per-row
    /// work they do not need.
    appends: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    /// In a clock-advance pass that fires timers of several instants at once: the
    /// instant of each member key in it (encoded as `codec::encode_key`). Empty in an
    /// ordinary step, where every row is at `now`.
    key_instants: HashMap<Vec<u8>, i64>,
    /// While a savepoint is open: what each write replaced, in order, to undo them.
    undo: Option<Undo>,
    /// The operators' typed state tables this step changed (`state_table.rs`): they
    /// keep the step's changes until [`StepContext::end`], and take them back if the
    /// step is dropped without it.
    tables: Vec<Arc<dyn StepUndo>>,
    /// The first typed-table mark of this step (see [`next_mark`]).
    first_mark: u64,
    /// Keys the step first wrote after finding them absent from the store
    /// ([`StepContext::put_absent`]), in order.
    absent: Vec<(&'static str, Vec<u8>)>,
    /// Filters applied in this step, for the segments after the first that filter the
    /// same input with the same predicate (`Filter::step`).
    filtered: Vec<Filtered>,
}

/// One filter's input and output in a step (see [`StepContext::filtered`]).
struct Filtered {
    /// The predicate, as `Filter` names it (the compiled expression, columns by
    /// position).
    predicate: Arc<str>,
    /// Held so that its arrays, compared by address, are not freed and reused for
    /// another batch while the step lasts.
    input: DeltaBatch,
    output: DeltaBatch,
}

/// Marks of changes to typed state tables, increasing across all steps: a mark from an
/// earlier step is below every mark of the current one.
static MARKS: AtomicU64 = AtomicU64::new(1);

fn next_mark() -> u64 {
    MARKS.fetch_add(1, Ordering::Relaxed)
}

/// The writes since a savepoint, as what each one replaced in the family's map, and
/// how many appends there were before it.
struct Undo {
    replaced: Vec<Replaced>,
    appends: usize,
    /// How many keys were known absent before it.
    absent: usize,
    /// The first typed-table mark after the savepoint.
    mark: u64,
}

/// One write since a savepoint: the family's index in `writes`, the key, and the
/// step's entry it replaced (`None`: the step had not touched the key).
type Replaced = (usize, Vec<u8>, Option<Option<Vec<u8>>>);

impl<'s> StepContext<'s> {
    pub fn new(store: &'s Store, now: Timestamp) -> Self {
        Self {
            now,
            store,
            writes: Vec::new(),
            appends: Vec::new(),
            key_instants: HashMap::new(),
            undo: None,
            tables: Vec::new(),
            first_mark: next_mark(),
            absent: Vec::new(),
            filtered: Vec::new(),
        }
    }

    /// What `predicate` kept of `input` earlier in this step, if another segment's
    /// filter applied it to the very same batch (the same arrays, as a stream's batch
    /// reaches every segment that reads it, and the same weights).
    pub(crate) fn filtered(&self, predicate: &str, input: &DeltaBatch) -> Option<DeltaBatch> {
        let same = |seen: &DeltaBatch| {
            seen.rows.num_columns() == input.rows.num_columns()
                && seen.rows.columns().iter().zip(input.rows.columns()).all(|(a, b)| Arc::ptr_eq(a, b))
                && seen.weights == input.weights
        };
        self.filtered.iter().find(|f| &*f.predicate == predicate && same(&f.input)).map(|f| f.output.clone())
    }

    /// Remembers a filter's output for the rest of the step (see
    /// [`StepContext::filtered`]).
    pub(crate) fn remember_filtered(&mut self, predicate: Arc<str>, input: DeltaBatch, output: DeltaBatch) {
        self.filtered.push(Filtered { predicate, input, output });
    }

    /// A typed state table the step changes: told at the step's end to keep or take
    /// back its changes.
    pub(crate) fn touched(&mut self, table: Arc<dyn StepUndo>) {
        self.tables.push(table);
    }

    /// The mark of a change to a typed state table.
    pub(crate) fn next_mark(&mut self) -> u64 {
        next_mark()
    }

    /// The first mark of the step, or of its open savepoint: a change to a typed state
    /// table recorded at or after it is taken back with the step (or savepoint).
    pub(crate) fn undo_floor(&self) -> u64 {
        self.undo.as_ref().map_or(self.first_mark, |u| u.mark)
    }

    /// Ends the step for the typed state tables: `keep` once the step is committed;
    /// otherwise (and when the context is dropped without this) their changes are taken
    /// back, as the store never sees an uncommitted step's writes.
    pub fn end(mut self, keep: bool) {
        for table in std::mem::take(&mut self.tables) {
            table.end_step(keep, self.first_mark);
        }
    }

    /// Starts a pass whose member keys are each at their own instant (see
    /// `key_instants`); an empty map ends it.
    pub fn set_key_instants(&mut self, instants: HashMap<Vec<u8>, i64>) {
        self.key_instants = instants;
    }

    /// The instant rows of member key `key` are processed at.
    pub fn instant_of(&self, key: &ScalarValue) -> Result<Timestamp> {
        if self.key_instants.is_empty() {
            return Ok(self.now);
        }
        let mut encoded = Vec::new();
        encode_key(key, &mut encoded)?;
        self.key_instants
            .get(&encoded)
            .map(|&i| Timestamp(i))
            .ok_or_else(|| Error::internal(format!("member key {key} has no instant in this pass")))
    }

    /// Each row's instant, its member key being in column `key_column`: `None` in an
    /// ordinary step, where every row is at `now`.
    pub fn row_instants(&self, rows: &RecordBatch, key_column: Option<usize>) -> Result<Option<Vec<i64>>> {
        if self.key_instants.is_empty() {
            return Ok(None);
        }
        let column = key_column
            .and_then(|c| rows.columns().get(c))
            .ok_or_else(|| Error::internal("rows of a pass over several instants without a member key"))?;
        (0..rows.num_rows())
            .map(|i| {
                let key =
                    ScalarValue::try_from_array(column, i).map_err(|e| Error::internal(e.to_string()))?;
                Ok(self.instant_of(&key)?.nanos())
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Opens a savepoint: the writes from here on can be taken back with
    /// [`StepContext::rollback`], or kept with [`StepContext::release`].
    pub fn savepoint(&mut self) {
        self.undo = Some(Undo {
            replaced: Vec::new(),
            appends: self.appends.len(),
            absent: self.absent.len(),
            mark: next_mark(),
        });
    }

    /// Keeps the writes since the savepoint.
    pub fn release(&mut self) {
        self.undo = None;
    }

    /// Takes back every write since the savepoint, newest first.
    pub fn rollback(&mut self) {
        let Some(undo) = self.undo.take() else { return };
        for (family, key, replaced) in undo.replaced.into_iter().rev() {
            let writes = &mut self.writes[family].1;
            match replaced {
                Some(value) => writes.insert(key, value),
                None => writes.remove(&key),
            };
        }
        self.appends.truncate(undo.appends);
        self.absent.truncate(undo.absent);
        for table in &self.tables {
            table.rollback_to(undo.mark);
        }
    }

    pub fn store(&self) -> &'s Store {
        self.store
    }

    fn family(&self, family: &str) -> Option<&Writes> {
        self.writes.iter().find(|(f, _)| *f == family).map(|(_, w)| w)
    }

    fn family_index(&mut self, family: &'static str) -> usize {
        match self.writes.iter().position(|(f, _)| *f == family) {
            Some(i) => i,
            None => {
                self.writes.push((family, BTreeMap::new()));
                self.writes.len() - 1
            }
        }
    }

    fn write(&mut self, family: &'static str, key: Vec<u8>, value: Option<Vec<u8>>) {
        let i = self.family_index(family);
        match &mut self.undo {
            Some(undo) => {
                let replaced = self.writes[i].1.insert(key.clone(), value);
                undo.replaced.push((i, key, replaced));
            }
            None => {
                self.writes[i].1.insert(key, value);
            }
        }
    }

    /// This step's write of `key`: `Some(None)` when the step deleted it, `None` when
    /// the step has not touched it.
    pub fn written(&self, family: &str, key: &[u8]) -> Option<Option<&[u8]>> {
        self.family(family).and_then(|w| w.get(key)).map(|v| v.as_deref())
    }

    /// This step's writes of `family` from `from` on, in key order, deletions included.
    pub fn written_from<'a>(
        &'a self,
        family: &str,
        from: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        self.family(family)
            .into_iter()
            .flat_map(move |w| w.range::<[u8], _>((Bound::Included(from), Bound::Unbounded)))
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    pub fn get(&self, family: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.written(family, key) {
            Some(value) => Ok(value.map(<[u8]>::to_vec)),
            None => self.store.get(family, key),
        }
    }

    /// Values of many keys: this step's writes first, the rest with one MultiGet.
    pub fn get_many(&self, family: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let written = self.family(family);
        let mut out: Vec<Option<Option<Vec<u8>>>> =
            keys.iter().map(|k| written.and_then(|w| w.get(k.as_slice())).cloned()).collect();
        let missing: Vec<Vec<u8>> =
            keys.iter().zip(&out).filter(|(_, v)| v.is_none()).map(|(k, _)| k.clone()).collect();
        if !missing.is_empty() {
            let mut fetched = self.store.multi_get(family, &missing)?.into_iter();
            for slot in out.iter_mut().filter(|v| v.is_none()) {
                *slot = Some(fetched.next().flatten());
            }
        }
        Ok(out.into_iter().map(Option::flatten).collect())
    }

    pub fn put(&mut self, family: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.write(family, key, Some(value));
    }

    /// Puts a key the step just read as absent (from its own writes and the store): the
    /// store learns that RocksDB does not hold it, so deleting it again before the next
    /// checkpoint costs the checkpoint nothing (`dirty.rs`).
    pub fn put_absent(&mut self, family: &'static str, key: Vec<u8>, value: Vec<u8>) {
        if self.written(family, &key).is_none() {
            self.absent.push((family, key.clone()));
        }
        self.put(family, key, value);
    }

    /// Puts a key that is new and that nothing reads back during this step (see
    /// `appends`); it is written with the step's other writes.
    pub fn append(&mut self, family: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.appends.push((family, key, value));
    }

    pub fn delete(&mut self, family: &'static str, key: Vec<u8>) {
        self.write(family, key, None);
    }

    /// Keys and values with this prefix: the store's, overlaid with this step's writes.
    pub fn scan_prefix(&self, family: &'static str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let stored = self.store.scan_prefix(family, prefix)?;
        let Some(written) = self.family(family) else { return Ok(stored) };
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            stored.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (key, value) in written.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            merged.insert(key.clone(), value.clone());
        }
        Ok(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    pub fn has_writes(&self) -> bool {
        !self.appends.is_empty() || self.writes.iter().any(|(_, w)| !w.is_empty())
    }

    /// Moves every write into `batch`. The typed state tables keep the step's changes
    /// until [`StepContext::end`].
    pub fn write_to(&mut self, batch: &mut StoreBatch<'_>) -> Result<()> {
        let mut absent = std::mem::take(&mut self.absent);
        for (family, writes) in std::mem::take(&mut self.writes) {
            // The family's keys found absent, sorted like its writes, marked in one pass.
            let mut found: Vec<Vec<u8>> =
                absent.iter_mut().filter(|(f, _)| *f == family).map(|(_, k)| std::mem::take(k)).collect();
            if found.is_empty() {
                batch.write_family(family, writes.into_iter())?;
                continue;
            }
            found.sort_unstable();
            let mut found = found.into_iter().peekable();
            let marked = writes.into_iter().map(|(key, value)| {
                while found.next_if(|k| *k < key).is_some() {}
                let absent = found.next_if(|k| *k == key).is_some();
                (key, value, absent)
            });
            batch.write_family_marked(family, marked)?;
        }
        let mut appends = std::mem::take(&mut self.appends);
        // Appends come grouped by family (one relation per step); one call per family.
        appends.sort_by_key(|(family, _, _)| *family);
        let mut appends = appends.into_iter().peekable();
        while let Some(&(family, _, _)) = appends.peek() {
            let group =
                std::iter::from_fn(|| appends.next_if(|a| a.0 == family).map(|(_, k, v)| (k, Some(v))));
            batch.write_family(family, group)?;
        }
        Ok(())
    }
}

impl Drop for StepContext<'_> {
    /// A step dropped without [`StepContext::end`] failed: its typed state changes go.
    fn drop(&mut self) {
        for table in std::mem::take(&mut self.tables) {
            table.end_step(false, self.first_mark);
        }
    }
}
