//! The membership sink: turns a segment's weighted rows into members and changes.
//!
//! Per member key it keeps the key's total weight and its row (key and attributes).
//! Within a step all deltas of a key are summed first, so flips that cancel inside one
//! step never reach the change log. Then:
//!
//! ```text
//!   weight 0 -> positive            entered
//!   positive -> 0                   exited
//!   positive -> positive, new row   updated (attributes changed)
//! ```

use std::collections::HashMap;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use segstream_state::codec::{decode_row, encode_key, encode_row, row_values, ByteReader, ByteWriter};
use segstream_state::{KeyHash, CF_MEMBERS};
use segstream_types::{DeltaBatch, Result};

use crate::context::StepContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Entered,
    Exited,
    Updated,
    /// A logged change about a key that was erased since (`FORGET KEY`): the record
    /// keeps its sequence number, so the log has no gap, and nothing else.
    Redacted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entered => "entered",
            Self::Exited => "exited",
            Self::Updated => "updated",
            Self::Redacted => "redacted",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Self::Entered => 1,
            Self::Exited => 2,
            Self::Updated => 3,
            Self::Redacted => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Entered,
            2 => Self::Exited,
            3 => Self::Updated,
            4 => Self::Redacted,
            _ => return None,
        })
    }
}

/// One key's change in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberChange {
    pub kind: ChangeKind,
    /// The row before the change (exited, updated).
    pub old: Option<Vec<ScalarValue>>,
    /// The row after the change (entered, updated).
    pub new: Option<Vec<ScalarValue>>,
}

pub struct MembershipSink {
    schema: SchemaRef,
    /// `segment log id`: members live under it, across CREATE OR REPLACE.
    prefix: Vec<u8>,
}

/// Distinct rows with their summed weights.
type WeightedRows = Vec<(Vec<ScalarValue>, i64)>;

/// A member as stored: its total weight and its row.
struct Member {
    weight: i64,
    row: Vec<ScalarValue>,
}

impl MembershipSink {
    pub fn new(schema: SchemaRef, log_id: u64) -> Self {
        Self { schema, prefix: log_id.to_be_bytes().to_vec() }
    }

    pub fn step(&self, input: DeltaBatch, cx: &mut StepContext) -> Result<Vec<MemberChange>> {
        if input.is_empty() {
            return Ok(Vec::new());
        }
        // Per key: the distinct rows and their summed weights, keys in first-seen order.
        let mut keys: Vec<(Vec<u8>, WeightedRows)> = Vec::new();
        let mut slot: HashMap<Vec<u8>, usize, KeyHash> =
            HashMap::with_capacity_and_hasher(input.len(), KeyHash::default());
        let mut key = Vec::with_capacity(self.prefix.len() + 16);
        for i in 0..input.len() {
            let row = row_values(&input.rows, i)?;
            key.clear();
            key.extend_from_slice(&self.prefix);
            encode_key(&row[0], &mut key)?;
            let s = match slot.get(key.as_slice()) {
                Some(&s) => s,
                None => {
                    slot.insert(key.clone(), keys.len());
                    keys.push((key.clone(), Vec::new()));
                    keys.len() - 1
                }
            };
            let rows = &mut keys[s].1;
            match rows.iter_mut().find(|(r, _)| *r == row) {
                Some((_, w)) => *w += input.weights[i],
                None => rows.push((row, input.weights[i])),
            }
        }
        let stored = cx.get_many(CF_MEMBERS, &keys.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())?;
        let mut changes = Vec::new();
        for ((key, mut rows), stored) in keys.into_iter().zip(stored) {
            let absent = stored.is_none();
            let old = stored.map(|b| self.decode(&b)).transpose()?;
            if let Some(old) = &old {
                match rows.iter_mut().find(|(r, _)| *r == old.row) {
                    Some((_, w)) => *w += old.weight,
                    None => rows.push((old.row.clone(), old.weight)),
                }
            }
            let weight: i64 = rows.iter().map(|(_, w)| w).sum();
            // The member's row: the one with the largest positive weight (with
            // attributes, planning guarantees there is one).
            let row = rows.iter().filter(|(_, w)| *w > 0).max_by_key(|(_, w)| *w).map(|(r, _)| r.clone());
            let was = old.as_ref().filter(|m| m.weight > 0);
            let change = match (was, weight > 0) {
                (None, true) => Some(MemberChange { kind: ChangeKind::Entered, old: None, new: row.clone() }),
                (Some(m), false) => {
                    Some(MemberChange { kind: ChangeKind::Exited, old: Some(m.row.clone()), new: None })
                }
                (Some(m), true) if row.as_ref() != Some(&m.row) => Some(MemberChange {
                    kind: ChangeKind::Updated,
                    old: Some(m.row.clone()),
                    new: row.clone(),
                }),
                _ => None,
            };
            changes.extend(change);
            // Deltas that cancelled within the step leave the member as stored.
            if old.as_ref().is_some_and(|m| m.weight == weight && row.as_ref().is_none_or(|r| *r == m.row)) {
                continue;
            }
            match (weight, row.or_else(|| old.map(|m| m.row))) {
                // Absent from the store and from the step: nothing to delete.
                (0, _) | (_, None) if absent => {}
                (0, _) | (_, None) => cx.delete(CF_MEMBERS, key),
                (weight, Some(row)) => {
                    let mut w = ByteWriter::default();
                    w.i64(weight).bytes(&encode_row(&row)?);
                    if absent {
                        cx.put_absent(CF_MEMBERS, key, w.0);
                    } else {
                        cx.put(CF_MEMBERS, key, w.0);
                    }
                }
            }
        }
        Ok(changes)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Member> {
        let mut r = ByteReader::new(bytes);
        let weight = r.i64()?;
        let row = decode_row(&self.schema, r.bytes()?)?;
        Ok(Member { weight, row })
    }

    /// A stored member's weight (> 0 for a member) and row.
    pub fn decode_parts(&self, bytes: &[u8]) -> Result<(i64, Vec<ScalarValue>)> {
        let member = self.decode(bytes)?;
        Ok((member.weight, member.row))
    }

    /// The segment's output schema: key first, then attributes.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// Every current member's row under a segment's log id.
pub fn members(cx: &StepContext, schema: &SchemaRef, log_id: u64) -> Result<Vec<Vec<ScalarValue>>> {
    let sink = MembershipSink::new(schema.clone(), log_id);
    let mut out = Vec::new();
    for (_, value) in cx.scan_prefix(CF_MEMBERS, &log_id.to_be_bytes())? {
        let member = sink.decode(&value)?;
        if member.weight > 0 {
            out.push(member.row);
        }
    }
    Ok(out)
}
