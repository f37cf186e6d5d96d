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
use datafusion::common::{DFSchema, ScalarValue};
use segstream_sql::temporal::{TimeBound, TimeBoundKind};
use segstream_state::codec::{decode_row, encode_instant, encode_row, rows_to_batch, ByteReader, ByteWriter};
use segstream_state::CF_TIMERS;
use segstream_types::{DeltaBatch, Error, Result};

use crate::context::StepContext;
use crate::expr::RowExpr;

pub struct TemporalFilter {
    bounds: Vec<(TimeBoundKind, RowExpr, i64)>,
    schema: SchemaRef,
    /// `segment id | node id`: the part of a timer key after its instant.
    owner: Vec<u8>,
}

/// A due timer, as found by [`due_timers`].
pub struct DueTimer {
    pub key: Vec<u8>,
    pub segment: u64,
    pub node: u32,
    pub row: Vec<u8>,
    pub weight: i64,
}

impl TemporalFilter {
    pub fn new(bounds: &[TimeBound], input: &DFSchema, segment: u64, node: u32) -> Result<Self> {
        let bounds = bounds
            .iter()
            .map(|b| Ok((b.kind, RowExpr::new(&b.row_expr, input)?, b.shift_nanos)))
            .collect::<Result<_>>()?;
        let mut owner = segment.to_be_bytes().to_vec();
        owner.extend_from_slice(&node.to_be_bytes());
        Ok(Self { bounds, schema: Arc::new(input.as_arrow().clone()), owner })
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
        let now = cx.now.nanos();
        let mut keep = Vec::with_capacity(n);
        // Timer changes of the whole batch, summed per timer, then applied with one
        // MultiGet for the timers already set.
        let mut timers: Vec<(Vec<u8>, i64)> = Vec::new();
        let mut slot: HashMap<Vec<u8>, usize> = HashMap::new();
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
                let row = encode_row(&row_values(&input, i)?)?;
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
                cx.put(CF_TIMERS, key, value.0);
            }
        }
        input.filter(&keep.into())
    }

    /// The rows of fired timers as a delta of this operator's output.
    pub fn fired(&self, timers: &[&DueTimer]) -> Result<DeltaBatch> {
        let rows = timers.iter().map(|t| decode_row(&self.schema, &t.row)).collect::<Result<Vec<_>>>()?;
        let batch = rows_to_batch(&self.schema, &rows)?;
        DeltaBatch::new(batch, timers.iter().map(|t| t.weight).collect())
    }
}

fn row_values(input: &DeltaBatch, row: usize) -> Result<Vec<ScalarValue>> {
    input
        .rows
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, row))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(e.to_string()))
}

/// The earliest instant at or after `from` that a timer is set for, this step's writes
/// included.
pub fn next_timer_instant(cx: &StepContext, from: i64) -> Result<Option<i64>> {
    match cx.first_from(CF_TIMERS, &encode_instant(from))? {
        Some((key, _)) => Ok(Some(segstream_state::codec::decode_instant(&key)?)),
        None => Ok(None),
    }
}

/// Every timer set for exactly `instant`.
pub fn due_timers(cx: &StepContext, instant: i64) -> Result<Vec<DueTimer>> {
    let prefix = encode_instant(instant);
    cx.scan_prefix(CF_TIMERS, &prefix)?
        .into_iter()
        .map(|(key, value)| {
            let corrupt = || Error::storage("a timer key is damaged");
            let segment =
                u64::from_be_bytes(key.get(8..16).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
            let node =
                u32::from_be_bytes(key.get(16..20).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
            let row = key[20..].to_vec();
            let weight = ByteReader::new(&value).i64()?;
            Ok(DueTimer { key, segment, node, row, weight })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::common::Column;
    use datafusion::logical_expr::Expr;
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
        let filter = TemporalFilter::new(&bounds, &df, 7, 1).expect("filter");
        let arrow: SchemaRef = Arc::new(df.as_arrow().clone());
        let rows = |weights: Vec<i64>| {
            let batch =
                rows_to_batch(&arrow, &[vec![ScalarValue::TimestampNanosecond(Some(0), None)]]).unwrap();
            DeltaBatch::new(batch, weights).unwrap()
        };
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
