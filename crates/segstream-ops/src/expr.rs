//! Row expressions of the plan, evaluated by DataFusion over whole Arrow batches.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::DFSchema;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use segstream_types::{Error, Result};

/// A plan expression compiled against its input schema.
#[derive(Debug, Clone)]
pub struct RowExpr {
    physical: Arc<dyn PhysicalExpr>,
}

impl RowExpr {
    pub fn new(expr: &Expr, schema: &DFSchema) -> Result<Self> {
        let physical =
            create_physical_expr(expr, schema, &ExecutionProps::new(), &PhysicalPlanningContext::default())
                .map_err(|e| Error::internal(format!("cannot compile `{expr}`: {e}")))?;
        Ok(Self { physical })
    }

    /// The compiled expression written out in full (its debug form: columns with their
    /// positions, literals with their types), to tell equal expressions apart from
    /// merely similar ones.
    pub fn name(&self) -> String {
        format!("{:?}", self.physical)
    }

    /// One value per row of `batch`.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        self.physical
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| Error::invalid_input(format!("evaluating {}: {e}", self.physical)))
    }
}
