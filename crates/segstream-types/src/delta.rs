//! Delta batches: Arrow rows, each with a signed weight.
//!
//! A weight of `+n` inserts `n` copies of the row, `-n` retracts them; an update is a
//! retraction of the old row and an insertion of the new one. Every incremental
//! operator takes delta batches in and gives delta batches out (dbsp's Z-sets, over
//! whole Arrow batches so that expressions are evaluated per batch, not per row).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct DeltaBatch {
    pub rows: RecordBatch,
    pub weights: Vec<i64>,
}

fn arrow(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("arrow: {e}"))
}

impl DeltaBatch {
    pub fn new(rows: RecordBatch, weights: Vec<i64>) -> Result<Self> {
        if rows.num_rows() != weights.len() {
            return Err(Error::internal(format!(
                "delta batch has {} rows but {} weights",
                rows.num_rows(),
                weights.len()
            )));
        }
        Ok(Self { rows, weights })
    }

    /// Every row inserted once.
    pub fn inserts(rows: RecordBatch) -> Self {
        let weights = vec![1; rows.num_rows()];
        Self { rows, weights }
    }

    pub fn empty(schema: SchemaRef) -> Self {
        Self { rows: RecordBatch::new_empty(schema), weights: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    pub fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }

    /// The same rows and weights under another schema of the same column types (new
    /// names or qualifiers).
    pub fn with_schema(self, schema: SchemaRef) -> Result<Self> {
        let rows = RecordBatch::try_new(schema, self.rows.columns().to_vec()).map_err(arrow)?;
        Ok(Self { rows, weights: self.weights })
    }

    /// Every weight multiplied by `factor` (`-1` turns inserts into retractions).
    pub fn scaled(mut self, factor: i64) -> Self {
        self.weights.iter_mut().for_each(|w| *w *= factor);
        self
    }

    /// The rows where `mask` is true (NULL counts as false).
    pub fn filter(&self, mask: &BooleanArray) -> Result<Self> {
        let rows = filter_record_batch(&self.rows, mask).map_err(arrow)?;
        let weights = self
            .weights
            .iter()
            .enumerate()
            .filter(|(i, _)| mask.is_valid(*i) && mask.value(*i))
            .map(|(_, w)| *w)
            .collect();
        Ok(Self { rows, weights })
    }

    /// All parts after one another, under `schema`.
    pub fn concat(schema: &SchemaRef, parts: &[DeltaBatch]) -> Result<Self> {
        let parts: Vec<&DeltaBatch> = parts.iter().filter(|p| !p.is_empty()).collect();
        if parts.is_empty() {
            return Ok(Self::empty(Arc::clone(schema)));
        }
        let batches = parts
            .iter()
            .map(|p| {
                // With the row count: a batch of no columns (a constant's input) has rows too.
                let options = RecordBatchOptions::new().with_row_count(Some(p.rows.num_rows()));
                RecordBatch::try_new_with_options(Arc::clone(schema), p.rows.columns().to_vec(), &options)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(arrow)?;
        let rows = concat_batches(schema, &batches).map_err(arrow)?;
        let weights = parts.iter().flat_map(|p| p.weights.iter().copied()).collect();
        Ok(Self { rows, weights })
    }

    /// Identical rows merged with their weights summed; rows whose weight sums to zero
    /// dropped. Keeps the first occurrence's position, so the result is deterministic.
    pub fn consolidate(self) -> Result<Self> {
        if self.is_empty() {
            return Ok(self);
        }
        // One row has nothing to merge with (steps fired by one timer are often this).
        if self.len() == 1 {
            return Ok(if self.weights[0] == 0 { Self::empty(self.rows.schema()) } else { self });
        }
        let fields =
            self.rows.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        let converter = RowConverter::new(fields).map_err(arrow)?;
        let encoded = converter.convert_columns(self.rows.columns()).map_err(arrow)?;
        let mut first: HashMap<&[u8], usize> = HashMap::with_capacity(self.len());
        let mut order: Vec<(u32, i64)> = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            let row: &[u8] = encoded.row(i).data();
            match first.get(row) {
                Some(&slot) => order[slot].1 += self.weights[i],
                None => {
                    first.insert(row, order.len());
                    order.push((i as u32, self.weights[i]));
                }
            }
        }
        order.retain(|(_, w)| *w != 0);
        if order.len() == self.len() {
            return Ok(self);
        }
        let indices = UInt32Array::from_iter_values(order.iter().map(|(i, _)| *i));
        let rows = take_record_batch(&self.rows, &indices).map_err(arrow)?;
        Ok(Self { rows, weights: order.into_iter().map(|(_, w)| w).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(keys: &[&str], values: &[i64], weights: Vec<i64>) -> DeltaBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(keys.to_vec())), Arc::new(Int64Array::from(values.to_vec()))],
        )
        .expect("batch");
        DeltaBatch::new(rows, weights).expect("delta")
    }

    #[test]
    fn consolidation_sums_equal_rows_and_drops_zeros() {
        let d =
            batch(&["a", "b", "a", "c", "b"], &[1, 2, 1, 3, 2], vec![1, 1, 2, 1, -1]).consolidate().unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d.weights, vec![3, 1]);
        let keys = d.rows.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(keys.value(0), "a");
        assert_eq!(keys.value(1), "c");
        assert!(batch(&["a"], &[1], vec![0]).consolidate().unwrap().is_empty());
        assert_eq!(batch(&["a"], &[1], vec![-2]).consolidate().unwrap().weights, vec![-2]);
    }

    #[test]
    fn filter_and_concat_keep_weights_with_rows() {
        let d = batch(&["a", "b"], &[1, 2], vec![5, -3]);
        let kept = d.filter(&BooleanArray::from(vec![Some(false), Some(true)])).unwrap();
        assert_eq!(kept.weights, vec![-3]);
        let all = DeltaBatch::concat(&d.schema(), &[d.clone(), kept.scaled(-1)]).unwrap();
        assert_eq!(all.weights, vec![5, -3, 3]);
        assert_eq!(all.consolidate().unwrap().weights, vec![5]);
    }
}
