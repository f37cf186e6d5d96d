//! Join: inner, left outer, left semi and left anti joins on equality keys, with an
//! optional residual condition, maintained over deltas.
//!
//! Both inputs are kept in state indexed by the join key (arrangements), so a delta on
//! one side meets the other side's current contents:
//!
//! ```text
//!   Δ(L ⋈ R) = L_old ⋈ ΔR  +  ΔL ⋈ R_new        (R_new = R_old + ΔR)
//! ```
//!
//! For outer, semi and anti joins each left row also keeps its count of matching right
//! rows (residual condition included); a count crossing zero emits or retracts the left
//! row (semi, anti) or its NULL-padded copy (left outer). `NOT IN` is NULL-aware: one
//! NULL on the right makes the condition unknown for every left row, and a NULL on the
//! left matches nothing but is unknown whenever the right is not empty; the node keeps
//! the right side's total and NULL-key counts and re-derives its output when they
//! cross zero.
//!
//! The arrangements are held in memory as typed values (each side a [`StateTable`]):
//! a step reads a key's rows and their counts without a store read and writes back only
//! the keys it changed, which reach RocksDB at the next checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::Expr;
use segstream_sql::plan::JoinKind;
use segstream_state::codec::{
    decode_row, encode_row, encode_sortable, row_values, rows_to_batch, ByteReader, ByteWriter,
};
use segstream_state::{KeyHash, CF_STATE};
use segstream_types::{DeltaBatch, Error, Result};

use crate::context::StepContext;
use crate::expr::RowExpr;
use crate::state_table::{CheckpointedState, StateTable, TableValue};

pub struct Join {
    kind: JoinKind,
    left_keys: Vec<RowExpr>,
    right_keys: Vec<RowExpr>,
    /// The residual condition over a combined row (left columns, then right columns).
    residual: Option<RowExpr>,
    null_aware: bool,
    nulls_equal: bool,
    left_schema: SchemaRef,
    right_schema: SchemaRef,
    combined_schema: SchemaRef,
    output: SchemaRef,
    prefix: Vec<u8>,
    /// Left rows by join key (stored under `prefix`, `LEFT`, the key's length, the key).
    lefts: StateTable<Arrangement>,
    /// Right rows by join key (under `prefix`, `RIGHT`, ...).
    rights: StateTable<Arrangement>,
    /// Right rows in total and with a NULL key, one entry (under `prefix`, `TOTALS`).
    totals: StateTable<Totals>,
}

/// One stored row of an arrangement.
#[derive(Clone)]
struct Entry {
    /// The row as stored (`codec::encode_row`): what identifies it under its key. Its
    /// values are decoded only when a step needs them (a residual condition, an output
    /// row), which is rare next to the row's weight and match count changing, and keeps
    /// a held row at the size of its bytes.
    bytes: Vec<u8>,
    weight: i64,
    /// Left rows: the summed weight of matching right rows.
    matches: i64,
}

/// The rows one side holds under one join key, kept in state as one value: a key with
/// no rows is a point look-up in the side's table (a RocksDB read only when the table
/// may not hold it), not an iterator seek, and a step rewrites each key it changes once.
#[derive(Default, Clone)]
struct Arrangement {
    /// In order of their stored bytes.
    entries: Vec<Entry>,
    /// Changed by this step: written back at its end.
    changed: bool,
}

impl TableValue for Arrangement {
    fn encode(&self) -> Result<Vec<u8>> {
        Ok(Arrangement::encode(self))
    }

    fn heap_bytes(&self) -> usize {
        self.entries.iter().map(|e| std::mem::size_of::<Entry>() + e.bytes.capacity()).sum()
    }
}

/// The right side's row count and NULL-keyed row count.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    total: i64,
    nulls: i64,
}

impl TableValue for Totals {
    fn encode(&self) -> Result<Vec<u8>> {
        let mut w = ByteWriter::default();
        w.i64(self.total).i64(self.nulls);
        Ok(w.0)
    }

    fn heap_bytes(&self) -> usize {
        0
    }
}

impl Totals {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = ByteReader::new(bytes);
        Ok(Self { total: r.i64()?, nulls: r.i64()? })
    }
}

