//! Ingest in process: batches of rows for a stream or table, as an Arrow RecordBatch
//! or JSON objects. Each row is checked against the declared schema; a bad row is
//! reported with its index and the reason and the others are applied. The call returns
//! once the accepted rows and everything they change are durable.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions,
};
use datafusion::arrow::compute::filter;
use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use segstream_sql::ast::{Name, ObjectKind};
use segstream_sql::schema::sql_type_name;
use segstream_state::codec::{rows_to_batch, ByteReader, ByteWriter};
use segstream_types::{Error, Result, Timestamp};

use crate::engine::Engine;
use crate::journal_record::JournalInput;
use crate::step::Step;

/// Rows to ingest.
#[derive(Debug, Clone)]
pub enum IngestRows {
    /// Columns matched by name; missing nullable columns are NULL.
    Arrow(RecordBatch),
    /// One JSON object per row: `{"user_id": "u1", "ts": "2026-01-01 10:00:00", ...}`.
    Json(Vec<serde_json::Value>),
    /// The same as text, one object per string (NDJSON lines, the gRPC `json` payload): a
    /// string that is not JSON rejects its row with the parser's reason.
    JsonText(Vec<String>),
}

/// What an ingest call did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IngestReport {
    /// Rows written (for a table with `keep_existing`, rows whose key was new).
    pub accepted: usize,
    pub rejected: Vec<RejectedRow>,
    /// The idempotency key had been applied before: this is the first call's report and
    /// nothing was applied now.
    pub duplicate: bool,
}

/// A row that was not ingested, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    /// The row's position in the call, from 0.
    pub index: usize,
    pub reason: String,
}

impl Engine {
    /// Validates and applies rows for a stream or table. Errors that concern the whole
    /// call (unknown relation, a segment, a column of the wrong type in an Arrow batch)
    /// are returned as `Err`; a bad row only rejects that row.
    pub fn ingest(&mut self, relation: &str, rows: IngestRows) -> Result<IngestReport> {
        self.ingest_once(relation, rows, None)
    }

    /// [`Engine::ingest`] with an optional idempotency key: the first call with a key
    /// applies its rows and stores its report in the same write batch; a later call with
    /// the same key (a retry after a timeout) applies nothing and returns that report
    /// with `duplicate` set. Keys are kept until [`Engine::expire_idempotency_keys`]
    /// drops them (a server keeps them for its idempotency window, 24 hours by default).
    ///
    /// With the wall clock, the call first moves the clock to now (the time-driven changes
    /// due on the way are a step of their own); both steps are acknowledged by one
    /// journal sync ([`Engine::with_one_sync`]).
    pub fn ingest_once(
        &mut self,
        relation: &str,
        rows: IngestRows,
        idempotency_key: Option<&str>,
    ) -> Result<IngestReport> {
        self.with_one_sync(|engine| engine.ingest_unsynced(relation, rows, idempotency_key))
    }

    /// The manual clock's counterpart of a wall-clock ingest: moves the clock to `at`
    /// (firing every timer due on the way, as [`Engine::advance_clock`] does), then
    /// ingests the rows at that instant, both acknowledged by one journal sync. A client
    /// that replays recorded traffic, or a bench that generates it, steps the clock with
    /// each batch this way instead of making two calls that each wait for the disk.
    /// Refused with the wall clock, and for an `at` before the engine's clock.
    pub fn ingest_at(&mut self, relation: &str, rows: IngestRows, at: Timestamp) -> Result<IngestReport> {
        self.with_one_sync(|engine| {
            engine.advance_clock(at)?;
            engine.ingest_unsynced(relation, rows, None)
        })
    }

