//! What the journal holds: one record per step, the step's input (enough to run it again)
//! and a digest of the changes it logged (to check that running it again logs them
//! exactly).
//!
//! A record is the input *as the step saw it*, never something to evaluate again: an
//! `INSERT ... SELECT` is journaled as the rows its query gave, a `DELETE` as the keys
//! its condition matched, an ingest as its validated rows with the idempotency key's
//! stored report, a wall-clock catch-up as the instant it moved to. Replay is then a
//! pure function of the checkpointed state and the records; nothing in it reads the
//! system clock or runs a query whose row order could differ.
//!
//! Layout: `version u8 | clock i64 | changes u64 | digest u32 | kind u8 | fields`, with
//! the integers and byte strings of `segstream_state::codec::ByteWriter`.

use segstream_state::codec::{ByteReader, ByteWriter, RowBlock};
use segstream_types::{Error, Result};

const VERSION: u8 = 1;

/// The input of one step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JournalInput {
    /// Rows written into a stream or table (ingest, INSERT): each encoded with
    /// `codec::encode_row` in the relation's schema; `marker` holds the `meta` entries
    /// written with them (an ingest's idempotency key and report).
    Rows { relation: String, rows: RowBlock, keep_existing: bool, marker: Vec<(Vec<u8>, Vec<u8>)> },
    /// Table rows deleted by key (`DELETE`): each key encoded as a one-value row.
    DeleteKeys { relation: String, keys: Vec<Vec<u8>> },
    /// A definition: `CREATE STREAM | TABLE | SEGMENT`, `DROP`.
    Definition { text: String },
    /// The clock moved to `to`, firing what was due.
    Advance { to: i64 },
    /// `FORGET KEY`.
    Forget { key: String, only: Vec<String> },
    /// Idempotency keys older than the window dropped.
    ExpireKeys { window_nanos: i64 },
    /// Change logs trimmed to a retention.
    TrimChangeLogs { max_age_nanos: Option<i64>, max_changes: Option<u64> },
    /// Stored events past their stream's retention dropped.
    DropExpiredEvents,
}

/// What a step logged: how many change-log entries it wrote, and a CRC-32 over their
/// keys and values in key order. Replay compares its own with the journaled one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ChangeDigest {
    pub changes: u64,
    pub crc: u32,
}

impl ChangeDigest {
    /// The digest of a step's change-log writes, given in key order.
    pub(crate) fn of<'a>(writes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> Self {
        let mut hasher = crc32fast::Hasher::new();
        let mut changes = 0;
        for (key, value) in writes {
            changes += 1;
            hasher.update(&(key.len() as u32).to_le_bytes());
            hasher.update(key);
            match value {
                Some(value) => {
                    hasher.update(&(value.len() as u32).to_le_bytes());
                    hasher.update(value);
                }
                None => hasher.update(&u32::MAX.to_le_bytes()),
            }
        }
        Self { changes, crc: hasher.finalize() }
    }
}

impl std::fmt::Display for ChangeDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} change-log writes (crc {:08x})", self.changes, self.crc)
    }
}

/// One journal record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JournalRecord {
    /// The engine's clock when the step began (its `NOW()` for everything but a clock
    /// advance, which starts from it).
    pub clock: i64,
    pub digest: ChangeDigest,
    pub input: JournalInput,
}

const ROWS: u8 = 1;
const DELETE_KEYS: u8 = 2;
const DEFINITION: u8 = 3;
const ADVANCE: u8 = 4;
const FORGET: u8 = 5;
const EXPIRE_KEYS: u8 = 6;
const TRIM_CHANGE_LOGS: u8 = 7;
const DROP_EXPIRED_EVENTS: u8 = 8;

fn optional(w: &mut ByteWriter, value: Option<i64>) {
    match value {
        Some(v) => w.u8(1).i64(v),
        None => w.u8(0),
    };
}

fn read_optional(r: &mut ByteReader) -> Result<Option<i64>> {
    Ok(match r.u8()? {
        0 => None,
        _ => Some(r.i64()?),
    })
}

fn text(r: &mut ByteReader) -> Result<String> {
    String::from_utf8(r.bytes()?.to_vec()).map_err(|_| damaged("a name is not UTF-8"))
}

fn damaged(why: &str) -> Error {
    Error::storage(format!("a journal record is damaged: {why}"))
}

fn count(r: &mut ByteReader) -> Result<usize> {
    usize::try_from(r.i64()?).map_err(|_| damaged("a negative count"))
}