impl Arrangement {
    fn decode(value: Option<&[u8]>) -> Result<Self> {
        let mut entries = Vec::new();
        if let Some(value) = value {
            let mut r = ByteReader::new(value);
            while !r.is_done() {
                let bytes = r.bytes()?.to_vec();
                entries.push(Entry { bytes, weight: r.i64()?, matches: r.i64()? });
            }
        }
        Ok(Self { entries, changed: false })
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = ByteWriter::default();
        for e in &self.entries {
            w.bytes(&e.bytes).i64(e.weight).i64(e.matches);
        }
        w.0
    }

    /// A row's (weight, matches), zero when the key does not hold it.
    fn counts(&self, bytes: &[u8]) -> (i64, i64) {
        match self.entries.binary_search_by(|e| e.bytes.as_slice().cmp(bytes)) {
            Ok(i) => (self.entries[i].weight, self.entries[i].matches),
            Err(_) => (0, 0),
        }
    }

    /// Adds `weight` to a row; `matches` replaces a left row's match count (right rows
    /// keep none). A row whose weight reaches zero is gone.
    fn add(&mut self, bytes: Vec<u8>, weight: i64, matches: Option<i64>) {
        self.changed = true;
        match self.entries.binary_search_by(|e| e.bytes.as_slice().cmp(&bytes)) {
            Ok(i) => {
                let entry = &mut self.entries[i];
                entry.weight += weight;
                if let Some(m) = matches {
                    entry.matches = m;
                }
                if entry.weight == 0 {
                    self.entries.remove(i);
                }
            }
            Err(i) if weight != 0 => {
                self.entries.insert(i, Entry { bytes, weight, matches: matches.unwrap_or(0) })
            }
            Err(_) => {}
        }
    }
}

/// A left row's state when the step first touched it.
struct Touched {
    row: Vec<ScalarValue>,
    weight: i64,
    matches: i64,
    null_keyed: bool,
}

/// A step's working copies of one side's arrangements, by join key.
type Arrangements = HashMap<Vec<u8>, Arrangement, KeyHash>;

/// A left row: its join key (the arrangement's) and its stored bytes.
type LeftRowId = (Vec<u8>, Vec<u8>);

const LEFT: u8 = b'l';
const RIGHT: u8 = b'r';
/// Where data directories written before arrangements became one value per key keep a
/// side's rows, one key per row: rewritten by [`Join::upgrade_layout`].
const ROW_KEYED_LEFT: u8 = b'L';
const ROW_KEYED_RIGHT: u8 = b'R';
/// A row of the old layout: its bytes, weight and matches.
type RowKeyedEntry = (Vec<u8>, i64, i64);
/// Right rows in total, and right rows whose key has a NULL (NOT IN's bookkeeping).
const TOTALS: u8 = b'T';

