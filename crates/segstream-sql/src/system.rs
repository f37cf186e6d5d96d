//! The system tables under the `segstream` schema: what ad hoc queries can ask about
//! the segments themselves. Their names and schemas are part of the language.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const SEGMENTS: &str = "segments";
pub const CHANGES: &str = "changes";

/// `segstream.segments`: one row per segment.
pub fn segments_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("attributes", DataType::Utf8, false),
        Field::new("reads", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
    ]))
}

/// `segstream.changes`: the change log, one row per membership change of a key.
/// `kind` is `entered`, `exited` or `updated`; `attributes` is a JSON object of the
/// member's attributes after the change; `reason` says why a change happened when it
/// was not the data (e.g. `erased`).
pub fn changes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, true),
    ]))
}