    /// [`Engine::ingest_once`] inside the caller's [`Engine::with_one_sync`].
    fn ingest_unsynced(
        &mut self,
        relation: &str,
        rows: IngestRows,
        idempotency_key: Option<&str>,
    ) -> Result<IngestReport> {
        self.ready_to_write()?;
        let marker_key = idempotency_key.map(|k| format!("ingest_key/{k}").into_bytes());
        if let Some(key) = &marker_key {
            if let Some(stored) = self.store.get(segstream_state::CF_META, key)? {
                let mut report = decode_report(&stored)?;
                report.duplicate = true;
                return Ok(report);
            }
        }
        self.catch_up_with_wall_clock()?;
        let name = Name { value: relation.to_string(), position: None };
        let relation = self.relation(&name)?.clone();
        if relation.kind == ObjectKind::Segment {
            return Err(Error::invalid_input(format!(
                "segment `{}` is computed from its query; ingest into the streams and tables it reads",
                relation.name
            )));
        }
        let (values, rejected) = match rows {
            IngestRows::Arrow(batch) => rows_from_arrow(&relation, &batch)?,
            IngestRows::Json(objects) => as_batch(&relation, rows_from_json(&relation, &objects))?,
            IngestRows::JsonText(texts) => as_batch(&relation, rows_from_json_text(&relation, &texts))?,
        };
        let report = IngestReport { accepted: values.num_rows(), rejected, duplicate: false };
        let marker = match (marker_key, idempotency_key) {
            (Some(key), Some(k)) => {
                vec![(key, encode_report(&report)), (key_expiry_entry(self.now().nanos(), k), Vec::new())]
            }
            _ => Vec::new(),
        };
        let accepted = self.write_rows(&relation, values, false, marker)?;
        Ok(IngestReport { accepted, ..report })
    }
}

/// `ingest_key_at/<instant><key>`: when an idempotency key was applied, so keys can be
/// dropped oldest first without reading them all.
const KEY_EXPIRY_PREFIX: &[u8] = b"ingest_key_at/";

fn key_expiry_entry(at_nanos: i64, key: &str) -> Vec<u8> {
    let mut entry = KEY_EXPIRY_PREFIX.to_vec();
    entry.extend_from_slice(&segstream_state::codec::encode_instant(at_nanos));
    entry.extend_from_slice(key.as_bytes());
    entry
}

impl Engine {
    /// Forgets the idempotency keys applied longer ago than `window` (by the engine
    /// clock), so they do not accumulate: a retry that comes later than the window is
    /// applied again. Returns how many were dropped.
    pub fn expire_idempotency_keys(&mut self, window: std::time::Duration) -> Result<u64> {
        self.ready_to_write()?;
        self.expire_keys_older_than(i64::try_from(window.as_nanos()).unwrap_or(i64::MAX))
    }

    /// The step of [`Engine::expire_idempotency_keys`].
    pub(crate) fn expire_keys_older_than(&mut self, window: i64) -> Result<u64> {
        let cutoff = key_expiry_entry(self.now().nanos().saturating_sub(window), "");
        let input = JournalInput::ExpireKeys { window_nanos: window };
        let mut step = Step::new(&self.store, self.now(), Some(input));
        let mut dropped = 0;
        let mut from = KEY_EXPIRY_PREFIX.to_vec();
        'pages: loop {
            let page =
                self.store.scan_range_limit(segstream_state::CF_META, &from, KEY_EXPIRY_PREFIX, 1024)?;
            let Some((last, _)) = page.last() else { break };
            from = last.clone();
            from.push(0);
            for (entry, _) in &page {
                if entry.as_slice() >= cutoff.as_slice() {
                    break 'pages;
                }
                let key = entry.get(KEY_EXPIRY_PREFIX.len() + 8..).unwrap_or_default();
                let mut marker = b"ingest_key/".to_vec();
                marker.extend_from_slice(key);
                step.cx.delete(segstream_state::CF_META, marker);
                step.cx.delete(segstream_state::CF_META, entry.clone());
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.commit(step)?;
        }
        Ok(dropped)
    }
}

fn encode_report(report: &IngestReport) -> Vec<u8> {
    let mut w = ByteWriter::default();
    w.i64(report.accepted as i64).i64(report.rejected.len() as i64);
    for row in &report.rejected {
        w.i64(row.index as i64).bytes(row.reason.as_bytes());
    }
    w.0
}

