//! Column declarations (`user_id TEXT NOT NULL`) to Arrow fields.
//!
//! The set of types is small on purpose: each one has an exact Arrow type, an exact
//! JSON form for ingest and an exact memcomparable key encoding.

use std::collections::HashSet;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::sql::sqlparser::ast::{ColumnDef, ColumnOption, DataType as SqlType, TimezoneInfo};
use segstream_types::{Error, Result};

use crate::parser::{normalize, position_of};

pub const SUPPORTED_TYPES: &str = "TEXT, BOOLEAN, SMALLINT, INT, BIGINT, REAL, DOUBLE, DATE or TIMESTAMP";

/// The Arrow type for a declared SQL type.
pub fn arrow_type(sql_type: &SqlType) -> Option<DataType> {
    Some(match sql_type {
        SqlType::Text
        | SqlType::String(_)
        | SqlType::Varchar(_)
        | SqlType::CharVarying(_)
        | SqlType::CharacterVarying(_)
        | SqlType::Char(_)
        | SqlType::Character(_)
        | SqlType::Uuid => DataType::Utf8,
        SqlType::Boolean | SqlType::Bool => DataType::Boolean,
        SqlType::SmallInt(_) | SqlType::Int2(_) | SqlType::Int16 => DataType::Int16,
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) | SqlType::Int32 => DataType::Int32,
        SqlType::BigInt(_) | SqlType::Int8(_) | SqlType::Int64 => DataType::Int64,
        SqlType::Real | SqlType::Float4 | SqlType::Float32 => DataType::Float32,
        SqlType::Double(_)
        | SqlType::DoublePrecision
        | SqlType::Float8
        | SqlType::Float64
        | SqlType::Float(_) => DataType::Float64,
        SqlType::Date => DataType::Date32,
        SqlType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        }
        _ => return None,
    })
}

/// Fields for a column list; `not_null` names columns that are NOT NULL whatever was
/// declared (a stream's key and event time, a table's primary key).
pub fn fields(columns: &[ColumnDef], not_null: &[&str]) -> Result<Vec<Field>> {
    let mut seen = HashSet::new();
    let mut fields = Vec::with_capacity(columns.len());
    for column in columns {
        let name = normalize(&column.name);
        let position = position_of(column.name.span.start);
        if !seen.insert(name.clone()) {
            return Err(Error::plan(format!("column `{name}` is declared twice"), position));
        }
        let Some(data_type) = arrow_type(&column.data_type) else {
            return Err(Error::plan(
                format!("column `{name}` has type {}, which segstream does not store", column.data_type),
                position,
            )
            .with_help(format!("use {SUPPORTED_TYPES}")));
        };
        let mut nullable = !not_null.contains(&name.as_str());
        for option in &column.options {
            match &option.option {
                ColumnOption::NotNull | ColumnOption::PrimaryKey(_) => nullable = false,
                ColumnOption::Null => {}
                other => {
                    return Err(Error::plan(
                        format!("column option `{other}` on `{name}` is not supported"),
                        position,
                    )
                    .with_help("columns take NOT NULL, NULL and (in a table) PRIMARY KEY"))
                }
            }
        }
        fields.push(Field::new(name, data_type, nullable));
    }
    Ok(fields)
}

/// The SQL name of a stored Arrow type (for DESCRIBE).
pub fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "TEXT".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        other => other.to_string(),
    }
}

/// Types a member key, stream key or primary key may have: exact, hashable values.
pub fn is_key_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::Int16 | DataType::Int32 | DataType::Int64)
}

/// Types the engine can keep in its state (rows in timers, join indexes, aggregates,
/// members): those of [`arrow_type`], and NULL.
pub fn is_storable(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Null
            | DataType::Utf8
            | DataType::Boolean
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Date32
            | DataType::Timestamp(TimeUnit::Nanosecond, _)
    )
}
