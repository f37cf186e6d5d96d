//! Grouped aggregation with retraction.
//!
//! Per group the state holds the group's row count and one accumulator per aggregate,
//! each able to take a row back out: COUNT and SUM/AVG arithmetically, MIN/MAX and
//! COUNT(DISTINCT) as a multiset of values (value -> count), so any value can leave in
//! any order. A step groups its input rows by key, reads each touched group once, and
//! emits the group's old output row retracted and its new one inserted (equal rows
//! cancel when the step consolidates). A group whose count reaches zero is gone.
//!
//! The groups are held in memory as typed values (a [`StateTable`]): a step changes a
//! group's counters in place, and the group reaches the store, encoded, only at a
//! checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::Expr;
use segstream_sql::plan::{AggregateCall, AggregateFunction};
use segstream_state::codec::{
    decode_row, encode_row, encode_sortable, encode_sortable_at, rows_to_batch, ByteReader, ByteWriter,
};
use segstream_state::{KeyHash, CF_STATE};
use segstream_types::{DeltaBatch, Error, Result};

use crate::context::StepContext;
use crate::expr::RowExpr;
use crate::state_table::{CheckpointedState, StateTable, TableValue};

pub struct Aggregate {
    group_by: Vec<RowExpr>,
    calls: Vec<(AggregateFunction, bool, Vec<RowExpr>)>,
    output: SchemaRef,
    /// The group columns alone, to store a group's values with its state.
    group_schema: SchemaRef,
    prefix: Vec<u8>,
    groups: StateTable<GroupState>,
}

impl Aggregate {
    pub fn new(
        group_by: &[Expr],
        calls: &[AggregateCall],
        input: &DFSchema,
        output: SchemaRef,
        prefix: Vec<u8>,
    ) -> Result<Self> {
        let group_by: Vec<RowExpr> =
            group_by.iter().map(|e| RowExpr::new(e, input)).collect::<Result<_>>()?;
        let calls = calls
            .iter()
            .map(|c| {
                Ok((
                    c.function,
                    c.distinct,
                    c.args.iter().map(|a| RowExpr::new(a, input)).collect::<Result<_>>()?,
                ))
            })
            .collect::<Result<_>>()?;
        let group_schema = Arc::new(
            output
                .project(&(0..group_by.len()).collect::<Vec<_>>())
                .map_err(|e| Error::internal(e.to_string()))?,
        );
        let groups = StateTable::new(CF_STATE, prefix.clone());
        Ok(Self { group_by, calls, output, group_schema, prefix, groups })
    }

