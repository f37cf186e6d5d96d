//! INSERT and DELETE: rows of streams (append-only events) and tables (upserted by
//! primary key), validated against the declared schema and stored in one write batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Field, Schema, TimestampNanosecondType};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    ConflictTarget, Delete, FromTable, Ident, Insert, ObjectName, OnConflictAction, OnInsert,
    Statement as SqlStatement, TableFactor, TableObject,
};
use segstream_sql::ast::{Name, ObjectKind, StatementKind};
use segstream_sql::parse_statement;
use segstream_sql::parser::normalize;
use segstream_state::codec::{
    decode_row, encode_instant, encode_key, encode_row, row_values, rows_to_batch, ByteReader, RowBlock,
};
use segstream_state::{CF_META, CF_ROWS};
use segstream_types::{DeltaBatch, Error, Result};

use crate::engine::Engine;
use crate::ingest::rows_from_arrow;
use crate::journal_record::JournalInput;
use crate::output::Output;
use crate::step::Step;

const META_NEXT_EVENT: &str = "next_event_seq";
/// How stored events are keyed; absent in data directories that keyed them by arrival.
const META_EVENT_KEYS: &str = "event_keys";
const EVENT_KEYS_BY_TIME: u64 = 2;

/// A stored event's key: the stream's id, the event time (order-preserving) and an
/// arrival number that keeps equal times apart. Events sort by event time within a
/// stream, so those past a retention are one key range.
pub(crate) fn event_key(stream_id: u64, event_nanos: i64, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(25);
    key.extend_from_slice(&stream_id.to_be_bytes());
    key.extend_from_slice(&encode_instant(event_nanos));
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The last byte of an event block's key (an [`event_key`] is 24 bytes, a block's 25).
const EVENT_BLOCK: u8 = b'B';

/// The key of a block of events stored together (the events of one ingest step): the
/// [`event_key`] of its newest event time and first arrival number, then
/// [`EVENT_BLOCK`]. One key per step instead of one per event saves a RocksDB insert
/// per event. Keyed by the newest time, a block is past a retention only when all its
/// events are; readers drop the older events of a block that is still kept.
pub(crate) fn event_block_key(stream_id: u64, newest_nanos: i64, first_seq: u64) -> Vec<u8> {
    let mut key = event_key(stream_id, newest_nanos, first_seq);
    key.push(EVENT_BLOCK);
    key
}

/// The events stored under one key of a stream: a block's, or one event's (as stored
/// before blocks).
pub(crate) fn decode_stored_events(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    key: &[u8],
    value: &[u8],
) -> Result<Vec<Vec<ScalarValue>>> {
    if key.len() != 25 || key[24] != EVENT_BLOCK {
        return Ok(vec![decode_row(schema, value)?]);
    }
    // An event block's value is a `RowBlock`: how many events, then each encoded row.
    let mut reader = ByteReader::new(value);
    let n = reader.i64()?;
    (0..n).map(|_| decode_row(schema, reader.bytes()?)).collect()
}

/// Where a stream's event-time column is in its rows.
pub(crate) fn event_time_index(relation: &segstream_sql::Relation) -> Result<usize> {
    let name = relation
        .event_time
        .as_deref()
        .ok_or_else(|| Error::internal(format!("stream {} has no event time", relation.name)))?;
    relation.schema.index_of(name).map_err(|e| Error::internal(e.to_string()))
}

/// An event time's nanoseconds (never NULL: ingest refuses a NULL event time).
pub(crate) fn event_nanos(value: &ScalarValue) -> Result<i64> {
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Ok(*v),
        other => Err(Error::internal(format!("an event time is {other:?}, not a timestamp"))),
    }
}

