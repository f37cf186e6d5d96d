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
use segstream_state::CF_STATE;
use segstream_types::{DeltaBatch, Error, Result};

use crate::context::StepContext;
use crate::expr::RowExpr;

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
}

/// One stored row of an arrangement.
struct Entry {
    row: Vec<ScalarValue>,
    weight: i64,
    /// Left rows: the summed weight of matching right rows.
    matches: i64,
}

/// A left row's state when the step first touched it.
struct Touched {
    row: Vec<ScalarValue>,
    weight: i64,
    matches: i64,
    null_keyed: bool,
}

const LEFT: u8 = b'L';
const RIGHT: u8 = b'R';
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
        Ok(Self {
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
        if !right.is_empty() {
            self.apply_right(&right, cx, &mut out, &mut touched)?;
        }
        if !left.is_empty() {
            self.apply_left(&left, cx, &mut out, &mut touched)?;
        }
        let after = self.totals(cx)?;
        if self.null_aware
            && self.kind == JoinKind::LeftAnti
            && unknown_status(before) != unknown_status(after)
        {
            // NOT IN's answer may have changed for every left row.
            let mut prefix = self.prefix.clone();
            prefix.push(LEFT);
            for (k, v) in cx.scan_prefix(CF_STATE, &prefix)? {
                if let std::collections::btree_map::Entry::Vacant(slot) = touched.entry(k) {
                    let entry = self.decode_entry(slot.key(), &v)?;
                    let null_keyed = self.is_null_keyed(slot.key());
                    slot.insert(Touched {
                        row: entry.row,
                        weight: entry.weight,
                        matches: entry.matches,
                        null_keyed,
                    });
                }
            }
        }
        // Each touched left row's own output (semi, anti, NULL-padded outer row) before
        // and after the step; the difference is the delta.
        for (k, old) in touched {
            let (weight, matches) = self.stored_counts(&k, cx)?;
            let was = self.left_output(old.weight, old.matches, before, old.null_keyed);
            let is = self.left_output(weight, matches, after, old.null_keyed);
            if was != is {
                let row = if self.kind == JoinKind::LeftOuter { self.pad(&old.row) } else { old.row };
                out.push(row, is - was);
            }
        }
        let batch = rows_to_batch(&self.output, &out.rows)?;
        DeltaBatch::new(batch, out.weights)?.consolidate()
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
    fn apply_right(
        &self,
        right: &DeltaBatch,
        cx: &mut StepContext,
        out: &mut Output,
        touched: &mut BTreeMap<Vec<u8>, Touched>,
    ) -> Result<()> {
        let keys = self.keys(&self.right_keys, right)?;
        let rows = rows_of(right)?;
        let (mut total, mut nulls) = self.totals(cx)?;
        // The stored left rows of each key among the step's right rows, read once; the
        // right rows change only their match counts, kept here as they change.
        let mut lefts = self.arrangements(LEFT, &keys, cx)?;
        let holds = self.residual_holds(keys.iter().zip(&rows).flat_map(|(key, row)| {
            let entries = key.as_ref().map(|k| lefts[k].as_slice()).unwrap_or_default();
            entries.iter().map(move |left| (left.row.as_slice(), row.as_slice()))
        }))?;
        let mut holds = holds.into_iter();
        for (i, row) in rows.iter().enumerate() {
            let w = right.weights[i];
            total += w;
            let Some(key) = &keys[i] else {
                nulls += w;
                continue;
            };
            self.add_to_arrangement(RIGHT, key, row, w, None, cx)?;
            for left in lefts.get_mut(key).into_iter().flatten() {
                if !holds.next().unwrap_or(false) {
                    continue;
                }
                let k = self.entry_key(LEFT, key, &left.row)?;
                touched.entry(k.clone()).or_insert_with(|| Touched {
                    row: left.row.clone(),
                    weight: left.weight,
                    matches: left.matches,
                    null_keyed: false,
                });
                if matches!(self.kind, JoinKind::Inner | JoinKind::LeftOuter) {
                    out.push(concat(&left.row, row), left.weight * w);
                }
                left.matches += w;
                let mut value = ByteWriter::default();
                value.i64(left.weight).i64(left.matches);
                cx.put(CF_STATE, k, value.0);
            }
        }
        self.set_totals(total, nulls, cx);
        Ok(())
    }

    /// Left rows change: each meets the right arrangement as it is after this step's
    /// right rows.
    fn apply_left(
        &self,
        left: &DeltaBatch,
        cx: &mut StepContext,
        out: &mut Output,
        touched: &mut BTreeMap<Vec<u8>, Touched>,
    ) -> Result<()> {
        let keys = self.keys(&self.left_keys, left)?;
        let rows = rows_of(left)?;
        let rights = self.arrangements(RIGHT, &keys, cx)?;
        let holds = self.residual_holds(keys.iter().zip(&rows).flat_map(|(key, row)| {
            let entries = key.as_ref().map(|k| rights[k].as_slice()).unwrap_or_default();
            entries.iter().map(move |right| (row.as_slice(), right.row.as_slice()))
        }))?;
        let mut holds = holds.into_iter();
        for (i, row) in rows.into_iter().enumerate() {
            let w = left.weights[i];
            let mut matches = 0;
            for right in keys[i].as_ref().and_then(|k| rights.get(k)).into_iter().flatten() {
                if holds.next().unwrap_or(false) {
                    matches += right.weight;
                    if matches!(self.kind, JoinKind::Inner | JoinKind::LeftOuter) {
                        out.push(concat(&row, &right.row), w * right.weight);
                    }
                }
            }
            // A row whose key has a NULL is kept under bytes no right row has.
            let null_keyed = keys[i].is_none();
            let key = keys[i].clone().unwrap_or_else(null_key);
            let k = self.entry_key(LEFT, &key, &row)?;
            if let std::collections::btree_map::Entry::Vacant(slot) = touched.entry(k) {
                let (weight, old_matches) = self.stored_counts(slot.key(), cx)?;
                slot.insert(Touched { row: row.clone(), weight, matches: old_matches, null_keyed });
            }
            self.add_to_arrangement(LEFT, &key, &row, w, Some(matches), cx)?;
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
    fn residual_holds<'r>(
        &self,
        pairs: impl Iterator<Item = (&'r [ScalarValue], &'r [ScalarValue])>,
    ) -> Result<Vec<bool>> {
        let Some(residual) = &self.residual else {
            return Ok(pairs.map(|_| true).collect());
        };
        let rows: Vec<Vec<ScalarValue>> = pairs.map(|(left, right)| concat(left, right)).collect();
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

    fn entry_prefix(&self, side: u8, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(side);
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        k
    }

    fn entry_key(&self, side: u8, key: &[u8], row: &[ScalarValue]) -> Result<Vec<u8>> {
        let mut k = self.entry_prefix(side, key);
        k.extend_from_slice(&encode_row(row)?);
        Ok(k)
    }

    fn is_null_keyed(&self, stored_key: &[u8]) -> bool {
        let at = self.prefix.len() + 1;
        stored_key.get(at + 4..at + 6) == Some(&null_key()[..])
    }

    /// Adds `weight` to a stored row; `matches` replaces a left row's match count
    /// (right rows keep none).
    fn add_to_arrangement(
        &self,
        side: u8,
        key: &[u8],
        row: &[ScalarValue],
        weight: i64,
        matches: Option<i64>,
        cx: &mut StepContext,
    ) -> Result<()> {
        let k = self.entry_key(side, key, row)?;
        let (old_weight, old_matches) = self.stored_counts(&k, cx)?;
        let total = old_weight + weight;
        if total == 0 {
            cx.delete(CF_STATE, k);
        } else {
            let mut w = ByteWriter::default();
            w.i64(total).i64(matches.unwrap_or(old_matches));
            cx.put(CF_STATE, k, w.0);
        }
        Ok(())
    }

    fn stored_counts(&self, k: &[u8], cx: &StepContext) -> Result<(i64, i64)> {
        Ok(match cx.get(CF_STATE, k)? {
            Some(v) => {
                let mut r = ByteReader::new(&v);
                (r.i64()?, r.i64()?)
            }
            None => (0, 0),
        })
    }

    /// The rows stored on one side under one key.
    fn arrangement(&self, side: u8, key: &[u8], cx: &StepContext) -> Result<Vec<Entry>> {
        let prefix = self.entry_prefix(side, key);
        let schema = if side == LEFT { &self.left_schema } else { &self.right_schema };
        cx.scan_prefix(CF_STATE, &prefix)?
            .into_iter()
            .map(|(k, v)| decode_entry_at(&k, prefix.len(), &v, schema))
            .collect()
    }

    /// The rows stored on one side under each of `keys` (NULL keys skipped), each key
    /// read once.
    fn arrangements(
        &self,
        side: u8,
        keys: &[Option<Vec<u8>>],
        cx: &StepContext,
    ) -> Result<HashMap<Vec<u8>, Vec<Entry>>> {
        let mut out = HashMap::new();
        for key in keys.iter().flatten() {
            if !out.contains_key(key) {
                out.insert(key.clone(), self.arrangement(side, key, cx)?);
            }
        }
        Ok(out)
    }

    /// A left entry found by scanning the whole left side.
    fn decode_entry(&self, stored_key: &[u8], value: &[u8]) -> Result<Entry> {
        let at = self.prefix.len() + 1;
        let len = stored_key
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| Error::storage("a join entry's key is damaged"))? as usize;
        decode_entry_at(stored_key, at + 4 + len, value, &self.left_schema)
    }

    fn totals(&self, cx: &StepContext) -> Result<(i64, i64)> {
        let mut k = self.prefix.clone();
        k.push(TOTALS);
        self.stored_counts(&k, cx)
    }

    fn set_totals(&self, total: i64, nulls: i64, cx: &mut StepContext) {
        let mut k = self.prefix.clone();
        k.push(TOTALS);
        let mut w = ByteWriter::default();
        w.i64(total).i64(nulls);
        cx.put(CF_STATE, k, w.0);
    }
}

fn decode_entry_at(stored_key: &[u8], row_at: usize, value: &[u8], schema: &SchemaRef) -> Result<Entry> {
    let row = decode_row(
        schema,
        stored_key.get(row_at..).ok_or_else(|| Error::storage("a join entry is damaged"))?,
    )?;
    let mut r = ByteReader::new(value);
    Ok(Entry { row, weight: r.i64()?, matches: r.i64()? })
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
        let out = j.step(delta(&l, &[]), delta(&r, &[(None, 1, 1)]), &mut cx).unwrap();
        assert_eq!(keys(&out), vec![("a".into(), -1)], "a NULL in the set makes every row unknown");
        let out = j.step(delta(&l, &[]), delta(&r, &[(None, 1, -1), (Some("z"), 1, -1)]), &mut cx).unwrap();
        assert_eq!(keys(&out), vec![("NULL".into(), 1), ("a".into(), 1)]);
    }
}
