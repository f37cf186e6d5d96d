//! Temporal filter: rows valid only during a window of clock time.
//!
//! Each row gets a validity interval `[from, until)` from the comparisons with `NOW()`
//! (see `segstream_sql::temporal`). For a row of weight `w` at step instant `now`:
//!
//! ```text
//!   from <= now < until  ->  emit w now;            timer at until: -w
//!   now < from < until   ->  timer at from: +w;     timer at until: -w
//!   until <= now         ->  nothing (the row's window is over)
//! ```
//!
//! A retraction goes through the same rule with `-w`, so it cancels pending timers by
//! adding the opposite weight instead of searching for them. Timers are durable, keyed
//! `instant | segment | node | row`, so one range scan finds every due one in time order.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, TimestampNanosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::DFSchema;
use segstream_sql::temporal::{TimeBound, TimeBoundKind};
use segstream_state::codec::{
    decode_instant, decode_row, encode_batch_rows, encode_instant, encode_key, encode_row,
    encoded_rows_to_batch, row_values, ByteReader, ByteWriter,
};
use segstream_state::{KeyHash, CF_TIMERS};
use segstream_types::{DeltaBatch, Error, Result};

use crate::context::StepContext;
use crate::expr::RowExpr;

pub struct TemporalFilter {
    bounds: Vec<(TimeBoundKind, RowExpr, i64)>,
    schema: SchemaRef,
    /// `segment id | node id`: the part of a timer key after its instant.
    owner: Vec<u8>,
    /// The column holding the member key its rows count towards, when the segment
    /// keeps keys apart (`IncrementalPlan::member_key_columns`).
    key_column: Option<usize>,
}

/// A due timer, as found by [`TimerScan::due`].
pub struct DueTimer {
    pub key: Vec<u8>,
    pub segment: u64,
    pub node: u32,
    pub row: Vec<u8>,
    pub weight: i64,
}

impl TemporalFilter {
    pub fn new(
        bounds: &[TimeBound],
        input: &DFSchema,
        segment: u64,
        node: u32,
        key_column: Option<usize>,
    ) -> Result<Self> {
        let bounds = bounds
            .iter()
            .map(|b| Ok((b.kind, RowExpr::new(&b.row_expr, input)?, b.shift_nanos)))
            .collect::<Result<_>>()?;
        let mut owner = segment.to_be_bytes().to_vec();
        owner.extend_from_slice(&node.to_be_bytes());
        Ok(Self { bounds, schema: Arc::new(input.as_arrow().clone()), owner, key_column })
    }

    /// The member key (encoded as `codec::encode_key`) a timer's row counts towards,
    /// when the segment keeps keys apart.
    pub fn member_key_of(&self, row: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(c) = self.key_column else { return Ok(None) };
        let values = decode_row(&self.schema, row)?;
        let value = values.get(c).ok_or_else(|| Error::storage("a timer's row is damaged"))?;
        let mut key = Vec::new();
        encode_key(value, &mut key)?;
        Ok(Some(key))
    }