    pub fn step(&self, input: DeltaBatch, cx: &mut StepContext) -> Result<DeltaBatch> {
        if input.is_empty() {
            return Ok(DeltaBatch::empty(Arc::clone(&self.output)));
        }
        let rows = &input.rows;
        let groups: Vec<ArrayRef> = self.group_by.iter().map(|e| e.evaluate(rows)).collect::<Result<_>>()?;
        let args: Vec<Vec<ArrayRef>> = self
            .calls
            .iter()
            .map(|(_, _, args)| args.iter().map(|a| a.evaluate(rows)).collect::<Result<Vec<_>>>())
            .collect::<Result<_>>()?;

        // Rows by group, groups in order of first appearance: each group's key and first
        // row, and each row's group. One key buffer is reused for every row; a key is
        // copied only for a group not seen before in the step.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut first_rows: Vec<usize> = Vec::new();
        let mut group_of_row: Vec<u32> = Vec::with_capacity(input.len());
        let mut slot: HashMap<Vec<u8>, u32, KeyHash> =
            HashMap::with_capacity_and_hasher(input.len(), KeyHash::default());
        let mut key = Vec::with_capacity(self.prefix.len() + 16);
        for i in 0..input.len() {
            key.clear();
            key.extend_from_slice(&self.prefix);
            for g in &groups {
                if !encode_sortable_at(g.as_ref(), i, &mut key) {
                    encode_sortable(&scalar(g, i)?, &mut key)?;
                }
            }
            let s = match slot.get(key.as_slice()) {
                Some(&s) => s,
                None => {
                    let s = keys.len() as u32;
                    slot.insert(key.clone(), s);
                    keys.push(key.clone());
                    first_rows.push(i);
                    s
                }
            };
            group_of_row.push(s);
        }
        drop(slot);
        // The rows of group `g` are `rows_by_group[starts[g]..starts[g + 1]]`, in order
        // (a counting sort: no vector per group).
        let mut starts = vec![0usize; keys.len() + 1];
        for &g in &group_of_row {
            starts[g as usize + 1] += 1;
        }
        for g in 0..keys.len() {
            starts[g + 1] += starts[g];
        }
        let mut rows_by_group = vec![0usize; input.len()];
        let mut next = starts.clone();
        for (i, &g) in group_of_row.iter().enumerate() {
            rows_by_group[next[g as usize]] = i;
            next[g as usize] += 1;
        }

        let groups_of_row = groups;
        let mut groups = self.groups.open(cx)?;
        let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        groups.load(cx, &key_refs, |bytes| GroupState::decode(bytes, &self.group_schema, &self.calls))?;
        drop(key_refs);
        let mut out_rows: Vec<Vec<ScalarValue>> = Vec::with_capacity(2 * keys.len());
        let mut out_weights = Vec::with_capacity(2 * keys.len());
        for (g, (key, first)) in keys.into_iter().zip(first_rows).enumerate() {
            let members = &rows_by_group[starts[g]..starts[g + 1]];
            // The group changes in place: its counters move, nothing is copied but what
            // the undo log keeps of a group that existed before the step.
            let (old_row, new_row) = groups.update(cx, &key, |slot| {
                let state = match slot {
                    Some(state) => state,
                    None => {
                        let values =
                            groups_of_row.iter().map(|g| scalar(g, first)).collect::<Result<Vec<_>>>()?;
                        slot.insert(GroupState::new(values, &self.calls))
                    }
                };
                let old_row = if state.count > 0 { Some(self.output_row(state)?) } else { None };
                for &i in members {
                    let w = input.weights[i];
                    state.count += w;
                    for (c, acc) in state.accumulators.iter_mut().enumerate() {
                        acc.apply_at(&args[c], i, w)?;
                    }
                }
                let new_row = if state.count > 0 { Some(self.output_row(state)?) } else { None };
                if state.count <= 0 {
                    *slot = None;
                }
                Ok((old_row, new_row))
            })?;
            // Rows of different groups differ in their group values, so only a group's
            // own old and new rows can cancel: the output needs no consolidation.
            if old_row != new_row {
                for (row, weight) in [(old_row, -1), (new_row, 1)] {
                    if let Some(row) = row {
                        out_rows.push(row);
                        out_weights.push(weight);
                    }
                }
            }
        }
        let batch = rows_to_batch(&self.output, &out_rows)?;
        DeltaBatch::new(batch, out_weights)
    }

    /// The groups, for checkpoints and the state budget.
    pub fn state(&self) -> &dyn CheckpointedState {
        &self.groups
    }

    fn output_row(&self, state: &GroupState) -> Result<Vec<ScalarValue>> {
        let mut row = Vec::with_capacity(self.output.fields().len());
        row.extend_from_slice(&state.group);
        for (i, acc) in state.accumulators.iter().enumerate() {
            let field = self.output.field(self.group_by.len() + i);
            let value = acc.value(field.data_type())?;
            row.push(
                if value.data_type() == *field.data_type()
                    || value.is_null() && field.data_type() == &DataType::Null
                {
                    value
                } else {
                    value.cast_to(field.data_type()).map_err(|e| Error::internal(e.to_string()))?
                },
            );
        }
        Ok(row)
    }
}

fn scalar(array: &ArrayRef, row: usize) -> Result<ScalarValue> {
    ScalarValue::try_from_array(array, row).map_err(|e| Error::internal(e.to_string()))
}

