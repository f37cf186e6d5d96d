//! The change log: each segment's numbered record of membership changes (entered,
//! exited, updated, and redacted by `FORGET KEY`), what subscribers replay.
//!
//! | family    | key                          | value                                       |
//! |-----------|------------------------------|---------------------------------------------|
//! | `changes` | log id + seq (both u64 BE)   | kind, at, member key, attributes JSON, reason |
//! | `meta`    | `seq/<log id>`               | the last seq (u64 BE)                       |
//! | `meta`    | `log/<segment>`              | the segment's log id                        |
//!
//! A segment's log id is its first definition's id, so `CREATE OR REPLACE` keeps its
//! log (logging the difference) while its operator state starts again. Sequence numbers
//! start at 1 and have no gaps; a log reads in order because its keys share a prefix and
//! sort by seq. A [`ChangeLog`] is appended to inside a step ([`ChangeLog::append`]),
//! read by pages without the engine ([`ChangeLog::page`], behind
//! `Engine::change_log_reader`), trimmed by its retention (`change_log_retention.rs`) and
//! redacted by `FORGET KEY` ([`ChangeLog::redact`]).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use segstream_ops::{ChangeKind, MemberChange, StepContext};
use segstream_state::codec::ByteWriter;
use segstream_state::{Store, CF_CHANGES, CF_META};
use segstream_types::{Error, Result, Timestamp};

/// `log/<name>`: the id a segment's members and change log are kept under.
pub(crate) fn log_key(name: &str) -> String {
    format!("log/{name}")
}

/// One segment's change log, by its log id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChangeLog {
    pub(crate) log_id: u64,
}

impl ChangeLog {
    pub(crate) fn new(log_id: u64) -> Self {
        Self { log_id }
    }