fn decode_report(bytes: &[u8]) -> Result<IngestReport> {
    let damaged = || Error::storage("a stored ingest report is damaged");
    let mut r = ByteReader::new(bytes);
    let accepted = usize::try_from(r.i64()?).map_err(|_| damaged())?;
    let n = usize::try_from(r.i64()?).map_err(|_| damaged())?;
    let mut rejected = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let index = usize::try_from(r.i64()?).map_err(|_| damaged())?;
        let reason = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| damaged())?;
        rejected.push(RejectedRow { index, reason });
    }
    Ok(IngestReport { accepted, rejected, duplicate: false })
}

type Checked = (Vec<Vec<ScalarValue>>, Vec<RejectedRow>);

/// Rows checked against a relation's schema: the good ones as a batch of the relation's
/// schema, the others with their index and reason.
type CheckedBatch = (RecordBatch, Vec<RejectedRow>);

fn as_batch(relation: &segstream_sql::Relation, (rows, rejected): Checked) -> Result<CheckedBatch> {
    Ok((rows_to_batch(&relation.schema, &rows)?, rejected))
}

/// Checks an Arrow batch against the relation's schema column by column: each column is
/// cast to its declared type, and a row is rejected (with the first reason found) when
/// a cast would change a value, a value does not convert, or a NOT NULL column is NULL.
pub(crate) fn rows_from_arrow(
    relation: &segstream_sql::Relation,
    batch: &RecordBatch,
) -> Result<CheckedBatch> {
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(relation.schema.fields().len());
    // Per row, the first reason to reject it.
    let mut reasons: Vec<Option<String>> = vec![None; n];
    // Rows a conversion would change rather than convert: a fraction into an integer,
    // a float too large for REAL.
    for field in relation.schema.fields() {
        let Ok(index) = batch.schema().index_of(field.name()) else {
            continue;
        };
        let given = batch.column(index).data_type();
        let target = field.data_type();
        if given.is_integer() && matches!(target, DataType::Timestamp(_, _) | DataType::Date32) {
            return Err(Error::invalid_input(format!(
                "column `{}`: integers are not read as times (which unit?); give a {} or text such as {}",
                field.name(),
                sql_type_name(target),
                if *target == DataType::Date32 { "'2026-01-01'" } else { "'2026-01-01 10:00:00'" }
            )));
        }
        let fractional =
            given.is_floating() || matches!(given, DataType::Decimal128(..) | DataType::Decimal256(..));
        if fractional && (target.is_integer() || *target == DataType::Float32) {
            let floats = cast_with_options(batch.column(index), &DataType::Float64, &CastOptions::default())
                .map_err(|e| Error::internal(e.to_string()))?;
            let floats = floats
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Float64Array>()
                .ok_or_else(|| Error::internal("float cast gave another type"))?;
            for (i, slot) in reasons.iter_mut().enumerate() {
                if slot.is_some() || !floats.is_valid(i) {
                    continue;
                }
                let f = floats.value(i);
                let fits = if target.is_integer() {
                    f.fract() == 0.0
                } else {
                    f.is_nan() || (f as f32).is_finite() || f.is_infinite()
                };
                if !fits {
                    *slot = Some(format!(
                        "column `{}`: {f} does not fit {}",
                        field.name(),
                        sql_type_name(target)
                    ));
                }
            }
        }
    }
    for field in relation.schema.fields() {
        let given = batch.schema().index_of(field.name()).ok().map(|index| batch.column(index));
        let column = match given {
            // The "safe" cast: a value that does not convert becomes NULL, and is then
            // found below as a NULL that was not NULL in the input.
            Some(given) => {
                cast_with_options(given, field.data_type(), &CastOptions::default()).map_err(|e| {
                    Error::invalid_input(format!(
                        "column `{}` cannot be read as {}: {e}",
                        field.name(),
                        sql_type_name(field.data_type())
                    ))
                })?
            }
            None => new_null_array(field.data_type(), n),
        };
        if column.null_count() > 0 {
            // Logical nulls: a NULL literal's column (type Null) has no null buffer.
            let given_nulls = given.map(|g| g.logical_nulls());
            for (i, slot) in reasons.iter_mut().enumerate() {
                if slot.is_some() || column.is_valid(i) {
                    continue;
                }
                let given_valid = match &given_nulls {
                    Some(Some(nulls)) => nulls.is_valid(i),
                    Some(None) => true,
                    None => false,
                };
                if let Some(given) = given.filter(|_| given_valid) {
                    *slot = Some(format!(
                        "column `{}`: {} does not convert to {}",
                        field.name(),
                        shown_value(given, i),
                        sql_type_name(field.data_type())
                    ));
                } else if !field.is_nullable() {
                    *slot = Some(format!("column `{}` is NOT NULL but got no value", field.name()));
                }
            }
        }
        columns.push(column);
    }
    for given in batch.schema().fields() {
        if relation.schema.index_of(given.name()).is_err() {
            return Err(Error::invalid_input(format!(
                "`{}` has no column `{}`",
                relation.name,
                given.name()
            )));
        }
    }
    let rejected: Vec<RejectedRow> = reasons
        .iter()
        .enumerate()
        .filter_map(|(index, reason)| reason.clone().map(|reason| RejectedRow { index, reason }))
        .collect();
    // The rejected rows leave before the batch is built: a NOT NULL column may hold a
    // NULL only in a rejected row.
    let mut kept = n;
    if !rejected.is_empty() {
        let keep: BooleanArray = reasons.iter().map(|r| Some(r.is_none())).collect();
        columns = columns
            .iter()
            .map(|c| filter(c, &keep))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::internal(e.to_string()))?;
        kept = n - rejected.len();
    }
    let rows = RecordBatch::try_new_with_options(
        Arc::clone(&relation.schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(kept)),
    )
    .map_err(|e| Error::internal(e.to_string()))?;
    Ok((rows, rejected))
}