    pub fn step(&self, input: DeltaBatch, cx: &mut StepContext) -> Result<DeltaBatch> {
        if input.is_empty() {
            return Ok(input);
        }
        let n = input.len();
        let mut from = vec![Some(i64::MIN); n];
        let mut until = vec![Some(i64::MAX); n];
        for (kind, expr, shift) in &self.bounds {
            let values = expr.evaluate(&input.rows)?;
            let values = cast(&values, &DataType::Timestamp(TimeUnit::Nanosecond, None)).map_err(|e| {
                Error::invalid_input(format!("a time condition's value is not a timestamp: {e}"))
            })?;
            let values = values
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(|| Error::internal("timestamp cast gave another type"))?;
            for i in 0..n {
                // NULL compared with NOW() is never true: the row is never visible.
                let instant = if values.is_valid(i) { values.value(i).checked_add(*shift) } else { None };
                let slot = match kind {
                    TimeBoundKind::From => &mut from[i],
                    TimeBoundKind::Until => &mut until[i],
                };
                *slot = match (instant, *slot) {
                    (None, _) | (_, None) => None,
                    (Some(x), Some(s)) if *kind == TimeBoundKind::From => Some(s.max(x)),
                    (Some(x), Some(s)) => Some(s.min(x)),
                };
            }
        }
        // Each row's instant: the step's, or in a pass over several instants its member
        // key's.
        let now = cx.now.nanos();
        let instants = cx.row_instants(&input.rows, self.key_column)?;
        let mut keep = Vec::with_capacity(n);
        // Timer changes of the whole batch, summed per timer, then applied with one
        // MultiGet for the timers already set.
        let mut timers: Vec<(Vec<u8>, i64)> = Vec::new();
        let mut slot: HashMap<Vec<u8>, usize, KeyHash> = HashMap::with_hasher(KeyHash::default());
        // The rows as timers keep them, encoded column by column once the first row
        // needs a timer (row by row for types the columnar encoder does not take).
        let mut encoded: Option<Vec<Vec<u8>>> = None;
        let mut encoded_row = |i: usize| -> Result<Vec<u8>> {
            if encoded.is_none() {
                encoded = Some(match encode_batch_rows(&input.rows) {
                    Ok(rows) => rows,
                    Err(_) => {
                        (0..n).map(|r| encode_row(&row_values(&input.rows, r)?)).collect::<Result<_>>()?
                    }
                });
            }
            Ok(encoded.as_mut().map(|rows| std::mem::take(&mut rows[i])).unwrap_or_default())
        };
        let mut add = |instant: i64, row: &[u8], weight: i64| {
            let mut key = encode_instant(instant).to_vec();
            key.extend_from_slice(&self.owner);
            key.extend_from_slice(row);
            match slot.get(&key) {
                Some(&s) => timers[s].1 += weight,
                None => {
                    slot.insert(key.clone(), timers.len());
                    timers.push((key, weight));
                }
            }
        };
        for i in 0..n {
            let w = input.weights[i];
            let now = instants.as_ref().map_or(now, |at| at[i]);
            let (Some(from), Some(until)) = (from[i], until[i]) else {
                keep.push(false);
                continue;
            };
            if from >= until || until <= now {
                keep.push(false);
                continue;
            }
            let visible = from <= now;
            keep.push(visible);
            if !visible || until != i64::MAX {
                let row = encoded_row(i)?;
                if !visible {
                    add(from, &row, w);
                }
                if until != i64::MAX {
                    add(until, &row, -w);
                }
            }
        }
        let keys: Vec<Vec<u8>> = timers.iter().map(|(k, _)| k.clone()).collect();
        for ((key, weight), current) in timers.into_iter().zip(cx.get_many(CF_TIMERS, &keys)?) {
            let absent = current.is_none();
            let current = match current {
                Some(v) => ByteReader::new(&v).i64()?,
                None => 0,
            };
            let total = current + weight;
            if total == 0 {
                if current != 0 {
                    cx.delete(CF_TIMERS, key);
                }
            } else {
                let mut value = ByteWriter::default();
                value.i64(total);
                if absent {
                    cx.put_absent(CF_TIMERS, key, value.0);
                } else {
                    cx.put(CF_TIMERS, key, value.0);
                }
            }
        }
        input.filter(&keep.into())
    }

    /// The rows of fired timers as a delta of this operator's output.
    pub fn fired(&self, timers: &[&DueTimer]) -> Result<DeltaBatch> {
        let batch = encoded_rows_to_batch(&self.schema, timers.iter().map(|t| t.row.as_slice()))?;
        DeltaBatch::new(batch, timers.iter().map(|t| t.weight).collect())
    }
}