    /// A change's key: the log id, then the sequence number, both big-endian.
    pub(crate) fn key(&self, seq: u64) -> Vec<u8> {
        let mut key = self.log_id.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// What every key of this log starts with.
    pub(crate) fn prefix(&self) -> [u8; 8] {
        self.log_id.to_be_bytes()
    }

    /// Where `meta` keeps the log's last sequence number.
    pub(crate) fn seq_key(&self) -> Vec<u8> {
        let mut key = b"seq/".to_vec();
        key.extend_from_slice(&self.log_id.to_be_bytes());
        key
    }

    /// The last sequence number (0 before any change), as `value` (the `seq_key` entry)
    /// says.
    fn seq_from(value: Option<Vec<u8>>) -> Result<u64> {
        match value {
            Some(v) => {
                Ok(u64::from_be_bytes(v.try_into().map_err(|_| Error::storage("damaged sequence number"))?))
            }
            None => Ok(0),
        }
    }

    /// The last sequence number in the store (0 before any change).
    pub(crate) fn last_seq(&self, store: &Store) -> Result<u64> {
        Self::seq_from(store.get(CF_META, &self.seq_key())?)
    }

    /// Appends one change record per change, seq = last + 1, each stamped with its
    /// member's instant (in a timer pass over several instants they differ) and logged
    /// in instant order. The exit of the key being erased, if any, carries the reason
    /// `erased`.
    pub(crate) fn append(
        &self,
        schema: &SchemaRef,
        changes: &[MemberChange],
        cx: &mut StepContext,
        erasing: Option<&str>,
    ) -> Result<()> {
        let mut seq = Self::seq_from(cx.get(CF_META, &self.seq_key())?)?;
        let mut stamped = Vec::with_capacity(changes.len());
        for change in changes {
            let row = change
                .new
                .as_ref()
                .or(change.old.as_ref())
                .ok_or_else(|| Error::internal("a change without a row"))?;
            stamped.push((cx.instant_of(&row[0])?, row, change));
        }
        stamped.sort_by_key(|(at, _, _)| *at);
        for (at, row, change) in stamped {
            seq += 1;
            let key = key_text(&row[0]);
            let erased = change.kind == ChangeKind::Exited && erasing == Some(key.as_str());
            let record = encode_change(
                change.kind,
                at,
                &key,
                &attributes_json(schema, change.new.as_ref()),
                if erased { REASON_ERASED } else { "" },
            );
            cx.put(CF_CHANGES, self.key(seq), record);
        }
        cx.put(CF_META, self.seq_key(), seq.to_be_bytes().to_vec());
        Ok(())
    }

    /// At most `limit` changes with sequence numbers from `from` on, in order.
    pub(crate) fn page(
        &self,
        store: &Store,
        segment: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>> {
        store
            .scan_range_limit(CF_CHANGES, &self.key(from), &self.prefix(), limit)?
            .iter()
            .map(|(key, value)| decode_change(segment, key, value))
            .collect()
    }

    /// Replaces every record that names `key` with a redacted one (no key, no
    /// attributes), except earlier erase markers: a subscriber that was away learns from
    /// them whom to erase. Records this step wrote (in `cx`) are not seen. Returns how
    /// many were redacted.
    pub(crate) fn redact(
        &self,
        store: &Store,
        cx: &mut StepContext,
        segment: &str,
        key: &str,
    ) -> Result<usize> {
        let mut redacted = 0;
        for (stored, bytes) in store.scan_prefix(CF_CHANGES, &self.prefix())? {
            let record = decode_change(segment, &stored, &bytes)?;
            let marker = record.kind == ChangeKind::Exited && record.reason == REASON_ERASED;
            if record.key == key && !marker {
                cx.put(
                    CF_CHANGES,
                    stored,
                    encode_change(ChangeKind::Redacted, record.at, "", "{}", REASON_ERASED),
                );
                redacted += 1;
            }
        }
        Ok(redacted)
    }
}

/// The reason of an exit caused by `FORGET KEY`, and of the records it redacted.
pub(crate) const REASON_ERASED: &str = "erased";

/// One change record's value: kind, instant, member key, attributes, reason.
pub(crate) fn encode_change(
    kind: ChangeKind,
    at: Timestamp,
    key: &str,
    attributes: &str,
    reason: &str,
) -> Vec<u8> {
    let mut value = ByteWriter::default();
    value
        .u8(kind.code())
        .i64(at.nanos())
        .bytes(key.as_bytes())
        .bytes(attributes.as_bytes())
        .bytes(reason.as_bytes());
    value.0
}

pub(crate) fn decode_change(segment: &str, key: &[u8], value: &[u8]) -> Result<ChangeRecord> {
    let corrupt = || Error::storage("a change record is damaged");
    let seq = u64::from_be_bytes(key.get(8..16).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
    let mut r = segstream_state::codec::ByteReader::new(value);
    let kind = ChangeKind::from_code(r.u8()?).ok_or_else(corrupt)?;
    let at = Timestamp(r.i64()?);
    let member = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| corrupt())?;
    let attributes = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| corrupt())?;
    let reason = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| corrupt())?;
    Ok(ChangeRecord { segment: segment.to_string(), seq, key: member, kind, at, attributes, reason })
}

/// One record of a segment's change log.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    pub segment: String,
    pub seq: u64,
    pub key: String,
    pub kind: ChangeKind,
    pub at: Timestamp,
    /// The attributes after the change, as a JSON object (`{}` without attributes or
    /// after an exit).
    pub attributes: String,
    pub reason: String,
}

/// A member key as text (what the change log and subscribers see).
pub(crate) fn key_text(value: &ScalarValue) -> String {
    match value {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            s.clone()
        }
        other => other.to_string(),
    }
}

/// `{"frequency":3,"monetary":350.5}`: a member's attributes as a JSON object.
pub(crate) fn attributes_json(schema: &SchemaRef, row: Option<&Vec<ScalarValue>>) -> String {
    let Some(row) = row else { return "{}".into() };
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .zip(row)
        .skip(1)
        .map(|(f, v)| format!("{}:{}", json_string(f.name()), json_value(v)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn json_value(value: &ScalarValue) -> String {
    if value.is_null() {
        return "null".into();
    }
    match value {
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Int16(Some(v)) => v.to_string(),
        ScalarValue::Int32(Some(v)) => v.to_string(),
        ScalarValue::Int64(Some(v)) => v.to_string(),
        ScalarValue::Float32(Some(v)) if v.is_finite() => v.to_string(),
        ScalarValue::Float64(Some(v)) if v.is_finite() => v.to_string(),
        ScalarValue::TimestampNanosecond(Some(v), _) => json_string(&Timestamp(*v).to_string()),
        ScalarValue::Utf8(Some(s)) => json_string(s),
        other => json_string(&other.to_string()),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