/// A value as an error shows it: text quoted, and cut short when long.
fn shown_value(array: &ArrayRef, row: usize) -> String {
    let text = datafusion::arrow::util::display::array_value_to_string(array, row)
        .unwrap_or_else(|_| "the value".to_string());
    let cut: String = text.chars().take(40).collect();
    let cut = if cut.len() < text.len() { format!("{cut}...") } else { cut };
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => format!("'{cut}'"),
        _ => cut,
    }
}

fn rows_from_json(relation: &segstream_sql::Relation, objects: &[serde_json::Value]) -> Checked {
    let mut rows = Vec::with_capacity(objects.len());
    let mut rejected = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        match row_from_json(relation, object) {
            Ok(row) => rows.push(row),
            Err(reason) => rejected.push(RejectedRow { index, reason }),
        }
    }
    (rows, rejected)
}

fn rows_from_json_text(relation: &segstream_sql::Relation, texts: &[String]) -> Checked {
    let mut rows = Vec::with_capacity(texts.len());
    let mut rejected = Vec::new();
    for (index, text) in texts.iter().enumerate() {
        let parsed = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"));
        match parsed.and_then(|object| row_from_json(relation, &object)) {
            Ok(row) => rows.push(row),
            Err(reason) => rejected.push(RejectedRow { index, reason }),
        }
    }
    (rows, rejected)
}

fn row_from_json(
    relation: &segstream_sql::Relation,
    object: &serde_json::Value,
) -> std::result::Result<Vec<ScalarValue>, String> {
    let serde_json::Value::Object(map) = object else {
        return Err(format!("a row must be a JSON object, found {}", kind_of(object)));
    };
    if let Some(unknown) = map.keys().find(|k| relation.schema.index_of(k).is_err()) {
        return Err(format!("`{}` has no column `{unknown}`", relation.name));
    }
    relation
        .schema
        .fields()
        .iter()
        .map(|field| {
            let value = map.get(field.name()).unwrap_or(&serde_json::Value::Null);
            let scalar = json_to_scalar(value, field.data_type())
                .map_err(|reason| format!("column `{}`: {reason}", field.name()))?;
            if scalar.is_null() && !field.is_nullable() {
                return Err(format!("column `{}` is NOT NULL but got no value", field.name()));
            }
            Ok(scalar)
        })
        .collect()
}