impl Engine {
    pub(crate) async fn insert(&mut self, insert: &Insert) -> Result<Output> {
        let TableObject::TableName(object) = &insert.table else {
            return Err(Error::invalid_input(
                "INSERT INTO a table function is not supported; name a stream or table",
            ));
        };
        let name = single_name(object)?;
        let relation = self.relation(&name)?.clone();
        if relation.kind == ObjectKind::Segment {
            return Err(Error::invalid_input(format!(
                "segment `{name}` is computed from its query; insert into the streams and tables it reads ({})",
                relation.reads.join(", ")
            )));
        }
        if insert.returning.is_some()
            || insert.overwrite
            || !insert.assignments.is_empty()
            || insert.partitioned.is_some()
        {
            return Err(Error::invalid_input(
                "this form of INSERT is not supported; write INSERT INTO name [(columns)] VALUES (...) | SELECT ...",
            ));
        }
        let keep_existing = match &insert.on {
            None => false,
            Some(_) if relation.kind == ObjectKind::Stream => {
                return Err(Error::invalid_input(format!(
                    "stream `{name}` is append-only: every event is kept, so ON CONFLICT does not apply"
                )))
            }
            Some(OnInsert::OnConflict(conflict)) => {
                if let Some(target) = &conflict.conflict_target {
                    let ok = matches!(target, ConflictTarget::Columns(c) if c.len() == 1 && normalize(&c[0]) == relation.key);
                    if !ok {
                        return Err(Error::invalid_input(format!(
                            "ON CONFLICT must name the primary key of `{name}`: ON CONFLICT ({})",
                            relation.key
                        )));
                    }
                }
                match conflict.action {
                    OnConflictAction::DoNothing => true,
                    OnConflictAction::DoUpdate(_) => {
                        return Err(Error::invalid_input(
                            "INSERT into a table already replaces the row with the same key; \
                             drop ON CONFLICT ... DO UPDATE (or use DO NOTHING to keep the old row)",
                        ))
                    }
                }
            }
            Some(_) => {
                return Err(Error::invalid_input(
                    "ON DUPLICATE KEY UPDATE is not supported; INSERT into a table upserts",
                ))
            }
        };
        let Some(source) = &insert.source else {
            return Err(Error::invalid_input("INSERT needs VALUES (...) or a SELECT"));
        };

        // Which target column each source column fills.
        let fields = relation.schema.fields();
        let targets: Vec<usize> = if insert.columns.is_empty() {
            (0..fields.len()).collect()
        } else {
            let mut seen = HashSet::new();
            let mut targets = Vec::with_capacity(insert.columns.len());
            for column in &insert.columns {
                let column = single_name(column)?.value;
                let index = relation
                    .schema
                    .index_of(&column)
                    .map_err(|_| Error::invalid_input(format!("`{name}` has no column `{column}`")))?;
                if !seen.insert(index) {
                    return Err(Error::invalid_input(format!("column `{column}` is named twice")));
                }
                targets.push(index);
            }
            targets
        };

        let (source_schema, batches) = self.run_query(SqlStatement::Query(source.clone())).await?;
        let given = source_schema.fields().len();
        if given > targets.len() || (!insert.columns.is_empty() && given != targets.len()) {
            return Err(Error::invalid_input(format!(
                "INSERT gives {given} values per row for {} columns of `{name}`",
                targets.len()
            )));
        }

        // The rows are checked as an ingest call checks them (the same conversions, the
        // same refusals: an integer is not read as a time, a fraction not cut to an
        // integer), but an INSERT is all or nothing: the first bad row fails it.
        let mut checked = Vec::with_capacity(batches.len());
        let mut before = 0;
        for batch in &batches {
            let named: Vec<Field> = targets
                .iter()
                .take(given)
                .enumerate()
                .map(|(source, &target)| {
                    Field::new(fields[target].name(), batch.column(source).data_type().clone(), true)
                })
                .collect();
            let named = RecordBatch::try_new(Arc::new(Schema::new(named)), batch.columns()[..given].to_vec())
                .map_err(|e| Error::internal(e.to_string()))?;
            let (rows, rejected) = rows_from_arrow(&relation, &named)?;
            if let Some(bad) = rejected.first() {
                return Err(Error::invalid_input(format!(
                    "`{name}`, row {}: {}",
                    before + bad.index + 1,
                    bad.reason
                )));
            }
            before += batch.num_rows();
            checked.push(rows);
        }
        let rows = concat_batches(&relation.schema, &checked).map_err(|e| Error::internal(e.to_string()))?;
        let written = self.write_rows(&relation, rows, keep_existing, Vec::new())?;
        Ok(Output::Done(format!("INSERT {written}")))
    }