impl Join {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: JoinKind,
        on: &[(Expr, Expr)],
        residual: Option<&Expr>,
        null_aware: bool,
        nulls_equal: bool,
        left: &DFSchema,
        right: &DFSchema,
        output: SchemaRef,
        prefix: Vec<u8>,
    ) -> Result<Self> {
        let combined = left.join(right).map_err(|e| Error::internal(e.to_string()))?;
        let table = |side: u8| {
            let mut p = prefix.clone();
            p.push(side);
            p
        };
        Ok(Self {
            lefts: StateTable::new(CF_STATE, table(LEFT)),
            rights: StateTable::new(CF_STATE, table(RIGHT)),
            totals: StateTable::new(CF_STATE, table(TOTALS)),
            kind,
            left_keys: on.iter().map(|(l, _)| RowExpr::new(l, left)).collect::<Result<_>>()?,
            right_keys: on.iter().map(|(_, r)| RowExpr::new(r, right)).collect::<Result<_>>()?,
            residual: residual.map(|r| RowExpr::new(r, &combined)).transpose()?,
            null_aware,
            nulls_equal,
            left_schema: Arc::new(left.as_arrow().clone()),
            right_schema: Arc::new(right.as_arrow().clone()),
            combined_schema: Arc::new(combined.as_arrow().clone()),
            output,
            prefix,
        })
    }

    pub fn step(&self, left: DeltaBatch, right: DeltaBatch, cx: &mut StepContext) -> Result<DeltaBatch> {
        let mut out = Output::default();
        let mut touched = BTreeMap::new();
        let before = self.totals(cx)?;
        let right_keys = if right.is_empty() { Vec::new() } else { self.keys(&self.right_keys, &right)? };
        let left_keys = if left.is_empty() { Vec::new() } else { self.keys(&self.left_keys, &left)? };
        // Every arrangement the step meets, each read once: right rows meet the left
        // rows of their key, left rows the right rows of theirs, and each side's rows
        // change their own. A left row with a NULL key is kept under `null_key`.
        let both = right_keys.iter().chain(&left_keys).flatten();
        let null_keyed_left = left_keys.iter().any(Option::is_none).then(null_key);
        let mut lefts = self.load(LEFT, both.clone().chain(null_keyed_left.as_ref()), cx)?;
        let mut rights = self.load(RIGHT, both, cx)?;
        let mut totals = before;
        if !right.is_empty() {
            self.apply_right(
                &right,
                &right_keys,
                &mut lefts,
                &mut rights,
                &mut totals,
                &mut out,
                &mut touched,
            )?;
            self.set_totals(totals, cx)?;
        }
        if !left.is_empty() {
            self.apply_left(&left, &left_keys, &mut lefts, &rights, &mut out, &mut touched)?;
        }
        let after = totals;
        if self.null_aware
            && self.kind == JoinKind::LeftAnti
            && unknown_status(before) != unknown_status(after)
        {
            // NOT IN's answer may have changed for every left row. The table still holds
            // every left row as it was before this step; the rows the step changed are
            // in `touched` already, and the others are unchanged.
            let mut table = self.lefts.open(cx)?;
            let mut prefix = self.prefix.clone();
            prefix.push(LEFT);
            let stored = table.load_prefix(cx, &prefix, |bytes| Arrangement::decode(Some(bytes)))?;
            // The arrangements this step took out of the table are not in it: they are in
            // `lefts`, and those of their rows not in `touched` are as before the step.
            let taken = lefts.iter().map(|(key, a)| (self.arrangement_key(LEFT, key), a));
            let stored: Vec<(Vec<u8>, &Arrangement)> =
                stored.into_iter().map(|(k, a)| (k.to_vec(), a)).chain(taken).collect();
            for (k, arrangement) in stored {
                let key = k.get(prefix.len() + 4..).ok_or_else(|| Error::storage("a join key is damaged"))?;
                for entry in &arrangement.entries {
                    if let std::collections::btree_map::Entry::Vacant(slot) =
                        touched.entry((key.to_vec(), entry.bytes.clone()))
                    {
                        slot.insert(Touched {
                            row: decode_row(&self.left_schema, &entry.bytes)?,
                            weight: entry.weight,
                            matches: entry.matches,
                            null_keyed: key == null_key().as_slice(),
                        });
                    }
                }
            }
        }
        // Each touched left row's own output (semi, anti, NULL-padded outer row) before
        // and after the step; the difference is the delta. A row found only by the scan
        // above is unchanged.
        for ((key, bytes), old) in touched {
            let (weight, matches) = match lefts.get(&key) {
                Some(arrangement) => arrangement.counts(&bytes),
                None => (old.weight, old.matches),
            };
            let was = self.left_output(old.weight, old.matches, before, old.null_keyed);
            let is = self.left_output(weight, matches, after, old.null_keyed);
            if was != is {
                let row = if self.kind == JoinKind::LeftOuter { self.pad(&old.row) } else { old.row };
                out.push(row, is - was);
            }
        }
        // Every arrangement taken goes back: changed ones written, the others restored as
        // they were. (A key that held no rows and still holds none has nothing to give.)
        for (side, arrangements) in [(LEFT, lefts), (RIGHT, rights)] {
            let mut table = if side == LEFT { self.lefts.open(cx)? } else { self.rights.open(cx)? };
            for (key, arrangement) in arrangements {
                let k = self.arrangement_key(side, &key);
                if arrangement.changed {
                    table.set(cx, k, (!arrangement.entries.is_empty()).then_some(arrangement));
                } else if !arrangement.entries.is_empty() {
                    table.restore(&k, arrangement);
                }
            }
        }
        let batch = rows_to_batch(&self.output, &out.rows)?;
        DeltaBatch::new(batch, out.weights)?.consolidate()
    }

    /// Rewrites a data directory's arrangements kept one row per key (before they became
    /// one value per key) in the current layout. Returns how many rows moved; a store
    /// with none costs two empty seeks.
    pub fn upgrade_layout(&self, cx: &mut StepContext) -> Result<usize> {
        let mut moved = 0;
        for (old_side, side) in [(ROW_KEYED_LEFT, LEFT), (ROW_KEYED_RIGHT, RIGHT)] {
            let schema = self.side_schema(side);
            let mut prefix = self.prefix.clone();
            prefix.push(old_side);
            // Old keys: prefix, the join key's length (u32, big-endian), the join key,
            // the row's bytes; values: weight and matches.
            let mut rows: BTreeMap<Vec<u8>, Vec<RowKeyedEntry>> = BTreeMap::new();
            for (stored_key, value) in cx.scan_prefix(CF_STATE, &prefix)? {
                let damaged = || Error::storage("a join entry's key is damaged");
                let key_at = prefix.len() + 4;
                let len = stored_key
                    .get(prefix.len()..key_at)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(damaged)? as usize;
                let key = stored_key.get(key_at..key_at + len).ok_or_else(damaged)?.to_vec();
                let bytes = stored_key.get(key_at + len..).ok_or_else(damaged)?.to_vec();
                let mut r = ByteReader::new(&value);
                rows.entry(key).or_default().push((bytes, r.i64()?, r.i64()?));
                cx.delete(CF_STATE, stored_key);
                moved += 1;
            }
            for (key, rows) in rows {
                let k = self.arrangement_key(side, &key);
                let mut arrangement = Arrangement::decode(cx.get(CF_STATE, &k)?.as_deref())?;
                for (bytes, weight, matches) in rows {
                    // Checked here, as before: a damaged row stops the upgrade.
                    decode_row(schema, &bytes)?;
                    arrangement.add(bytes, weight, Some(matches));
                }
                cx.put(CF_STATE, k, arrangement.encode());
            }
        }
        Ok(moved)
    }

    /// The weight a left row contributes by itself: a semi join's matched row, an anti
    /// join's unmatched row, a left outer join's NULL-padded unmatched row.
    fn left_output(&self, weight: i64, matches: i64, (total, nulls): (i64, i64), null_keyed: bool) -> i64 {
        let emits = match self.kind {
            JoinKind::Inner => false,
            JoinKind::LeftOuter => matches == 0,
            JoinKind::LeftSemi => matches > 0,
            JoinKind::LeftAnti => {
                matches == 0 && (!self.null_aware || (nulls == 0 && (!null_keyed || total == 0)))
            }
        };
        if emits {
            weight
        } else {
            0
        }
    }

    /// Right rows change: update the right arrangement; every stored left row with the
    /// same key meets them.
    #[allow(clippy::too_many_arguments)]
    fn apply_right(
        &self,
        right: &DeltaBatch,
        keys: &[Option<Vec<u8>>],
        lefts: &mut Arrangements,
        rights: &mut Arrangements,
        (total, nulls): &mut (i64, i64),
        out: &mut Output,
        touched: &mut BTreeMap<LeftRowId, Touched>,
    ) -> Result<()> {
        let rows = rows_of(right)?;
        // The left rows of each key meet the step's right rows; they change only their
        // match counts, kept in `lefts` as they change.
        let mut pairs = Vec::new();
        if self.residual.is_some() {
            for (key, row) in keys.iter().zip(&rows) {
                let entries = key.as_ref().and_then(|k| lefts.get(k)).map(|a| a.entries.as_slice());
                for left in entries.unwrap_or_default() {
                    pairs.push(concat(&decode_row(&self.left_schema, &left.bytes)?, row));
                }
            }
        }
        let mut holds = self.residual_holds(pairs)?.into_iter();
        for (i, row) in rows.iter().enumerate() {
            let w = right.weights[i];
            *total += w;
            let Some(key) = &keys[i] else {
                *nulls += w;
                continue;
            };
            // Loaded for every key of the step's rows.
            match rights.get_mut(key) {
                Some(arrangement) => arrangement.add(encode_row(row)?, w, None),
                None => rights.entry(key.clone()).or_default().add(encode_row(row)?, w, None),
            }
            let Some(arrangement) = lefts.get_mut(key) else { continue };
            for left in &mut arrangement.entries {
                if self.residual.is_some() && !holds.next().unwrap_or(false) {
                    continue;
                }
                let mut left_row = None;
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    touched.entry((key.clone(), left.bytes.clone()))
                {
                    let row = decode_row(&self.left_schema, &left.bytes)?;
                    slot.insert(Touched {
                        row: row.clone(),
                        weight: left.weight,
                        matches: left.matches,
                        null_keyed: false,
                    });
                    left_row = Some(row);
                }
                if matches!(self.kind, JoinKind::Inner | JoinKind::LeftOuter) {
                    let left_row = match left_row {
                        Some(row) => row,
                        None => decode_row(&self.left_schema, &left.bytes)?,
                    };
                    out.push(concat(&left_row, row), left.weight * w);
                }
                left.matches += w;
                arrangement.changed = true;
            }
        }
        Ok(())
    }

    /// Left rows change: each meets the right arrangement as it is after this step's
    /// right rows.
    fn apply_left(
        &self,
        left: &DeltaBatch,
        keys: &[Option<Vec<u8>>],
        lefts: &mut Arrangements,
        rights: &Arrangements,
        out: &mut Output,
        touched: &mut BTreeMap<LeftRowId, Touched>,
    ) -> Result<()> {
        let rows = rows_of(left)?;
        let mut pairs = Vec::new();
        if self.residual.is_some() {
            for (key, row) in keys.iter().zip(&rows) {
                let entries = key.as_ref().and_then(|k| rights.get(k)).map(|a| a.entries.as_slice());
                for right in entries.unwrap_or_default() {
                    pairs.push(concat(row, &decode_row(&self.right_schema, &right.bytes)?));
                }
            }
        }
        let mut holds = self.residual_holds(pairs)?.into_iter();
        for (i, row) in rows.into_iter().enumerate() {
            let w = left.weights[i];
            let mut matches = 0;
            let entries = keys[i].as_ref().and_then(|k| rights.get(k)).map(|a| a.entries.as_slice());
            for right in entries.unwrap_or_default() {
                if self.residual.is_none() || holds.next().unwrap_or(false) {
                    matches += right.weight;
                    if matches!(self.kind, JoinKind::Inner | JoinKind::LeftOuter) {
                        let right_row = decode_row(&self.right_schema, &right.bytes)?;
                        out.push(concat(&row, &right_row), w * right.weight);
                    }
                }
            }
            // A row whose key has a NULL is kept under bytes no right row has.
            let null_keyed = keys[i].is_none();
            let key = keys[i].clone().unwrap_or_else(null_key);
            let bytes = encode_row(&row)?;
            let arrangement = lefts.entry(key.clone()).or_default();
            if let std::collections::btree_map::Entry::Vacant(slot) = touched.entry((key, bytes.clone())) {
                let (weight, old_matches) = arrangement.counts(&bytes);
                slot.insert(Touched { row: row.clone(), weight, matches: old_matches, null_keyed });
            }
            arrangement.add(bytes, w, Some(matches));
        }
        Ok(())
    }

    fn pad(&self, left: &[ScalarValue]) -> Vec<ScalarValue> {
        let mut row = left.to_vec();
        for field in self.right_schema.fields() {
            row.push(ScalarValue::try_from(field.data_type()).unwrap_or(ScalarValue::Null));
        }
        row
    }

    /// Whether the residual condition holds for each (left row, right row) pair: the
    /// step's pairs in one batch, evaluated once.
    fn residual_holds(&self, rows: Vec<Vec<ScalarValue>>) -> Result<Vec<bool>> {
        let Some(residual) = &self.residual else {
            return Ok(Vec::new());
        };
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = rows_to_batch(&self.combined_schema, &rows)?;
        let value = residual.evaluate(&batch)?;
        let value = value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::internal("residual is not boolean"))?;
        Ok((0..rows.len()).map(|i| value.is_valid(i) && value.value(i)).collect())
    }

    /// Each row's key bytes, or `None` when a key column is NULL and NULLs match nothing.
    fn keys(&self, exprs: &[RowExpr], delta: &DeltaBatch) -> Result<Vec<Option<Vec<u8>>>> {
        let values: Vec<ArrayRef> = exprs.iter().map(|e| e.evaluate(&delta.rows)).collect::<Result<_>>()?;
        (0..delta.len())
            .map(|i| {
                let mut key = Vec::new();
                for v in &values {
                    let scalar =
                        ScalarValue::try_from_array(v, i).map_err(|e| Error::internal(e.to_string()))?;
                    if scalar.is_null() && !self.nulls_equal {
                        return Ok(None);
                    }
                    encode_sortable(&scalar, &mut key)?;
                }
                Ok(Some(key))
            })
            .collect()
    }

    /// The schema of one side's rows.
    fn side_schema(&self, side: u8) -> &SchemaRef {
        if side == LEFT {
            &self.left_schema
        } else {
            &self.right_schema
        }
    }

    /// Where one side's rows under one join key are stored.
    fn arrangement_key(&self, side: u8, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(side);
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        k
    }

    /// The arrangements of one side under each of `keys`, each once: taken out of the
    /// table for the step, and given back at its end (written if changed).
    fn load<'k>(
        &self,
        side: u8,
        keys: impl Iterator<Item = &'k Vec<u8>>,
        cx: &mut StepContext,
    ) -> Result<Arrangements> {
        let mut unique = Arrangements::with_capacity_and_hasher(keys.size_hint().0, KeyHash::default());
        for key in keys {
            if !unique.contains_key(key) {
                unique.insert(key.clone(), Arrangement::default());
            }
        }
        let stored_keys: Vec<Vec<u8>> = unique.keys().map(|k| self.arrangement_key(side, k)).collect();
        let key_refs: Vec<&[u8]> = stored_keys.iter().map(Vec::as_slice).collect();
        let mut table = if side == LEFT { self.lefts.open(cx)? } else { self.rights.open(cx)? };
        table.load(cx, &key_refs, |bytes| Arrangement::decode(Some(bytes)))?;
        // Taken out of the table, not copied: given back at the step's end, changed or
        // not (see `step`).
        for ((_, arrangement), stored_key) in unique.iter_mut().zip(&stored_keys) {
            if let Some(held) = table.take(cx, stored_key) {
                arrangement.entries = held.entries;
            }
        }
        Ok(unique)
    }

    fn totals(&self, cx: &mut StepContext) -> Result<(i64, i64)> {
        let key = self.totals_key();
        let mut table = self.totals.open(cx)?;
        table.load(cx, &[&key], Totals::decode)?;
        Ok(table.get(&key).map_or((0, 0), |t| (t.total, t.nulls)))
    }

    fn set_totals(&self, (total, nulls): (i64, i64), cx: &mut StepContext) -> Result<()> {
        let mut table = self.totals.open(cx)?;
        let totals = Totals { total, nulls };
        table.set(cx, self.totals_key(), (totals != Totals::default()).then_some(totals));
        Ok(())
    }

    fn totals_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(TOTALS);
        k
    }

    /// The join's state held in memory, for checkpoints and the state budget.
    pub fn state_tables(&self) -> [&dyn CheckpointedState; 3] {
        [&self.lefts, &self.rights, &self.totals]
    }
}