/// One group: its values, its row count, one accumulator per aggregate call.
#[derive(Clone)]
struct GroupState {
    /// Shared: a group's values never change, so the copy the undo log keeps of a
    /// changed group shares them.
    group: Arc<[ScalarValue]>,
    count: i64,
    accumulators: Vec<Accumulator>,
}

impl TableValue for GroupState {
    fn encode(&self) -> Result<Vec<u8>> {
        GroupState::encode(self)
    }

    fn heap_bytes(&self) -> usize {
        let group: usize = self.group.iter().map(ScalarValue::size).sum();
        let accumulators: usize = self.accumulators.iter().map(Accumulator::heap_bytes).sum();
        group + accumulators
    }
}

impl GroupState {
    fn new(group: Vec<ScalarValue>, calls: &[(AggregateFunction, bool, Vec<RowExpr>)]) -> Self {
        let accumulators = calls.iter().map(|(f, distinct, _)| Accumulator::new(*f, *distinct)).collect();
        Self { group: group.into(), count: 0, accumulators }
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let mut w = ByteWriter::default();
        w.bytes(&encode_row(&self.group)?).i64(self.count);
        for acc in &self.accumulators {
            acc.encode(&mut w);
        }
        Ok(w.0)
    }

    fn decode(
        bytes: &[u8],
        group_schema: &SchemaRef,
        calls: &[(AggregateFunction, bool, Vec<RowExpr>)],
    ) -> Result<Self> {
        let mut r = ByteReader::new(bytes);
        let group = decode_row(group_schema, r.bytes()?)?;
        let count = r.i64()?;
        let accumulators =
            calls.iter().map(|(f, d, _)| Accumulator::decode(*f, *d, &mut r)).collect::<Result<_>>()?;
        if !r.is_done() {
            return Err(Error::storage("an aggregate's state is damaged"));
        }
        Ok(Self { group: group.into(), count, accumulators })
    }
}

/// The state of one aggregate over one group.
#[derive(Debug, Clone, PartialEq)]
enum Accumulator {
    /// Non-null rows counted (COUNT(*) counts a constant, never null).
    Count(i64),
    /// Integer and float sums kept apart: an integer SUM stays exact under retraction.
    Sum {
        int: i128,
        float: f64,
        is_float: bool,
        non_null: i64,
    },
    Avg {
        sum: f64,
        non_null: i64,
    },
    /// value (order-preserving bytes) -> (count, the value encoded as a row).
    Values {
        function: AggregateFunction,
        values: BTreeMap<Vec<u8>, (i64, Vec<u8>)>,
    },
    Bool {
        trues: i64,
        falses: i64,
        and: bool,
    },
}