fn json_to_scalar(
    value: &serde_json::Value,
    data_type: &DataType,
) -> std::result::Result<ScalarValue, String> {
    use serde_json::Value as J;
    let wrong = || format!("expected {}, found {}", sql_type_name(data_type), kind_of(value));
    if value.is_null() {
        return ScalarValue::try_from(data_type).map_err(|e| e.to_string());
    }
    Ok(match (data_type, value) {
        (DataType::Utf8, J::String(s)) => ScalarValue::Utf8(Some(s.clone())),
        (DataType::Boolean, J::Bool(b)) => ScalarValue::Boolean(Some(*b)),
        (DataType::Int16 | DataType::Int32 | DataType::Int64, J::Number(n)) => {
            let out_of_range = || format!("{n} is out of range for {}", sql_type_name(data_type));
            let v = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(v), _, _) => v,
                (None, Some(_), _) => return Err(out_of_range()),
                // 1.0 or 1e3 from a JSON writer that prints every number as a float.
                (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => f as i64,
                _ => return Err(format!("{n} is not an integer")),
            };
            let out_of_range = || format!("{v} is out of range for {}", sql_type_name(data_type));
            match data_type {
                DataType::Int16 => ScalarValue::Int16(Some(i16::try_from(v).map_err(|_| out_of_range())?)),
                DataType::Int32 => ScalarValue::Int32(Some(i32::try_from(v).map_err(|_| out_of_range())?)),
                _ => ScalarValue::Int64(Some(v)),
            }
        }
        (DataType::Float32, J::Number(n)) => {
            let f = n.as_f64().map(|f| f as f32).filter(|f| f.is_finite());
            ScalarValue::Float32(Some(f.ok_or_else(|| format!("{n} is out of range for REAL"))?))
        }
        (DataType::Float64, J::Number(n)) => ScalarValue::Float64(n.as_f64()),
        (DataType::Timestamp(TimeUnit::Nanosecond, tz), J::String(s)) => ScalarValue::TimestampNanosecond(
            Some(
                string_to_timestamp_nanos(s)
                    .map_err(|_| format!("`{s}` is not a timestamp (write e.g. 2026-01-01 10:00:00)"))?,
            ),
            tz.clone(),
        ),
        (DataType::Date32, J::String(s)) => {
            let cast = ScalarValue::Utf8(Some(s.clone()))
                .cast_to(&DataType::Date32)
                .map_err(|_| format!("`{s}` is not a date (write e.g. 2026-01-01)"))?;
            if cast.is_null() {
                return Err(format!("`{s}` is not a date (write e.g. 2026-01-01)"));
            }
            cast
        }
        _ => return Err(wrong()),
    })
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use segstream_types::Timestamp;

    use super::*;
    use crate::{ClockMode, EngineOptions};

    const HOUR: i64 = 3_600_000_000_000;

    fn click(engine: &mut Engine, key: &str) -> IngestReport {
        let row = serde_json::json!({"user_id": "u1", "ts": "1970-01-01 00:00:00"});
        engine.ingest_once("clicks", IngestRows::Json(vec![row]), Some(key)).expect("ingests")
    }

    /// A key is remembered within its window (a retry applies nothing), dropped after it
    /// (with its report), and only the keys older than the window are dropped.
    #[tokio::test]
    async fn idempotency_keys_expire_after_their_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine =
            Engine::open(EngineOptions::new(dir.path()).with_clock(ClockMode::Manual)).expect("opens");
        engine.execute("CREATE STREAM clicks (user_id TEXT, ts TIMESTAMP)").await.expect("creates");
        assert!(!click(&mut engine, "a").duplicate);
        engine.advance_clock(Timestamp(2 * HOUR)).expect("advances");
        assert!(!click(&mut engine, "b").duplicate);
        assert!(click(&mut engine, "a").duplicate, "a retry within the window");
        let window = Duration::from_secs(3600);
        assert_eq!(engine.expire_idempotency_keys(window).expect("expires"), 1, "a is 2 h old, b new");
        assert_eq!(engine.expire_idempotency_keys(window).expect("expires"), 0);
        assert!(!click(&mut engine, "a").duplicate, "a is forgotten: applied again");
        assert!(click(&mut engine, "b").duplicate, "b is still remembered");
        let keys = engine.store.scan_prefix(segstream_state::CF_META, b"ingest_key").expect("scans");
        assert_eq!(keys.len(), 4, "a and b, each with its expiry entry: {keys:?}");
    }

    /// `ingest_at` is what an advance and an ingest do, in two journal records and one
    /// sync: the same change log (a buyer leaving when the clock passes its window, and
    /// entering again at the new instant), the same clock; and both steps survive a
    /// crash right after it returns.
    #[tokio::test]
    async fn an_ingest_at_an_instant_is_an_advance_and_an_ingest_with_one_sync() {
        let buy = |ts: &str| {
            IngestRows::Json(vec![serde_json::json!({"user_id": "u1", "event_type": "purchase", "ts": ts})])
        };
        let mut logs = Vec::new();
        for together in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let options = || EngineOptions::new(dir.path()).with_clock(ClockMode::Manual);
            let mut engine = Engine::open(options()).expect("opens");
            engine
                .execute(
                    "CREATE STREAM events (user_id TEXT, event_type TEXT, ts TIMESTAMP) \
                     WITH (event_time = 'ts', key = 'user_id'); \
                     CREATE SEGMENT recent_buyers AS SELECT DISTINCT user_id FROM events \
                     WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '3 hours'",
                )
                .await
                .expect("creates");
            engine.ingest("events", buy("1970-01-01 00:00:00")).expect("ingests");
            let journal = engine.journal();
            let (records, syncs) = (journal.last().expect("last"), journal.syncs());
            let at = Timestamp(4 * HOUR);
            if together {
                engine.ingest_at("events", buy("1970-01-01 04:00:00"), at).expect("ingests");
                assert_eq!(journal.syncs() - syncs, 1, "one sync for both steps");
            } else {
                engine.advance_clock(at).expect("advances");
                engine.ingest("events", buy("1970-01-01 04:00:00")).expect("ingests");
                assert_eq!(journal.syncs() - syncs, 2);
            }
            assert_eq!(journal.last().expect("last") - records, 2, "the advance and the rows");
            assert_eq!(journal.durable(), journal.last().expect("last"), "both durable on return");
            assert_eq!(engine.now(), at);
            engine.close_without_checkpoint();
            let engine = Engine::open(options()).expect("reopens");
            assert_eq!(engine.now(), at, "both steps survive a crash");
            let log: Vec<_> = engine
                .change_records()
                .expect("records")
                .into_iter()
                .map(|r| (r.seq, r.kind, r.at))
                .collect();
            logs.push(log);
        }
        assert_eq!(logs[0].len(), 3, "entered, left at 03:00, entered again at 04:00: {:?}", logs[0]);
        assert_eq!(logs[0], logs[1]);
    }

    /// A call refused after its clock advance (an unknown relation) keeps the advance,
    /// and syncs it: nothing that happened is left for a crash to take back. An `at`
    /// before the clock is refused before anything happens.
    #[tokio::test]
    async fn an_ingest_at_that_fails_keeps_its_advance_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine =
            Engine::open(EngineOptions::new(dir.path()).with_clock(ClockMode::Manual)).expect("opens");
        let rows = IngestRows::Json(vec![serde_json::json!({"user_id": "u1"})]);
        let error = engine.ingest_at("nowhere", rows.clone(), Timestamp(HOUR)).expect_err("unknown");
        assert!(error.to_string().contains("nowhere"), "{error}");
        assert_eq!(engine.now(), Timestamp(HOUR));
        let journal = engine.journal();
        assert_eq!(journal.durable(), journal.last().expect("last"));
        let error = engine.ingest_at("nowhere", rows, Timestamp(0)).expect_err("backwards");
        assert!(error.to_string().contains("never goes backwards"), "{error}");
    }
}