#[derive(Default)]
struct Output {
    rows: Vec<Vec<ScalarValue>>,
    weights: Vec<i64>,
}

impl Output {
    fn push(&mut self, row: Vec<ScalarValue>, weight: i64) {
        if weight != 0 {
            self.rows.push(row);
            self.weights.push(weight);
        }
    }
}

fn concat(left: &[ScalarValue], right: &[ScalarValue]) -> Vec<ScalarValue> {
    let mut row = Vec::with_capacity(left.len() + right.len());
    row.extend_from_slice(left);
    row.extend_from_slice(right);
    row
}

fn rows_of(delta: &DeltaBatch) -> Result<Vec<Vec<ScalarValue>>> {
    (0..delta.len()).map(|i| row_values(&delta.rows, i)).collect()
}

/// Whether NOT IN can be true at all, from the right side's (total, NULL-key) counts.
fn unknown_status((total, nulls): (i64, i64)) -> (bool, bool) {
    (nulls == 0, total == 0)
}

/// The bytes under which NULL-keyed left rows are kept: sortable encodings start with
/// 0x00 or 0x01, so no right row's key is ever this.
fn null_key() -> Vec<u8> {
    vec![0xFF, 0xFE]
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::Column;
    use datafusion::logical_expr::col;
    use segstream_state::Store;
    use segstream_types::Timestamp;

    fn side(name: &str) -> DFSchema {
        let schema =
            Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("v", DataType::Int64, true)]);
        DFSchema::try_from_qualified_schema(name, &schema).expect("schema")
    }

    fn delta(schema: &DFSchema, rows: &[(Option<&str>, i64, i64)]) -> DeltaBatch {
        let arrow: SchemaRef = Arc::new(schema.as_arrow().clone());
        let values: Vec<Vec<ScalarValue>> = rows
            .iter()
            .map(|(k, v, _)| vec![ScalarValue::Utf8(k.map(str::to_string)), ScalarValue::Int64(Some(*v))])
            .collect();
        DeltaBatch::new(rows_to_batch(&arrow, &values).expect("batch"), rows.iter().map(|r| r.2).collect())
            .expect("delta")
    }

    fn keys(d: &DeltaBatch) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = (0..d.len())
            .map(|i| {
                let k = ScalarValue::try_from_array(d.rows.column(0), i).expect("value");
                (k.to_string(), d.weights[i])
            })
            .collect();
        out.sort();
        out
    }

    fn join(kind: JoinKind, null_aware: bool) -> Join {
        let (l, r) = (side("l"), side("r"));
        let on = vec![(Expr::Column(Column::new(Some("l"), "k")), Expr::Column(Column::new(Some("r"), "k")))];
        let residual = col("r.v").gt_eq(col("l.v"));
        let output = Arc::new(l.as_arrow().clone());
        Join::new(kind, &on, Some(&residual), null_aware, false, &l, &r, output, vec![1, 2, 3]).expect("join")
    }

    #[test]
    fn anti_join_follows_matches_with_a_residual() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let j = join(JoinKind::LeftAnti, false);
        let (l, r) = (side("l"), side("r"));
        let mut cx = StepContext::new(&store, Timestamp(0));
        // Two left rows; a right row matches only the first (residual r.v >= l.v).
        let out =
            j.step(delta(&l, &[(Some("a"), 5, 1), (Some("b"), 5, 1)]), delta(&r, &[]), &mut cx).unwrap();
        assert_eq!(keys(&out), vec![("a".into(), 1), ("b".into(), 1)]);
        let out =
            j.step(delta(&l, &[]), delta(&r, &[(Some("a"), 4, 1), (Some("b"), 6, 1)]), &mut cx).unwrap();
        assert_eq!(keys(&out), vec![("b".into(), -1)], "a's right row fails the residual");
        // Retracting the match brings b back; a left retraction removes a.
        let out =
            j.step(delta(&l, &[(Some("a"), 5, -1)]), delta(&r, &[(Some("b"), 6, -1)]), &mut cx).unwrap();
        assert_eq!(keys(&out), vec![("a".into(), -1), ("b".into(), 1)]);
    }

    #[test]
    fn not_in_is_unknown_while_the_right_side_holds_a_null() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let (l, r) = (side("l"), side("r"));
        let j = Join::new(
            JoinKind::LeftAnti,
            &[(Expr::Column(Column::new(Some("l"), "k")), Expr::Column(Column::new(Some("r"), "k")))],
            None,
            true,
            false,
            &l,
            &r,
            Arc::new(l.as_arrow().clone()),
            vec![9],
        )
        .unwrap();
        let mut cx = StepContext::new(&store, Timestamp(0));
        let out = j.step(delta(&l, &[(Some("a"), 1, 1), (None, 1, 1)]), delta(&r, &[]), &mut cx).unwrap();
        assert_eq!(keys(&out).len(), 2, "NOT IN over an empty set is true, even for NULL");
        let out = j.step(delta(&l, &[]), delta(&r, &[(Some("z"), 1, 1)]), &mut cx).unwrap();
        assert_eq!(
            keys(&out),
            vec![("NULL".into(), -1)],
            "a NULL left value is unknown once the set is not empty"
        );
        // From here on the left rows are only in RocksDB (checkpointed, then evicted):
        // the steps that must see every left row read them back.
        cx.end(true);
        let mut state = Vec::new();
        for table in j.state_tables() {
            table.changed_entries(&mut state).unwrap();
        }
        store.checkpoint(&[], &state).unwrap();
        for table in j.state_tables() {
            table.checkpointed();
            table.evict_clean();
            assert_eq!(table.bytes().resident, 0);
        }
        let mut cx = StepContext::new(&store, Timestamp(0));
        let out = j.step(delta(&l, &[]), delta(&r, &[(None, 1, 1)]), &mut cx).unwrap();
        assert_eq!(keys(&out), vec![("a".into(), -1)], "a NULL in the set makes every row unknown");
        let out = j.step(delta(&l, &[]), delta(&r, &[(None, 1, -1), (Some("z"), 1, -1)]), &mut cx).unwrap();
        assert_eq!(keys(&out), vec![("NULL".into(), 1), ("a".into(), 1)]);
    }

    #[test]
    fn row_keyed_state_of_older_data_directories_is_rewritten_and_then_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let j = join(JoinKind::LeftAnti, false);
        let (l, r) = (side("l"), side("r"));
        let mut cx = StepContext::new(&store, Timestamp(0));
        // What an older version stored, one key per row: left rows (a, 5) and (b, 5),
        // right row (b, 6), which matches b's left row.
        let old_key = |side: u8, key: &str, v: i64| {
            let value = ScalarValue::Utf8(Some(key.to_string()));
            let mut join_key = Vec::new();
            encode_sortable(&value, &mut join_key).unwrap();
            let mut k = vec![1, 2, 3, side];
            k.extend_from_slice(&(join_key.len() as u32).to_be_bytes());
            k.extend_from_slice(&join_key);
            k.extend_from_slice(&encode_row(&[value, ScalarValue::Int64(Some(v))]).unwrap());
            k
        };
        let counts = |weight: i64, matches: i64| {
            let mut w = ByteWriter::default();
            w.i64(weight).i64(matches);
            w.0
        };
        cx.put(CF_STATE, old_key(b'L', "a", 5), counts(1, 0));
        cx.put(CF_STATE, old_key(b'L', "b", 5), counts(1, 1));
        cx.put(CF_STATE, old_key(b'R', "b", 6), counts(1, 0));
        assert_eq!(j.upgrade_layout(&mut cx).unwrap(), 3);
        assert_eq!(j.upgrade_layout(&mut cx).unwrap(), 0, "nothing is left in the old layout");
        assert!(cx.scan_prefix(CF_STATE, &[1, 2, 3, b'L']).unwrap().is_empty());
        assert!(cx.scan_prefix(CF_STATE, &[1, 2, 3, b'R']).unwrap().is_empty());
        // The join now reads them: b's match leaves, so b enters; a meets a right row
        // that passes the residual (7 >= 5), so a leaves.
        let out =
            j.step(delta(&l, &[]), delta(&r, &[(Some("b"), 6, -1), (Some("a"), 7, 1)]), &mut cx).unwrap();
        assert_eq!(keys(&out), vec![("a".into(), -1), ("b".into(), 1)]);
        // A left row joining later meets the moved right rows: c has none, a has one.
        let out =
            j.step(delta(&l, &[(Some("a"), 6, 1), (Some("c"), 1, 1)]), delta(&r, &[]), &mut cx).unwrap();
        assert_eq!(keys(&out), vec![("c".into(), 1)]);
    }
}
