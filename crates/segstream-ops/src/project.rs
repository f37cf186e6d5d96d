//! Project: computes output columns row by row. Stateless.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use segstream_types::{DeltaBatch, Error, Result};

use crate::expr::RowExpr;

pub struct Project {
    exprs: Vec<RowExpr>,
    output: SchemaRef,
}

impl Project {
    pub fn new(exprs: &[Expr], input: &DFSchema, output: SchemaRef) -> Result<Self> {
        let exprs = exprs.iter().map(|e| RowExpr::new(e, input)).collect::<Result<_>>()?;
        Ok(Self { exprs, output })
    }

    pub fn step(&self, input: DeltaBatch) -> Result<DeltaBatch> {
        if input.is_empty() {
            return Ok(DeltaBatch::empty(Arc::clone(&self.output)));
        }
        let columns = self.exprs.iter().map(|e| e.evaluate(&input.rows)).collect::<Result<Vec<_>>>()?;
        let rows = RecordBatch::try_new(Arc::clone(&self.output), columns)
            .map_err(|e| Error::internal(format!("projection: {e}")))?;
        DeltaBatch::new(rows, input.weights)
    }
}
