//! The membership sink: turns a segment's weighted rows into members and changes.
//!
//! Per member key it keeps the key's total weight and its row (key and attributes), as
//! typed state in memory (a `StateTable`, checkpointed to the `members` family like an
//! operator's state); readers outside a step (lookups, queries, a child segment's
//! backfill) see it through [`MembershipSink::member`] and [`MembershipSink::members`].
//! Within a step all deltas of a key are summed first, so flips that cancel inside one
//! step never reach the change log. Then:
//!
//! ```text
//!   weight 0 -> positive            entered
//!   positive -> 0                   exited
//!   positive -> positive, new row   updated (attributes changed)
//! ```

use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use segstream_state::codec::{decode_row, encode_key, encode_row, row_values, ByteReader, ByteWriter};
use segstream_state::{KeyHash, CF_MEMBERS};
use segstream_types::{DeltaBatch, Result};

use crate::context::StepContext;
use crate::state_table::{CheckpointedState, Page, StateTable, TableValue};

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
    /// The members by key (`log id | encoded member key`), held in memory as typed
    /// values and written to the store at checkpoints, like an operator's state.
    members: StateTable<Member>,
}

/// Distinct rows with their summed weights.
type WeightedRows = Vec<(Vec<ScalarValue>, i64)>;

/// A member as held: its total weight (> 0 for a member) and its row.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub weight: i64,
    pub row: Vec<ScalarValue>,
}

impl TableValue for Member {
    /// The stored layout: the weight, then the row (`codec::encode_row`).
    fn encode(&self) -> Result<Vec<u8>> {
        let mut w = ByteWriter::default();
        w.i64(self.weight).bytes(&encode_row(&self.row)?);
        Ok(w.0)
    }

    fn heap_bytes(&self) -> usize {
        self.row.iter().map(ScalarValue::size).sum()
    }
}

impl MembershipSink {
    pub fn new(schema: SchemaRef, log_id: u64) -> Self {
        let prefix = log_id.to_be_bytes().to_vec();
        let members = StateTable::new(CF_MEMBERS, prefix.clone());
        Self { schema, prefix, members }
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
        drop(slot);
        let mut members = self.members.open(cx)?;
        let key_refs: Vec<&[u8]> = keys.iter().map(|(k, _)| k.as_slice()).collect();
        members.load(cx, &key_refs, |bytes| self.decode(bytes))?;
        drop(key_refs);
        let mut changes = Vec::new();
        for (key, mut rows) in keys {
            // The member changes in place (one look-up; the undo log keeps what it was).
            let change = members.update(cx, &key, |slot| {
                if let Some(old) = slot.as_ref() {
                    match rows.iter_mut().find(|(r, _)| *r == old.row) {
                        Some((_, w)) => *w += old.weight,
                        None => rows.push((old.row.clone(), old.weight)),
                    }
                }
                let weight: i64 = rows.iter().map(|(_, w)| w).sum();
                // The member's row: the one with the largest positive weight (with
                // attributes, planning guarantees there is one).
                let row = rows.iter().filter(|(_, w)| *w > 0).max_by_key(|(_, w)| *w).map(|(r, _)| r.clone());
                let was = slot.as_ref().filter(|m| m.weight > 0);
                let change = match (was, weight > 0) {
                    (None, true) => {
                        Some(MemberChange { kind: ChangeKind::Entered, old: None, new: row.clone() })
                    }
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
                // Deltas that cancelled within the step leave the member as it was.
                if slot
                    .as_ref()
                    .is_some_and(|m| m.weight == weight && row.as_ref().is_none_or(|r| *r == m.row))
                {
                    return Ok(change);
                }
                let absent = slot.is_none();
                match (weight, row.or_else(|| slot.take().map(|m| m.row))) {
                    // Absent before and after the step: nothing to delete.
                    (0, _) | (_, None) if absent => {}
                    (0, _) | (_, None) => *slot = None,
                    (weight, Some(row)) => *slot = Some(Member { weight, row }),
                }
                Ok(change)
            })?;
            changes.extend(change);
        }
        Ok(changes)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Member> {
        let mut r = ByteReader::new(bytes);
        let weight = r.i64()?;
        let row = decode_row(&self.schema, r.bytes()?)?;
        Ok(Member { weight, row })
    }

    /// The member held under `member_key` (encoded as `codec::encode_key`), if any, as a
    /// reader outside a step sees it (a member of weight 0 is none).
    pub fn member(&self, cx: &StepContext, member_key: &[u8]) -> Result<Option<Member>> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(member_key);
        Ok(self.members.read(cx, &key, |b| self.decode(b))?.filter(|m| m.weight > 0))
    }

    /// The member whose key, as text, is `key` (cast to the segment's key type; a text
    /// that is no key of that type is no member), as [`MembershipSink::member`] sees it.
    pub fn member_by_text(&self, cx: &StepContext, key: &str) -> Result<Option<Member>> {
        let text = ScalarValue::Utf8(Some(key.to_string()));
        let member_key = match self.schema.field(0).data_type() {
            DataType::Utf8 => text,
            other => match text.cast_to(other) {
                Ok(v) if !v.is_null() => v,
                _ => return Ok(None),
            },
        };
        let mut k = Vec::new();
        encode_key(&member_key, &mut k)?;
        self.member(cx, &k)
    }

    /// A page of members in key order, from the stored position `from` (a key after the
    /// log id; `None`: the first), and where the next page starts (see
    /// [`StateTable::read_page`]; positions are returned without the log id).
    pub fn members_page(&self, cx: &StepContext, from: Option<&[u8]>, limit: usize) -> Result<Page<Member>> {
        let mut start = self.prefix.clone();
        start.extend_from_slice(from.unwrap_or_default());
        let (page, next) = self.members.read_page(cx, &start, &self.prefix, limit, |b| self.decode(b))?;
        let n = self.prefix.len();
        let members =
            page.into_iter().filter(|(_, m)| m.weight > 0).map(|(k, m)| (k[n..].to_vec(), m)).collect();
        Ok((members, next.map(|k| k[n..].to_vec())))
    }

    /// Every current member's row, in key order.
    pub fn members(&self, cx: &StepContext) -> Result<Vec<Vec<ScalarValue>>> {
        let all = self.members.read_prefix(cx, &self.prefix, |b| self.decode(b))?;
        Ok(all.into_iter().filter(|(_, m)| m.weight > 0).map(|(_, m)| m.row).collect())
    }

    /// The members, for checkpoints and the state budget.
    pub fn state(&self) -> &dyn CheckpointedState {
        &self.members
    }

    /// The segment's output schema: key first, then attributes.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}