impl Accumulator {
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + match self {
                // A tree node per value: its key, its row and the node's share.
                Self::Values { values, .. } => {
                    values.iter().map(|(k, (_, row))| k.len() + row.len() + 64).sum()
                }
                _ => 0,
            }
    }

    fn new(function: AggregateFunction, distinct: bool) -> Self {
        match function {
            AggregateFunction::Count if !distinct => Self::Count(0),
            AggregateFunction::Count | AggregateFunction::Min | AggregateFunction::Max => {
                Self::Values { function, values: BTreeMap::new() }
            }
            AggregateFunction::Sum => Self::Sum { int: 0, float: 0.0, is_float: false, non_null: 0 },
            AggregateFunction::Avg => Self::Avg { sum: 0.0, non_null: 0 },
            AggregateFunction::BoolAnd => Self::Bool { trues: 0, falses: 0, and: true },
            AggregateFunction::BoolOr => Self::Bool { trues: 0, falses: 0, and: false },
        }
    }

    /// [`Accumulator::apply`] for row `row` of the argument arrays, reading the common
    /// types straight from the arrays (no `ScalarValue` per row).
    fn apply_at(&mut self, args: &[ArrayRef], row: usize, weight: i64) -> Result<()> {
        let Some(array) = args.first() else {
            // COUNT(*): a constant, never null.
            return self.apply(&[], weight);
        };
        if array.is_null(row) {
            return Ok(());
        }
        match self {
            Self::Count(n) => *n += weight,
            Self::Sum { int, non_null, .. } if array.data_type() == &DataType::Int64 => {
                *non_null += weight;
                *int += array.as_primitive::<Int64Type>().value(row) as i128 * weight as i128;
            }
            Self::Sum { float, is_float, non_null, .. } if array.data_type() == &DataType::Float64 => {
                *non_null += weight;
                *is_float = true;
                *float += array.as_primitive::<Float64Type>().value(row) * weight as f64;
            }
            Self::Values { values, .. } => {
                let mut key = Vec::new();
                if !encode_sortable_at(array.as_ref(), row, &mut key) {
                    return self.apply(&[scalar(array, row)?], weight);
                }
                let count = match values.get_mut(&key) {
                    Some(entry) => {
                        entry.0 += weight;
                        entry.0
                    }
                    None => {
                        let value = scalar(array, row)?;
                        values.insert(key.clone(), (weight, encode_row(std::slice::from_ref(&value))?));
                        weight
                    }
                };
                if count == 0 {
                    values.remove(&key);
                }
            }
            _ => return self.apply(&[scalar(array, row)?], weight),
        }
        Ok(())
    }

    /// Adds `weight` copies of a row whose arguments are `args` (negative: removes).
    fn apply(&mut self, args: &[ScalarValue], weight: i64) -> Result<()> {
        let value = args.first().cloned().unwrap_or(ScalarValue::Int64(Some(1)));
        if value.is_null() {
            return Ok(());
        }
        match self {
            Self::Count(n) => *n += weight,
            Self::Sum { int, float, is_float, non_null } => {
                *non_null += weight;
                match &value {
                    ScalarValue::Float32(Some(v)) => {
                        *is_float = true;
                        *float += *v as f64 * weight as f64
                    }
                    ScalarValue::Float64(Some(v)) => {
                        *is_float = true;
                        *float += v * weight as f64
                    }
                    other => *int += integer(other)? as i128 * weight as i128,
                }
            }
            Self::Avg { sum, non_null } => {
                *non_null += weight;
                *sum += float(&value)? * weight as f64;
            }
            Self::Values { values, .. } => {
                let mut key = Vec::new();
                encode_sortable(&value, &mut key)?;
                let count = match values.get_mut(&key) {
                    Some(entry) => {
                        entry.0 += weight;
                        entry.0
                    }
                    None => {
                        values.insert(key.clone(), (weight, encode_row(std::slice::from_ref(&value))?));
                        weight
                    }
                };
                if count == 0 {
                    values.remove(&key);
                }
            }
            Self::Bool { trues, falses, .. } => match value {
                ScalarValue::Boolean(Some(true)) => *trues += weight,
                ScalarValue::Boolean(Some(false)) => *falses += weight,
                other => {
                    return Err(Error::invalid_input(format!("BOOL_AND/BOOL_OR of a non-boolean {other}")))
                }
            },
        }
        Ok(())
    }

    /// The aggregate's current value, of (or castable to) `output` type.
    fn value(&self, output: &DataType) -> Result<ScalarValue> {
        let null = || ScalarValue::try_from(output).map_err(|e| Error::internal(e.to_string()));
        Ok(match self {
            Self::Count(n) => ScalarValue::Int64(Some(*n)),
            Self::Sum { non_null: 0, .. } => null()?,
            Self::Sum { float, is_float: true, .. } => ScalarValue::Float64(Some(*float)),
            Self::Sum { int, .. } => ScalarValue::Int64(Some(
                i64::try_from(*int).map_err(|_| Error::invalid_input("SUM overflowed a 64-bit integer"))?,
            )),
            Self::Avg { non_null: 0, .. } => null()?,
            Self::Avg { sum, non_null } => ScalarValue::Float64(Some(sum / *non_null as f64)),
            Self::Values { function: AggregateFunction::Count, values } => {
                ScalarValue::Int64(Some(values.len() as i64))
            }
            Self::Values { function, values } => {
                let entry = if *function == AggregateFunction::Min {
                    values.values().next()
                } else {
                    values.values().next_back()
                };
                match entry {
                    None => null()?,
                    Some((_, row)) => {
                        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                            datafusion::arrow::datatypes::Field::new("v", output.clone(), true),
                        ]));
                        decode_row(&schema, row)?.remove(0)
                    }
                }
            }
            Self::Bool { trues: 0, falses: 0, .. } => null()?,
            Self::Bool { falses, and: true, .. } => ScalarValue::Boolean(Some(*falses == 0)),
            Self::Bool { trues, and: false, .. } => ScalarValue::Boolean(Some(*trues > 0)),
        })
    }

    fn encode(&self, w: &mut ByteWriter) {
        match self {
            Self::Count(n) => {
                w.i64(*n);
            }
            Self::Sum { int, float, is_float, non_null } => {
                w.i64(*int as i64)
                    .i64((*int >> 64) as i64)
                    .f64(*float)
                    .u8(u8::from(*is_float))
                    .i64(*non_null);
            }
            Self::Avg { sum, non_null } => {
                w.f64(*sum).i64(*non_null);
            }
            Self::Values { values, .. } => {
                w.i64(values.len() as i64);
                for (key, (count, row)) in values {
                    w.bytes(key).i64(*count).bytes(row);
                }
            }
            Self::Bool { trues, falses, .. } => {
                w.i64(*trues).i64(*falses);
            }
        }
    }

    fn decode(function: AggregateFunction, distinct: bool, r: &mut ByteReader) -> Result<Self> {
        let mut acc = Self::new(function, distinct);
        match &mut acc {
            Self::Count(n) => *n = r.i64()?,
            Self::Sum { int, float, is_float, non_null } => {
                let low = r.i64()? as u64 as i128;
                let high = (r.i64()? as i128) << 64;
                *int = high | low;
                *float = r.f64()?;
                *is_float = r.u8()? != 0;
                *non_null = r.i64()?;
            }
            Self::Avg { sum, non_null } => {
                *sum = r.f64()?;
                *non_null = r.i64()?;
            }
            Self::Values { values, .. } => {
                for _ in 0..r.i64()? {
                    let key = r.bytes()?.to_vec();
                    let count = r.i64()?;
                    values.insert(key, (count, r.bytes()?.to_vec()));
                }
            }
            Self::Bool { trues, falses, .. } => {
                *trues = r.i64()?;
                *falses = r.i64()?;
            }
        }
        Ok(acc)
    }
}