    /// Stores validated rows of a stream or table and runs them through the segments
    /// that read it, in one write batch; returns how many rows were written. Into a
    /// table, a row whose key exists replaces it, or with `keep_existing` is skipped.
    pub(crate) fn write_rows(
        &self,
        relation: &segstream_sql::Relation,
        rows: RecordBatch,
        keep_existing: bool,
        // Meta entries committed in the same write batch (an ingest's idempotency key).
        marker: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<usize> {
        let id = self.id_of(&relation.name)?;
        // Encoded once, into one buffer: the journal record's rows, and a stream's stored
        // event block (the same bytes).
        let encoded = RowBlock::encode(&rows)?;
        let block = match relation.kind {
            ObjectKind::Stream => Some(encoded.as_bytes().to_vec()),
            _ => None,
        };
        let input = JournalInput::Rows {
            relation: relation.name.clone(),
            rows: encoded,
            keep_existing,
            marker: marker.clone(),
        };
        let mut step = Step::new(&self.store, self.clock.now(), Some(input));
        let cx = &mut step.cx;
        // The relation's delta for the segments that read it: an event is an insertion;
        // a table row that replaces another retracts it first.
        let delta = match relation.kind {
            ObjectKind::Stream => {
                // Events are new keys, stored and passed on as the batch they came in.
                let times = rows.column(event_time_index(relation)?);
                let times = times
                    .as_primitive_opt::<TimestampNanosecondType>()
                    .ok_or_else(|| Error::internal(format!("an event time is {}", times.data_type())))?;
                if times.null_count() > 0 {
                    return Err(Error::internal("an event time is NULL"));
                }
                let seq = self.store.meta_u64(META_NEXT_EVENT)?.unwrap_or(0);
                let n = rows.num_rows();
                if let (Some(&newest), Some(block)) = (times.values().iter().max(), block) {
                    cx.append(CF_ROWS, event_block_key(id, newest, seq), block);
                }
                let next = seq + n as u64;
                cx.put(CF_META, META_NEXT_EVENT.as_bytes().to_vec(), next.to_be_bytes().to_vec());
                DeltaBatch::new(rows, vec![1; n])?
            }
            _ => {
                let key_index =
                    relation.schema.index_of(&relation.key).map_err(|e| Error::internal(e.to_string()))?;
                let mut delta_rows: Vec<Vec<ScalarValue>> = Vec::with_capacity(rows.num_rows());
                let mut weights = Vec::with_capacity(rows.num_rows());
                for i in 0..rows.num_rows() {
                    let row = row_values(&rows, i)?;
                    let mut key = id.to_be_bytes().to_vec();
                    encode_key(&row[key_index], &mut key)?;
                    if let Some(old) = cx.get(CF_ROWS, &key)? {
                        if keep_existing {
                            continue;
                        }
                        delta_rows.push(decode_row(&relation.schema, &old)?);
                        weights.push(-1);
                    }
                    cx.put(CF_ROWS, key, encode_row(&row)?);
                    delta_rows.push(row);
                    weights.push(1);
                }
                DeltaBatch::new(rows_to_batch(&relation.schema, &delta_rows)?, weights)?
            }
        };
        let written = delta.weights.iter().filter(|w| **w > 0).count();
        for (key, value) in marker {
            cx.put(CF_META, key, value);
        }
        self.apply_relation_delta(&relation.name, delta, step)?;
        Ok(written)
    }

    /// Runs a stream's or table's changes through the segments that read it and commits
    /// the rows, the segments' state and their change logs as one step, with its instant.
    fn apply_relation_delta(&self, name: &str, delta: DeltaBatch, mut step: Step) -> Result<()> {
        let mut relations = HashMap::new();
        relations.insert(name.to_string(), delta);
        self.propagate(relations, &HashMap::new(), &mut step.cx, None)?;
        step.stamp_clock();
        self.commit(step)
    }

    pub(crate) async fn delete(&mut self, delete: &Delete) -> Result<Output> {
        let tables = match &delete.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        if tables.len() != 1
            || !tables[0].joins.is_empty()
            || delete.using.is_some()
            || delete.returning.is_some()
            || delete.limit.is_some()
            || !delete.order_by.is_empty()
            || !delete.tables.is_empty()
        {
            return Err(Error::invalid_input(
                "write DELETE FROM table WHERE condition (one table, no joins, USING or LIMIT)",
            ));
        }
        let TableFactor::Table { name: object, .. } = &tables[0].relation else {
            return Err(Error::invalid_input("DELETE FROM needs a table name"));
        };
        let name = single_name(object)?;
        let relation = self.relation(&name)?.clone();
        match relation.kind {
            ObjectKind::Table => {}
            ObjectKind::Stream => {
                return Err(Error::invalid_input(format!(
                    "stream `{name}` is append-only: its events are history and are not deleted"
                )))
            }
            ObjectKind::Segment => {
                return Err(Error::invalid_input(format!(
                    "segment `{name}` is computed from its query; change the data it reads instead"
                )))
            }
        }
        let mut sql = format!(
            "SELECT {} FROM {}",
            Ident::with_quote('"', relation.key.as_str()),
            Ident::with_quote('"', relation.name.as_str())
        );
        if let Some(selection) = &delete.selection {
            sql.push_str(&format!(" WHERE {selection}"));
        }
        let StatementKind::Query(query) = parse_statement(&sql)?.kind else {
            return Err(Error::internal("DELETE's row query did not parse as a query"));
        };
        let (_, batches) = self.run_query(SqlStatement::Query(query)).await?;
        let mut keys = Vec::new();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                keys.push(
                    ScalarValue::try_from_array(batch.column(0), row)
                        .map_err(|e| Error::internal(e.to_string()))?,
                );
            }
        }
        let deleted = self.delete_keys(&relation, keys)?;
        Ok(Output::Done(format!("DELETE {deleted}")))
    }

    /// Deletes a table's rows by primary key and retracts them through the segments, as
    /// one step journaled with the keys (the DELETE's condition is not evaluated again
    /// at recovery). Returns how many rows there were.
    pub(crate) fn delete_keys(
        &self,
        relation: &segstream_sql::Relation,
        keys: Vec<ScalarValue>,
    ) -> Result<usize> {
        let id = self.id_of(&relation.name)?;
        let encoded = keys.iter().map(|k| encode_row(std::slice::from_ref(k))).collect::<Result<Vec<_>>>()?;
        let input = JournalInput::DeleteKeys { relation: relation.name.clone(), keys: encoded };
        let mut step = Step::new(&self.store, self.clock.now(), Some(input));
        let cx = &mut step.cx;
        let mut retracted = Vec::new();
        for value in keys {
            let mut key = id.to_be_bytes().to_vec();
            encode_key(&value, &mut key)?;
            if let Some(old) = cx.get(CF_ROWS, &key)? {
                retracted.push(decode_row(&relation.schema, &old)?);
                cx.delete(CF_ROWS, key);
            }
        }
        let deleted = retracted.len();
        let weights = vec![-1; deleted];
        let delta = DeltaBatch::new(rows_to_batch(&relation.schema, &retracted)?, weights)?;
        self.apply_relation_delta(&relation.name, delta, step)?;
        Ok(deleted)
    }

    /// Rewrites events stored by a version that keyed them by arrival only (stream id
    /// + arrival number, 16 bytes) under [`event_key`], once per data directory.
    pub(crate) fn migrate_event_keys(&mut self) -> Result<()> {
        if self.store.meta_u64(META_EVENT_KEYS)? == Some(EVENT_KEYS_BY_TIME) {
            return Ok(());
        }
        // At open, before the journal starts: written straight to RocksDB.
        let mut step = Step::new(&self.store, self.clock.now(), None);
        for relation in self.catalog.list(ObjectKind::Stream) {
            let id = self.id_of(&relation.name)?;
            let time_index = event_time_index(relation)?;
            for (key, value) in self.store.scan_prefix(CF_ROWS, &id.to_be_bytes())? {
                let Some(seq) = key.get(8..16).filter(|_| key.len() == 16) else { continue };
                let seq =
                    u64::from_be_bytes(seq.try_into().map_err(|_| Error::storage("damaged event key"))?);
                let row = decode_row(&relation.schema, &value)?;
                step.cx.put(CF_ROWS, event_key(id, event_nanos(&row[time_index])?, seq), value);
                step.cx.delete(CF_ROWS, key);
            }
        }
        step.cx.put(CF_META, META_EVENT_KEYS.as_bytes().to_vec(), EVENT_KEYS_BY_TIME.to_be_bytes().to_vec());
        self.commit(step)
    }

    pub(crate) fn id_of(&self, name: &str) -> Result<u64> {
        self.ids.get(name).copied().ok_or_else(|| Error::internal(format!("{name} has no definition id")))
    }

    /// Every stored row of a stream or table, as one batch.
    pub(crate) fn stored_rows(
        &self,
        relation: &segstream_sql::Relation,
    ) -> Result<datafusion::arrow::array::RecordBatch> {
        let id = self.id_of(&relation.name)?;
        let mut rows = Vec::new();
        for (key, value) in self.store.scan_prefix(CF_ROWS, &id.to_be_bytes())? {
            match relation.kind {
                ObjectKind::Stream => rows.extend(decode_stored_events(&relation.schema, &key, &value)?),
                _ => rows.push(decode_row(&relation.schema, &value)?),
            }
        }
        rows_to_batch(&relation.schema, &rows)
    }
}

/// Keys journaled by [`Engine::delete_keys`], as values of the table's key column.
pub(crate) fn decode_keys(relation: &segstream_sql::Relation, keys: &[Vec<u8>]) -> Result<Vec<ScalarValue>> {
    let index = relation.schema.index_of(&relation.key).map_err(|e| Error::internal(e.to_string()))?;
    let schema = Arc::new(Schema::new(vec![relation.schema.field(index).clone()]));
    keys.iter()
        .map(|key| {
            decode_row(&schema, key)?.pop().ok_or_else(|| Error::storage("a journaled DELETE key is empty"))
        })
        .collect()
}

/// `name` from an object name; qualified names are refused (one namespace).
fn single_name(object: &ObjectName) -> Result<Name> {
    let parts: Vec<_> = object.0.iter().filter_map(|p| p.as_ident()).collect();
    match parts.as_slice() {
        [ident] => Ok(Name { value: normalize(ident), position: None }),
        _ => Err(Error::invalid_input(format!("`{object}`: names are not qualified; write the name alone"))),
    }
}
