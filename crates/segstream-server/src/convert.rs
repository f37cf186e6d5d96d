//! Translations between the engine's types and the API's messages: results, values,
//! changes, and errors as gRPC status codes.

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use segstream_engine::{ChangeKind, ChangeRecord, Output};
use segstream_proto::v1 as pb;
use segstream_types::Error;
use tonic::Status;

/// An engine error as a gRPC status: the statement's author's mistakes are
/// INVALID_ARGUMENT, unknown names NOT_FOUND, storage UNAVAILABLE (retry later; nothing
/// partial was applied), bugs INTERNAL. The message is the engine's, position included.
pub fn status(error: Error) -> Status {
    let message = error.to_string();
    match &error {
        Error::Syntax { .. }
        | Error::Plan { .. }
        | Error::Unsupported { .. }
        | Error::InvalidInput { .. } => Status::invalid_argument(message),
        Error::Catalog { message: m, .. } if m.starts_with("no ") => Status::not_found(message),
        Error::Catalog { message: m, .. } if m.contains("already") => Status::already_exists(message),
        Error::Catalog { .. } => Status::failed_precondition(message),
        Error::Storage { .. } => Status::unavailable(message),
        Error::Internal { .. } => Status::internal(message),
    }
}

pub fn statement_result(output: Output) -> Result<pb::StatementResult, Status> {
    use pb::statement_result::Result as R;
    let result = match output {
        Output::Rows { schema, batches } => {
            let columns = schema
                .fields()
                .iter()
                .map(|f| pb::Column {
                    name: f.name().clone(),
                    r#type: segstream_sql::schema::sql_type_name(f.data_type()),
                    nullable: f.is_nullable(),
                })
                .collect();
            let mut rows = Vec::new();
            for batch in &batches {
                rows.extend(batch_rows(batch)?);
            }
            R::Rows(pb::ResultSet { columns, rows })
        }
        Output::Text(text) => R::Text(text),
        Output::Done(done) => R::Done(done),
    };
    Ok(pb::StatementResult { result: Some(result) })
}

fn batch_rows(batch: &RecordBatch) -> Result<Vec<pb::Row>, Status> {
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut values = Vec::with_capacity(batch.num_columns());
        for column in batch.columns() {
            let scalar =
                ScalarValue::try_from_array(column, i).map_err(|e| Status::internal(e.to_string()))?;
            values.push(value(&scalar));
        }
        rows.push(pb::Row { values });
    }
    Ok(rows)
}

/// A SQL value as the API's typed value.
pub fn value(scalar: &ScalarValue) -> pb::Value {
    use pb::value::Kind;
    if scalar.is_null() {
        return pb::Value { kind: Some(Kind::Null(true)) };
    }
    let kind = match scalar {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Kind::Text(s.clone())
        }
        ScalarValue::Boolean(Some(b)) => Kind::Boolean(*b),
        ScalarValue::Int8(Some(v)) => Kind::Integer(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Kind::Integer(i64::from(*v)),
        ScalarValue::Int32(Some(v)) => Kind::Integer(i64::from(*v)),
        ScalarValue::Int64(Some(v)) => Kind::Integer(*v),
        ScalarValue::UInt8(Some(v)) => Kind::Integer(i64::from(*v)),
        ScalarValue::UInt16(Some(v)) => Kind::Integer(i64::from(*v)),
        ScalarValue::UInt32(Some(v)) => Kind::Integer(i64::from(*v)),
        ScalarValue::UInt64(Some(v)) => match i64::try_from(*v) {
            Ok(v) => Kind::Integer(v),
            Err(_) => Kind::Text(v.to_string()),
        },
        ScalarValue::Float32(Some(v)) => Kind::Real(f64::from(*v)),
        ScalarValue::Float64(Some(v)) => Kind::Real(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Kind::TimestampUnixNanos(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Kind::TimestampUnixNanos(v.saturating_mul(1_000)),
        ScalarValue::TimestampMillisecond(Some(v), _) => {
            Kind::TimestampUnixNanos(v.saturating_mul(1_000_000))
        }
        ScalarValue::TimestampSecond(Some(v), _) => Kind::TimestampUnixNanos(v.saturating_mul(1_000_000_000)),
        ScalarValue::Date32(Some(v)) => Kind::Date(*v),
        other => Kind::Text(other.to_string()),
    };
    pb::Value { kind: Some(kind) }
}

pub fn change(record: &ChangeRecord) -> pb::Change {
    pb::Change {
        segment: record.segment.clone(),
        seq: record.seq,
        key: record.key.clone(),
        kind: change_kind(record.kind) as i32,
        at_unix_nanos: record.at.nanos(),
        attributes_json: record.attributes.clone(),
        reason: record.reason.clone(),
    }
}

pub fn change_kind(kind: ChangeKind) -> pb::ChangeKind {
    match kind {
        ChangeKind::Entered => pb::ChangeKind::Entered,
        ChangeKind::Exited => pb::ChangeKind::Exited,
        ChangeKind::Updated => pb::ChangeKind::Updated,
        ChangeKind::Redacted => pb::ChangeKind::Redacted,
    }
}