fn integer(value: &ScalarValue) -> Result<i64> {
    Ok(match value {
        ScalarValue::Int8(Some(v)) => *v as i64,
        ScalarValue::Int16(Some(v)) => *v as i64,
        ScalarValue::Int32(Some(v)) => *v as i64,
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::UInt8(Some(v)) => *v as i64,
        ScalarValue::UInt16(Some(v)) => *v as i64,
        ScalarValue::UInt32(Some(v)) => *v as i64,
        other => return Err(Error::invalid_input(format!("SUM of a non-number {other}"))),
    })
}

fn float(value: &ScalarValue) -> Result<f64> {
    Ok(match value {
        ScalarValue::Float32(Some(v)) => *v as f64,
        ScalarValue::Float64(Some(v)) => *v,
        other => integer(other)? as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_and_max_survive_retraction_in_any_order() {
        let mut min = Accumulator::new(AggregateFunction::Min, false);
        let mut max = Accumulator::new(AggregateFunction::Max, false);
        for v in [5, 3, 9, 3] {
            min.apply(&[ScalarValue::Int64(Some(v))], 1).unwrap();
            max.apply(&[ScalarValue::Int64(Some(v))], 1).unwrap();
        }
        for v in [3, 9] {
            min.apply(&[ScalarValue::Int64(Some(v))], -1).unwrap();
            max.apply(&[ScalarValue::Int64(Some(v))], -1).unwrap();
        }
        assert_eq!(min.value(&DataType::Int64).unwrap(), ScalarValue::Int64(Some(3)), "one 3 is left");
        assert_eq!(max.value(&DataType::Int64).unwrap(), ScalarValue::Int64(Some(5)));
        min.apply(&[ScalarValue::Int64(Some(3))], -1).unwrap();
        assert_eq!(min.value(&DataType::Int64).unwrap(), ScalarValue::Int64(Some(5)));
    }

    /// The per-row path over arrays keeps exactly the state the `ScalarValue` path does.
    #[test]
    fn applying_from_arrays_matches_applying_values() {
        use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampNanosecondArray};
        use std::sync::Arc;
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(3), None, Some(-7), Some(3)])),
            Arc::new(Float64Array::from(vec![Some(1.5), Some(2.25), None, Some(1.5)])),
            Arc::new(StringArray::from(vec![Some("b"), Some("a"), None, Some("b")])),
            Arc::new(TimestampNanosecondArray::from(vec![Some(5), Some(9), Some(9), None])),
        ];
        let functions = [
            (AggregateFunction::Count, false),
            (AggregateFunction::Count, true),
            (AggregateFunction::Sum, false),
            (AggregateFunction::Avg, false),
            (AggregateFunction::Min, false),
            (AggregateFunction::Max, false),
        ];
        for array in &arrays {
            for (f, distinct) in functions {
                if matches!(f, AggregateFunction::Sum | AggregateFunction::Avg)
                    && matches!(array.data_type(), DataType::Utf8 | DataType::Timestamp(..))
                {
                    continue;
                }
                let (mut by_value, mut by_row) =
                    (Accumulator::new(f, distinct), Accumulator::new(f, distinct));
                for (row, weight) in [(0, 1), (1, 2), (2, 1), (3, 1), (0, -1)] {
                    by_value.apply(&[ScalarValue::try_from_array(array, row).unwrap()], weight).unwrap();
                    by_row.apply_at(std::slice::from_ref(array), row, weight).unwrap();
                }
                assert_eq!(by_row, by_value, "{f:?} distinct {distinct} over {}", array.data_type());
            }
        }
        let (mut star, mut by_value) =
            (Accumulator::new(AggregateFunction::Count, false), Accumulator::Count(0));
        star.apply_at(&[], 0, 3).unwrap();
        by_value.apply(&[], 3).unwrap();
        assert_eq!(star, by_value);
    }

    #[test]
    fn sums_counts_and_bools_retract_and_round_trip() {
        let cases = [
            (AggregateFunction::Sum, false),
            (AggregateFunction::Count, true),
            (AggregateFunction::Avg, false),
            (AggregateFunction::BoolOr, false),
        ];
        for (f, distinct) in cases {
            let mut acc = Accumulator::new(f, distinct);
            let value = |i: i64| {
                if f == AggregateFunction::BoolOr {
                    ScalarValue::Boolean(Some(i % 2 == 0))
                } else {
                    ScalarValue::Int64(Some(i % 3))
                }
            };
            for i in 0..10 {
                acc.apply(&[value(i)], 1).unwrap();
            }
            acc.apply(&[ScalarValue::Int64(None)], 1).unwrap();
            let mut w = ByteWriter::default();
            acc.encode(&mut w);
            let decoded = Accumulator::decode(f, distinct, &mut ByteReader::new(&w.0)).unwrap();
            assert_eq!(decoded, acc);
            for i in 0..10 {
                acc.apply(&[value(i)], -1).unwrap();
            }
            assert_eq!(acc, Accumulator::new(f, distinct), "{f:?} back to empty");
        }
    }
}