impl JournalRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Sized up front: an ingest's record is mostly its rows, copied once.
        let rows = match &self.input {
            JournalInput::Rows { rows, marker, .. } => {
                rows.as_bytes().len() + marker.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
            }
            _ => 0,
        };
        let mut w = ByteWriter(Vec::with_capacity(rows + 128));
        w.u8(VERSION).i64(self.clock).i64(self.digest.changes as i64).i64(i64::from(self.digest.crc));
        match &self.input {
            JournalInput::Rows { relation, rows, keep_existing, marker } => {
                w.u8(ROWS).bytes(relation.as_bytes()).u8(u8::from(*keep_existing));
                // The block's own layout is the row count, then each row length-prefixed.
                w.0.extend_from_slice(rows.as_bytes());
                w.i64(marker.len() as i64);
                for (key, value) in marker {
                    w.bytes(key).bytes(value);
                }
            }
            JournalInput::DeleteKeys { relation, keys } => {
                w.u8(DELETE_KEYS).bytes(relation.as_bytes()).i64(keys.len() as i64);
                for key in keys {
                    w.bytes(key);
                }
            }
            JournalInput::Definition { text } => {
                w.u8(DEFINITION).bytes(text.as_bytes());
            }
            JournalInput::Advance { to } => {
                w.u8(ADVANCE).i64(*to);
            }
            JournalInput::Forget { key, only } => {
                w.u8(FORGET).bytes(key.as_bytes()).i64(only.len() as i64);
                for name in only {
                    w.bytes(name.as_bytes());
                }
            }
            JournalInput::ExpireKeys { window_nanos } => {
                w.u8(EXPIRE_KEYS).i64(*window_nanos);
            }
            JournalInput::TrimChangeLogs { max_age_nanos, max_changes } => {
                w.u8(TRIM_CHANGE_LOGS);
                optional(&mut w, *max_age_nanos);
                optional(&mut w, max_changes.map(|m| m as i64));
            }
            JournalInput::DropExpiredEvents => {
                w.u8(DROP_EXPIRED_EVENTS);
            }
        }
        w.0
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = ByteReader::new(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(Error::storage(format!(
                "a journal record has version {version}; this segstream reads version {VERSION} \
                 (open the data directory with the version that wrote it, and shut it down cleanly)"
            )));
        }
        let clock = r.i64()?;
        let changes = r.i64()? as u64;
        let crc = u32::try_from(r.i64()?).map_err(|_| damaged("a digest out of range"))?;
        let input = match r.u8()? {
            ROWS => {
                let relation = text(&mut r)?;
                let keep_existing = r.u8()? != 0;
                let rows = RowBlock::read(&mut r).map_err(|_| damaged("its rows are cut short"))?;
                let m = count(&mut r)?;
                let mut marker = Vec::with_capacity(m.min(16));
                for _ in 0..m {
                    marker.push((r.bytes()?.to_vec(), r.bytes()?.to_vec()));
                }
                JournalInput::Rows { relation, rows, keep_existing, marker }
            }
            DELETE_KEYS => {
                let relation = text(&mut r)?;
                let n = count(&mut r)?;
                let mut keys = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    keys.push(r.bytes()?.to_vec());
                }
                JournalInput::DeleteKeys { relation, keys }
            }
            DEFINITION => JournalInput::Definition { text: text(&mut r)? },
            ADVANCE => JournalInput::Advance { to: r.i64()? },
            FORGET => {
                let key = text(&mut r)?;
                let n = count(&mut r)?;
                let only = (0..n).map(|_| text(&mut r)).collect::<Result<_>>()?;
                JournalInput::Forget { key, only }
            }
            EXPIRE_KEYS => JournalInput::ExpireKeys { window_nanos: r.i64()? },
            TRIM_CHANGE_LOGS => JournalInput::TrimChangeLogs {
                max_age_nanos: read_optional(&mut r)?,
                max_changes: read_optional(&mut r)?.map(|m| m as u64),
            },
            DROP_EXPIRED_EVENTS => JournalInput::DropExpiredEvents,
            other => return Err(damaged(&format!("unknown kind {other}"))),
        };
        if !r.is_done() {
            return Err(damaged("bytes after its end"));
        }
        Ok(Self { clock, digest: ChangeDigest { changes, crc }, input })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of record reads back as written, and a record cut short or of an
    /// unknown kind is refused rather than misread.
    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let digest = ChangeDigest { changes: 3, crc: 0xdead_beef };
        let inputs = vec![
            JournalInput::Rows {
                relation: "events".into(),
                rows: RowBlock::from_rows([&[1u8, 2, 3][..], &[]].into_iter()),
                keep_existing: true,
                marker: vec![(b"ingest_key/a".to_vec(), vec![9])],
            },
            JournalInput::DeleteKeys { relation: "profiles".into(), keys: vec![vec![7]] },
            JournalInput::Definition { text: "CREATE STREAM s (k TEXT, ts TIMESTAMP)".into() },
            JournalInput::Advance { to: -5 },
            JournalInput::Forget { key: "u1".into(), only: vec!["events".into(), "profiles".into()] },
            JournalInput::ExpireKeys { window_nanos: 86_400_000_000_000 },
            JournalInput::TrimChangeLogs { max_age_nanos: None, max_changes: Some(10) },
            JournalInput::TrimChangeLogs { max_age_nanos: Some(1), max_changes: None },
            JournalInput::DropExpiredEvents,
        ];
        for input in inputs {
            let record = JournalRecord { clock: 42, digest, input };
            let bytes = record.encode();
            assert_eq!(JournalRecord::decode(&bytes).expect("decodes"), record);
            assert!(JournalRecord::decode(&bytes[..bytes.len() - 1]).is_err(), "cut short: {record:?}");
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(JournalRecord::decode(&longer).is_err(), "trailing bytes: {record:?}");
        }
        let mut unknown = JournalRecord { clock: 0, digest, input: JournalInput::DropExpiredEvents }.encode();
        *unknown.last_mut().expect("a kind byte") = 99;
        let error = JournalRecord::decode(&unknown).expect_err("unknown kind").to_string();
        assert!(error.contains("unknown kind 99"), "{error}");
    }

    /// The digest sees a change's key, its value and a deletion, in order.
    #[test]
    fn the_digest_tells_different_change_logs_apart() {
        let a = ChangeDigest::of([(&b"k1"[..], Some(&b"v"[..]))].into_iter());
        let b = ChangeDigest::of([(&b"k1"[..], Some(&b"w"[..]))].into_iter());
        let c = ChangeDigest::of([(&b"k1"[..], None)].into_iter());
        let d = ChangeDigest::of([(&b"k"[..], Some(&b"1v"[..]))].into_iter());
        assert_eq!(a.changes, 1);
        assert!(a != b && a != c && b != c && a != d);
        assert_eq!(ChangeDigest::of(std::iter::empty()).changes, 0);
    }
}
