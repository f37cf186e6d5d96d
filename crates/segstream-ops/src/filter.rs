//! Filter: keeps the rows for which a predicate is true. Stateless: a retraction is
//! filtered exactly as the insertion it cancels was.

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::is_not_null;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use segstream_types::{DeltaBatch, Error, Result};

use crate::expr::RowExpr;

pub struct Filter {
    predicate: RowExpr,
}

impl Filter {
    pub fn new(predicate: &Expr, input: &DFSchema) -> Result<Self> {
        Ok(Self { predicate: RowExpr::new(predicate, input)? })
    }

    pub fn step(&self, input: DeltaBatch) -> Result<DeltaBatch> {
        if input.is_empty() {
            return Ok(input);
        }
        let mask = self.predicate.evaluate(&input.rows)?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::internal("a filter predicate did not give booleans"))?;
        input.filter(mask)
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
