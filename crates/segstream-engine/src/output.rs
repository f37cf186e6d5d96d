use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;

/// What a statement returns.
#[derive(Debug, Clone)]
pub enum Output {
    /// Rows of a query, SHOW or DESCRIBE.
    Rows { schema: SchemaRef, batches: Vec<RecordBatch> },
    /// Text meant to be read as is (EXPLAIN).
    Text(String),
    /// A statement that changed something, with a short account: `CREATE SEGMENT`,
    /// `INSERT 3`, `ADVANCE TIME 2026-01-01 00:00:00`.
    Done(String),
}

impl Output {
    /// A table of text columns.
    pub(crate) fn text_table(columns: &[&str], rows: Vec<Vec<String>>) -> Self {
        let schema: SchemaRef = Arc::new(Schema::new(
            columns.iter().map(|c| Field::new(*c, DataType::Utf8, false)).collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = (0..columns.len())
            .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str()))) as ArrayRef)
            .collect();
        match RecordBatch::try_new(Arc::clone(&schema), arrays) {
            Ok(batch) => Self::Rows { schema, batches: vec![batch] },
            Err(e) => Self::Text(format!("internal error building a result: {e}")),
        }
    }

    pub fn row_count(&self) -> usize {
        match self {
            Self::Rows { batches, .. } => batches.iter().map(|b| b.num_rows()).sum(),
            _ => 0,
        }
    }

    /// The output as a person reads it: an aligned table with a row count, the text,
    /// or the account of what was done.
    pub fn render(&self) -> String {
        match self {
            Self::Rows { schema, batches } => {
                let n = self.row_count();
                let batches: Vec<RecordBatch> = if batches.is_empty() {
                    vec![RecordBatch::new_empty(Arc::clone(schema))]
                } else {
                    batches.clone()
                };
                let table =
                    pretty_format_batches(&batches).map(|t| t.to_string()).unwrap_or_else(|e| e.to_string());
                format!("{table}\n({n} row{})", if n == 1 { "" } else { "s" })
            }
            Self::Text(text) => text.trim_end().to_string(),
            Self::Done(tag) => tag.clone(),
        }
    }
}
