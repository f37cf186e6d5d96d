//! Filter: keeps the rows for which a predicate is true. Stateless: a retraction is
//! filtered exactly as the insertion it cancels was.
//!
//! Segments over the same stream often filter it the same way (`event_type =
//! 'purchase'` opens four of the seven workload segments, and sixty of the 105): within
//! a step, the first segment's filter evaluates the predicate over the batch and the
//! others with the same predicate over the same batch take its output from the step
//! (`StepContext::filtered`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::is_not_null;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use segstream_types::{DeltaBatch, Error, Result};

use crate::context::StepContext;
use crate::expr::RowExpr;

pub struct Filter {
    predicate: RowExpr,
    /// The compiled predicate written out in full (columns by position, literals with
    /// their types): filters with equal names over the same batch keep the same rows.
    name: Arc<str>,
}

impl Filter {
    pub fn new(predicate: &Expr, input: &DFSchema) -> Result<Self> {
        let predicate = RowExpr::new(predicate, input)?;
        let name = predicate.name().into();
        Ok(Self { predicate, name })
    }

    pub fn step(&self, input: DeltaBatch, cx: &mut StepContext) -> Result<DeltaBatch> {
        if input.is_empty() {
            return Ok(input);
        }
        if let Some(output) = cx.filtered(&self.name, &input) {
            return Ok(output);
        }
        let mask = self.predicate.evaluate(&input.rows)?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::internal("a filter predicate did not give booleans"))?;
        let output = input.filter(mask)?;
        cx.remember_filtered(Arc::clone(&self.name), input, output.clone());
        Ok(output)
    }
}

/// Drops rows whose member key (the first column) is NULL: they are no members.
pub fn key_not_null(input: DeltaBatch) -> Result<DeltaBatch> {
    if input.is_empty() {
        return Ok(input);
    }
    let mask = is_not_null(input.rows.column(0)).map_err(|e| Error::internal(e.to_string()))?;
    input.filter(&mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::logical_expr::{col, lit};
    use segstream_state::Store;
    use segstream_types::Timestamp;

    /// Filters with the same predicate over the same batch in one step share one
    /// evaluation; another predicate, another batch or another step evaluates its own.
    #[test]
    fn equal_filters_over_one_batch_evaluate_once_per_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("event_type", DataType::Utf8, false)]));
        let df = DFSchema::try_from(schema.as_ref().clone()).unwrap();
        let batch = |types: &[&str]| {
            let column: ArrayRef = Arc::new(StringArray::from(types.to_vec()));
            DeltaBatch::new(
                RecordBatch::try_new(Arc::clone(&schema), vec![column]).unwrap(),
                vec![1; types.len()],
            )
            .unwrap()
        };
        let purchases = Filter::new(&col("event_type").eq(lit("purchase")), &df).unwrap();
        let also_purchases = Filter::new(&col("event_type").eq(lit("purchase")), &df).unwrap();
        let logins = Filter::new(&col("event_type").eq(lit("login")), &df).unwrap();
        assert_eq!(purchases.name, also_purchases.name);
        assert_ne!(purchases.name, logins.name);
        assert!(purchases.name.contains("purchase"), "{}", purchases.name);

        let events = batch(&["purchase", "login", "purchase"]);
        let mut cx = StepContext::new(&store, Timestamp(0));
        let first = purchases.step(events.clone(), &mut cx).unwrap();
        assert_eq!(first.len(), 2);
        let shared = also_purchases.step(events.clone(), &mut cx).unwrap();
        assert!(Arc::ptr_eq(first.rows.column(0), shared.rows.column(0)), "the first output, shared");
        assert_eq!(logins.step(events.clone(), &mut cx).unwrap().len(), 1);
        // Equal values in other arrays are another batch; other weights another delta.
        let again = batch(&["purchase", "login", "purchase"]);
        let own = also_purchases.step(again, &mut cx).unwrap();
        assert!(!Arc::ptr_eq(first.rows.column(0), own.rows.column(0)));
        let retracted = also_purchases.step(events.clone().scaled(-1), &mut cx).unwrap();
        assert_eq!(retracted.weights, vec![-1, -1]);
        cx.end(true);
        let mut cx = StepContext::new(&store, Timestamp(0));
        let next_step = also_purchases.step(events, &mut cx).unwrap();
        assert!(!Arc::ptr_eq(first.rows.column(0), next_step.rows.column(0)));
    }
}