/// The timers due up to an instant, for a clock advance that fires them one instant
/// after another. The store is read once per page of timers, not once per instant: an
/// advance over many rows' expiries would otherwise open an iterator for each. What the
/// step itself writes while earlier instants fire (timers set, changed or cancelled) is
/// overlaid.
pub struct TimerScan {
    /// A page of stored timers in key order, the key it was read from, and how far the
    /// scan has consumed it.
    stored: Vec<(Vec<u8>, Vec<u8>)>,
    page_start: Vec<u8>,
    at: usize,
    /// The store may hold more timers in range after this page.
    more: bool,
    through: i64,
}

impl TimerScan {
    /// Timers are read in pages of this many.
    const PAGE: usize = 4096;

    /// A scan of the timers set for instants in `[from, through]`.
    pub fn new(cx: &StepContext, from: i64, through: i64) -> Result<Self> {
        let mut scan = Self { stored: Vec::new(), page_start: Vec::new(), at: 0, more: false, through };
        scan.read_page(cx, &encode_instant(from))?;
        Ok(scan)
    }

    fn read_page(&mut self, cx: &StepContext, start: &[u8]) -> Result<()> {
        let end = self.through.checked_add(1).map(encode_instant);
        self.stored = cx.store().scan_between(CF_TIMERS, start, end.as_ref().map(|e| &e[..]), Self::PAGE)?;
        self.more = self.stored.len() == Self::PAGE;
        self.page_start = start.to_vec();
        self.at = 0;
        Ok(())
    }

    /// Goes back to the timers of `instant`, already taken with [`TimerScan::due`] but
    /// left for a later pass: within the page when it holds them all, else by reading
    /// again from there.
    pub fn rewind(&mut self, cx: &StepContext, instant: i64) -> Result<()> {
        let start = encode_instant(instant);
        if self.page_start.as_slice() <= &start[..] {
            self.at = self.stored.partition_point(|(key, _)| key.as_slice() < &start[..]);
            Ok(())
        } else {
            self.read_page(cx, &start)
        }
    }

    /// The next stored timer not before `from`, reading the next page when this one is
    /// used up.
    fn peek_stored(&mut self, cx: &StepContext, from: &[u8]) -> Result<Option<&(Vec<u8>, Vec<u8>)>> {
        loop {
            if self.at == self.stored.len() {
                if !self.more {
                    return Ok(None);
                }
                let mut after = self.stored.last().map(|(k, _)| k.clone()).unwrap_or_default();
                after.push(0);
                self.read_page(cx, &after)?;
                continue;
            }
            if self.stored[self.at].0.as_slice() < from {
                self.at += 1;
                continue;
            }
            return Ok(self.stored.get(self.at));
        }
    }

    /// The earliest instant in `[from, through]` with a live timer, this step's writes
    /// included and its deletions skipped.
    pub fn next_instant(&mut self, cx: &StepContext, from: i64) -> Result<Option<i64>> {
        let from_key = encode_instant(from);
        let stored = loop {
            match self.peek_stored(cx, &from_key)? {
                Some((key, _)) if cx.written(CF_TIMERS, key) == Some(None) => self.at += 1,
                Some((key, _)) => break Some(decode_instant(key)?),
                None => break None,
            }
        };
        let written = cx
            .written_from(CF_TIMERS, &from_key)
            .find_map(|(key, value)| value.map(|_| key))
            .map(decode_instant)
            .transpose()?;
        Ok([stored, written].into_iter().flatten().filter(|i| *i <= self.through).min())
    }

    /// Every live timer set for exactly `instant` (the one [`TimerScan::next_instant`]
    /// gave), in key order.
    pub fn due(&mut self, cx: &StepContext, instant: i64) -> Result<Vec<DueTimer>> {
        let prefix = encode_instant(instant);
        let mut merged: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::collections::BTreeMap::new();
        while let Some((key, value)) = self.peek_stored(cx, &prefix)? {
            if !key.starts_with(&prefix) {
                break;
            }
            let (key, value) = (key.clone(), value.clone());
            self.at += 1;
            match cx.written(CF_TIMERS, &key) {
                Some(None) => {}
                Some(Some(written)) => {
                    merged.insert(key, written.to_vec());
                }
                None => {
                    merged.insert(key, value);
                }
            }
        }
        for (key, value) in cx.written_from(CF_TIMERS, &prefix) {
            if !key.starts_with(&prefix) {
                break;
            }
            if let Some(value) = value {
                merged.insert(key.to_vec(), value.to_vec());
            }
        }
        merged.into_iter().map(|(key, value)| due_timer(key, &value)).collect()
    }
}

