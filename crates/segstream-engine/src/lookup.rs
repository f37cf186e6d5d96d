//! Reads for services: pages of a segment's change log and of its members, one member
//! by key, the count. The change log is read from RocksDB in pages, so a slow
//! subscriber costs a bounded amount of memory; members are read through their sink
//! (what it holds in memory over the last checkpoint), also in pages.

use segstream_ops::membership::MembershipSink;
use segstream_ops::StepContext;
use segstream_types::{Error, Result};

use crate::change_log::{attributes_json, key_text, log_key, ChangeLog};
use crate::{ChangeRecord, Engine};

/// A member as services see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub key: String,
    /// The member's attributes as a JSON object (`{}` for a segment without any).
    pub attributes: String,
}

impl Engine {
    pub(crate) fn log_id(&self, segment: &str) -> Result<u64> {
        self.store
            .meta_u64(&log_key(segment))?
            .ok_or_else(|| Error::catalog(format!("no segment is named `{segment}`")))
    }

    /// At most `limit` of a segment's changes with `seq >= from`, in order.
    pub fn changes_page(&self, segment: &str, from: u64, limit: usize) -> Result<Vec<ChangeRecord>> {
        self.change_log_reader(segment)?.page(from, limit)
    }

    /// A reader of one segment's change log that works without the engine: the log is
    /// append-only and RocksDB reads are thread-safe, so a subscriber need not wait behind
    /// the steps that hold the engine.
    pub fn change_log_reader(&self, segment: &str) -> Result<ChangeLogReader> {
        Ok(ChangeLogReader {
            store: self.store.clone(),
            segment: segment.to_string(),
            log_id: self.log_id(segment)?,
        })
    }

    /// The sequence number of a segment's last change (0 before any).
    pub fn last_seq(&self, segment: &str) -> Result<u64> {
        ChangeLog::new(self.log_id(segment)?).last_seq(&self.store)
    }

    /// The segment names, in name order.
    pub fn segment_names(&self) -> Vec<String> {
        self.dataflows.keys().cloned().collect()
    }

    fn sink_of(&self, segment: &str) -> Result<&MembershipSink> {
        self.dataflows
            .get(segment)
            .ok_or_else(|| Error::catalog(format!("no segment is named `{segment}`")))?
            .sink()
    }

    /// The member with this key now, if there is one.
    pub fn member(&self, segment: &str, key: &str) -> Result<Option<MemberRecord>> {
        let sink = self.sink_of(segment)?;
        let cx = StepContext::new(&self.store, self.clock.now());
        Ok(sink.member_by_text(&cx, key)?.map(|m| MemberRecord {
            key: key_text(&m.row[0]),
            attributes: attributes_json(sink.schema(), Some(&m.row)),
        }))
    }

    /// At most `limit` members in key order, after the member whose stored position is
    /// `after` (a page token from the previous page; `None` for the first page). Returns
    /// the members and the token of the next page, if there is one.
    pub fn members_page(
        &self,
        segment: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<MemberRecord>, Option<Vec<u8>>)> {
        let sink = self.sink_of(segment)?;
        let cx = StepContext::new(&self.store, self.clock.now());
        let limit = limit.max(1);
        let mut members = Vec::new();
        // The stored position of the last member returned: the next page's token.
        let mut last_returned: Option<Vec<u8>> = None;
        let mut from = after.map(|a| {
            let mut from = a.to_vec();
            from.push(0); // the smallest key after `after`
            from
        });
        loop {
            // Entries of weight 0 are not members, so a page may take several reads.
            let (page, next) = sink.members_page(&cx, from.as_deref(), 256)?;
            for (position, member) in page {
                if members.len() == limit {
                    // One more member exists: the page ends with the last one returned.
                    return Ok((members, last_returned));
                }
                members.push(MemberRecord {
                    key: key_text(&member.row[0]),
                    attributes: attributes_json(sink.schema(), Some(&member.row)),
                });
                last_returned = Some(position);
            }
            match next {
                Some(next) => from = Some(next),
                None => return Ok((members, None)),
            }
        }
    }

    /// How many members a segment has now.
    pub fn member_count(&self, segment: &str) -> Result<u64> {
        let sink = self.sink_of(segment)?;
        let cx = StepContext::new(&self.store, self.clock.now());
        Ok(sink.members(&cx)?.len() as u64)
    }
}

/// One segment's change log, read without the engine (see [`Engine::change_log_reader`]).
#[derive(Clone)]
pub struct ChangeLogReader {
    store: segstream_state::Store,
    segment: String,
    log_id: u64,
}

impl ChangeLogReader {
    /// At most `limit` changes with sequence numbers from `from` on.
    pub fn page(&self, from: u64, limit: usize) -> Result<Vec<ChangeRecord>> {
        ChangeLog::new(self.log_id).page(&self.store, &self.segment, from, limit)
    }

    /// Whether the segment still exists with this log (not dropped, not dropped and
    /// created again).
    pub fn is_current(&self, engine: &Engine) -> bool {
        engine.log_id(&self.segment).is_ok_and(|id| id == self.log_id)
    }
}
