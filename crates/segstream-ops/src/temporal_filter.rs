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
//! adding the opposite weight instead of searching for them. Timers are held by the
//! engine's [`TimerQueue`] (in memory, in instant order, checkpointed), keyed
//! `instant | segment | node | row`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, TimestampNanosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::DFSchema;
use segstream_sql::temporal::{TimeBound, TimeBoundKind};
use segstream_state::codec::{
    decode_row_column, encode_batch_rows, encode_instant, encode_key, encode_row, encoded_rows_to_batch,
    row_values,
};
use segstream_types::{DeltaBatch, Error, Result};

use crate::context::StepContext;
use crate::expr::RowExpr;
pub use crate::timer_queue::DueTimer;
use crate::timer_queue::TimerQueue;

pub struct TemporalFilter {
    bounds: Vec<(TimeBoundKind, RowExpr, i64)>,
    schema: SchemaRef,
    /// `segment id | node id`: the part of a timer key after its instant.
    owner: Vec<u8>,
    /// The column holding the member key its rows count towards, when the segment
    /// keeps keys apart (`IncrementalPlan::member_key_columns`).
    key_column: Option<usize>,
    /// The engine's timers, shared by every temporal filter.
    timers: Arc<TimerQueue>,
}

impl TemporalFilter {
    pub fn new(
        bounds: &[TimeBound],
        input: &DFSchema,
        segment: u64,
        node: u32,
        key_column: Option<usize>,
        timers: Arc<TimerQueue>,
    ) -> Result<Self> {
        let bounds = bounds
            .iter()
            .map(|b| Ok((b.kind, RowExpr::new(&b.row_expr, input)?, b.shift_nanos)))
            .collect::<Result<_>>()?;
        let mut owner = segment.to_be_bytes().to_vec();
        owner.extend_from_slice(&node.to_be_bytes());
        Ok(Self { bounds, schema: Arc::new(input.as_arrow().clone()), owner, key_column, timers })
    }

    /// The member key (encoded as `codec::encode_key`) a timer's row counts towards,
    /// when the segment keeps keys apart.
    pub fn member_key_of(&self, row: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(c) = self.key_column else { return Ok(None) };
        let value = decode_row_column(&self.schema, row, c)?;
        let mut key = Vec::new();
        encode_key(&value, &mut key)?;
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
        // Timer changes of the whole batch, added to the queue in one call.
        let mut timers: Vec<(Vec<u8>, i64)> = Vec::new();
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
            let mut key = Vec::with_capacity(8 + self.owner.len() + row.len());
            key.extend_from_slice(&encode_instant(instant));
            key.extend_from_slice(&self.owner);
            key.extend_from_slice(row);
            timers.push((key, weight));
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
        self.timers.add(cx, timers)?;
        input.filter(&keep.into())
    }

    /// The rows of fired timers as a delta of this operator's output.
    pub fn fired(&self, timers: &[&DueTimer]) -> Result<DeltaBatch> {
        let batch = encoded_rows_to_batch(&self.schema, timers.iter().map(|t| t.row()))?;
        DeltaBatch::new(batch, timers.iter().map(|t| t.weight).collect())
    }
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
        let timers = Arc::new(TimerQueue::new());
        let filter = TemporalFilter::new(&bounds, &df, 7, 1, Some(0), Arc::clone(&timers)).expect("filter");
        let arrow: SchemaRef = Arc::new(df.as_arrow().clone());
        let rows = |weights: Vec<i64>| {
            let batch =
                rows_to_batch(&arrow, &[vec![ScalarValue::TimestampNanosecond(Some(0), None)]]).unwrap();
            DeltaBatch::new(batch, weights).unwrap()
        };
        // The next instant with a live timer from `from` on, and the timers due at `at`.
        let next_timer_instant = |cx: &mut StepContext, from: i64| timers.next_instant(cx, from, i64::MAX);
        let due_timers = |cx: &mut StepContext, at: i64| timers.due(cx, at);
        let mut cx = StepContext::new(&store, Timestamp(0));
        assert!(filter.step(rows(vec![1]), &mut cx).unwrap().is_empty(), "not visible yet");
        assert_eq!(next_timer_instant(&mut cx, 1).unwrap(), Some(HOUR));
        let due = due_timers(&mut cx, HOUR).unwrap();
        assert_eq!((due.len(), due[0].weight), (1, 1));
        assert_eq!(due_timers(&mut cx, 3 * HOUR).unwrap()[0].weight, -1);
        // The same row retracted cancels both timers.
        filter.step(rows(vec![-1]), &mut cx).unwrap();
        assert_eq!(next_timer_instant(&mut cx, 1).unwrap(), None);
        cx.end(true);
        // Seen at 2h, the row is visible at once and leaves at 3h.
        let mut cx = StepContext::new(&store, Timestamp(2 * HOUR));
        assert_eq!(filter.step(rows(vec![1]), &mut cx).unwrap().weights, vec![1]);
        assert_eq!(next_timer_instant(&mut cx, 2 * HOUR + 1).unwrap(), Some(3 * HOUR));
        drop(cx); // not committed: its timer is taken back
                  // Seen at 3h, it is already over.
        let mut cx = StepContext::new(&store, Timestamp(3 * HOUR));
        assert!(filter.step(rows(vec![1]), &mut cx).unwrap().is_empty());
        assert_eq!(next_timer_instant(&mut cx, 3 * HOUR + 1).unwrap(), None);
    }
}
