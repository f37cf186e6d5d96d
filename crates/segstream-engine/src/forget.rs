//! `FORGET KEY 'u123'`: erasing one person (a data-protection request).
//!
//! One step, one write batch:
//! 1. every stored event whose stream key is the key, and every table row whose primary
//!    key is, is deleted and retracted (weight -1) through the segments, the same path a
//!    `DELETE` takes: operator state, timers and memberships derived from those rows go
//!    exactly as if the rows had never been ingested;
//! 2. the key's exits are logged with the reason `erased` (the erase markers);
//! 3. every earlier change record about the key, in every segment's log, is rewritten as
//!    `redacted`: same sequence number (subscribers see no gap), no key, no attributes.
//!
//! Afterwards nothing stored names the key but the erase markers, which carry it so that
//! subscribers know whom to erase downstream. Events for the key that arrive later are
//! new data. RocksDB keeps the old bytes in its files until compaction rewrites them.

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use segstream_sql::ast::{Name, ObjectKind};
use segstream_state::codec::{decode_row, encode_key, encode_row, rows_to_batch, RowBlock};
use segstream_state::CF_ROWS;
use segstream_types::{DeltaBatch, Error, Result};

use crate::change_log::{key_text, ChangeLog};
use crate::engine::Engine;
use crate::journal_record::JournalInput;
use crate::output::Output;
use crate::rows::decode_stored_events;
use crate::step::Step;

/// What one `FORGET KEY` erased.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForgetReport {
    pub events: usize,
    pub table_rows: usize,
    /// Segments the key was a member of, and left (with an `erased` exit).
    pub exited: Vec<String>,
    /// Earlier change records about the key, now `redacted`.
    pub redacted: usize,
    /// Segments the key is still a member of through other keys' rows (e.g. a segment
    /// keyed by a column that is not the stream's key).
    pub still_member: Vec<String>,
}

impl Engine {
    /// Erases everything stored about `key` (see the module documentation), in every
    /// stream and table, or with `only` non-empty, in those named.
    pub fn forget_key(&mut self, key: &str, only: &[Name]) -> Result<ForgetReport> {
        for name in only {
            let relation = self.relation(name)?;
            if relation.kind == ObjectKind::Segment {
                return Err(Error::invalid_input(format!(
                    "`{name}` is a segment: it is computed from what it reads, and forgets the key when they do; \
                     name streams and tables after IN"
                ))
                .at(name.position));
            }
        }
        self.ready_to_write()?;
        self.catch_up_with_wall_clock()?;
        let report = self.forget_key_now(key, only)?;
        // Nothing may keep the key's data once this returns: the checkpoint writes the
        // erasure to RocksDB and deletes the journal files that held the key's inputs
        // (this step's own record included).
        self.checkpoint()?;
        Ok(report)
    }

    /// The step of [`Engine::forget_key`], at the engine's instant.
    pub(crate) fn forget_key_now(&mut self, key: &str, only: &[Name]) -> Result<ForgetReport> {
        let before = self.memberships_of(key)?;
        let input = JournalInput::Forget {
            key: key.to_string(),
            only: only.iter().map(|n| n.value.clone()).collect(),
        };
        let mut step = Step::new(&self.store, self.clock.now(), Some(input));
        let cx = &mut step.cx;
        let mut report = ForgetReport::default();
        let mut relations = HashMap::new();
        let chosen = |name: &str| only.is_empty() || only.iter().any(|n| n.value == name);
        for relation in self.catalog.relations().filter(|r| r.kind != ObjectKind::Segment && chosen(&r.name))
        {
            let key_index =
                relation.schema.index_of(&relation.key).map_err(|e| Error::internal(e.to_string()))?;
            let Some(value) = typed_key(key, relation.schema.field(key_index).data_type()) else { continue };
            let id = self.id_of(&relation.name)?.to_be_bytes();
            let mut erased = Vec::new();
            if relation.kind == ObjectKind::Stream {
                // Events are kept in event-time order, not by key: read them all. A block
                // that held the key's events is written again without them.
                for (stored, bytes) in self.store.scan_prefix(CF_ROWS, &id)? {
                    let events = decode_stored_events(&relation.schema, &stored, &bytes)?;
                    let (theirs, kept): (Vec<_>, Vec<_>) =
                        events.into_iter().partition(|row| row[key_index] == value);
                    if theirs.is_empty() {
                        continue;
                    }
                    if kept.is_empty() {
                        cx.delete(CF_ROWS, stored);
                    } else {
                        let encoded = kept.iter().map(|row| encode_row(row)).collect::<Result<Vec<_>>>()?;
                        let block = RowBlock::from_rows(encoded.iter().map(Vec::as_slice));
                        cx.put(CF_ROWS, stored, block.into_bytes());
                    }
                    erased.extend(theirs);
                }
                report.events += erased.len();
            } else {
                let mut stored = id.to_vec();
                encode_key(&value, &mut stored)?;
                if let Some(bytes) = cx.get(CF_ROWS, &stored)? {
                    erased.push(decode_row(&relation.schema, &bytes)?);
                    cx.delete(CF_ROWS, stored);
                }
                report.table_rows += erased.len();
            }
            if !erased.is_empty() {
                let weights = vec![-1; erased.len()];
                let delta = DeltaBatch::new(rows_to_batch(&relation.schema, &erased)?, weights)?;
                relations.insert(relation.name.clone(), delta);
            }
        }
        self.propagate(relations, &HashMap::new(), cx, Some(key))?;
        // Redact what was logged before this step (this step's erase markers are in
        // `cx`, not yet in the store, so they are not seen here), except in a segment the
        // key is still a member of through other keys' rows: there its history is what a
        // subscriber replays to know it is a member.
        for dataflow in self.dataflows.values() {
            if self.is_member_in(cx, dataflow, key)? {
                report.still_member.push(dataflow.name.clone());
                continue;
            }
            report.redacted +=
                ChangeLog::new(dataflow.log_id).redact(&self.store, cx, &dataflow.name, key)?;
        }
        step.stamp_clock();
        self.commit(step)?;
        report.exited = before.into_iter().filter(|s| !report.still_member.contains(s)).collect();
        Ok(report)
    }

    pub(crate) fn forget_key_statement(&mut self, key: &str, only: &[Name]) -> Result<Output> {
        let r = self.forget_key(key, only)?;
        let mut text = format!(
            "FORGET KEY '{key}': {} {}, {} table {}; exited {} {}; {} earlier {} redacted",
            r.events,
            if r.events == 1 { "event" } else { "events" },
            r.table_rows,
            if r.table_rows == 1 { "row" } else { "rows" },
            r.exited.len(),
            if r.exited.len() == 1 { "segment" } else { "segments" },
            r.redacted,
            if r.redacted == 1 { "change" } else { "changes" },
        );
        if !r.still_member.is_empty() {
            text.push_str(&format!(
                "; still a member of {} through other keys' rows",
                r.still_member.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(Output::Done(text))
    }
}

/// The key as a value of a stream's or table's key type; `None` if it is not one
/// (`'abc'` is no BIGINT key), so that relation holds nothing of it.
fn typed_key(key: &str, data_type: &DataType) -> Option<ScalarValue> {
    let text = ScalarValue::Utf8(Some(key.to_string()));
    if data_type == &DataType::Utf8 {
        return Some(text);
    }
    let value = key.parse::<i64>().ok().map(|v| ScalarValue::Int64(Some(v)))?.cast_to(data_type).ok()?;
    // A cast that wrapped or truncated, or another spelling (`+42`, `042`), is another key:
    // the key must read back as written, as the change log shows it.
    (key_text(&value) == key).then_some(value)
}