fn due_timer(key: Vec<u8>, value: &[u8]) -> Result<DueTimer> {
    let corrupt = || Error::storage("a timer key is damaged");
    let segment = u64::from_be_bytes(key.get(8..16).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
    let node = u32::from_be_bytes(key.get(16..20).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
    let row = key[20..].to_vec();
    let weight = ByteReader::new(value).i64()?;
    Ok(DueTimer { key, segment, node, row, weight })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::common::Column;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Expr;
    use segstream_state::codec::rows_to_batch;
    use segstream_state::Store;
    use segstream_types::Timestamp;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn rows_enter_and_leave_at_exact_instants_and_retractions_cancel_timers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let schema =
            Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false)]);
        let df = DFSchema::try_from(schema).expect("schema");
        let ts = Expr::Column(Column::new_unqualified("ts"));
        // Visible from ts + 1h until ts + 3h.
        let bounds = vec![
            TimeBound {
                kind: TimeBoundKind::From,
                row_expr: ts.clone(),
                shift_nanos: HOUR,
                condition: String::new(),
            },
            TimeBound {
                kind: TimeBoundKind::Until,
                row_expr: ts,
                shift_nanos: 3 * HOUR,
                condition: String::new(),
            },
        ];
        let filter = TemporalFilter::new(&bounds, &df, 7, 1, Some(0)).expect("filter");
        let arrow: SchemaRef = Arc::new(df.as_arrow().clone());
        let rows = |weights: Vec<i64>| {
            let batch =
                rows_to_batch(&arrow, &[vec![ScalarValue::TimestampNanosecond(Some(0), None)]]).unwrap();
            DeltaBatch::new(batch, weights).unwrap()
        };
        // The next instant with a live timer from `from` on, and the timers due at `at`.
        let next_timer_instant =
            |cx: &StepContext, from: i64| TimerScan::new(cx, from, i64::MAX)?.next_instant(cx, from);
        let due_timers = |cx: &StepContext, at: i64| TimerScan::new(cx, at, at)?.due(cx, at);
        let mut cx = StepContext::new(&store, Timestamp(0));
        assert!(filter.step(rows(vec![1]), &mut cx).unwrap().is_empty(), "not visible yet");
        assert_eq!(next_timer_instant(&cx, 1).unwrap(), Some(HOUR));
        let due = due_timers(&cx, HOUR).unwrap();
        assert_eq!((due.len(), due[0].weight), (1, 1));
        assert_eq!(due_timers(&cx, 3 * HOUR).unwrap()[0].weight, -1);
        // The same row retracted cancels both timers.
        filter.step(rows(vec![-1]), &mut cx).unwrap();
        assert_eq!(next_timer_instant(&cx, 1).unwrap(), None);
        // Seen at 2h, the row is visible at once and leaves at 3h.
        let mut cx = StepContext::new(&store, Timestamp(2 * HOUR));
        assert_eq!(filter.step(rows(vec![1]), &mut cx).unwrap().weights, vec![1]);
        assert_eq!(next_timer_instant(&cx, 2 * HOUR + 1).unwrap(), Some(3 * HOUR));
        // Seen at 3h, it is already over.
        let mut cx = StepContext::new(&store, Timestamp(3 * HOUR));
        assert!(filter.step(rows(vec![1]), &mut cx).unwrap().is_empty());
        assert_eq!(next_timer_instant(&cx, 3 * HOUR + 1).unwrap(), None);
    }
}
