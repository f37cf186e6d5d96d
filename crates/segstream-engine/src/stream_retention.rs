//! Stream retention (`CREATE STREAM ... WITH (retention = '90 days')`): an event is
//! part of its stream while `event_time > NOW() - retention`.
//!
//! The rule is applied in three places that must agree, and it is the same comparison
//! in each:
//! - segments read a retained stream through a temporal filter (planned in
//!   `segstream-sql`'s lowering), so an event leaves every segment at exactly
//!   `event_time + retention`, with no new event;
//! - queries, and the batch SQL that segments are judged against, see only the events
//!   still retained at their `NOW()` ([`Engine::stored_rows_at`]);
//! - events past the retention are deleted from disk ([`Engine::drop_expired_events`]).
//!   Stored events are keyed by event time, so that is one range delete per stream.

use datafusion::arrow::array::RecordBatch;
use segstream_sql::ast::ObjectKind;
use segstream_sql::Relation;
use segstream_state::codec::{encode_instant, rows_to_batch};
use segstream_state::CF_ROWS;
use segstream_types::{Result, Timestamp};

use crate::engine::Engine;
use crate::journal_record::JournalInput;
use crate::rows::{decode_stored_events, event_nanos, event_time_index};
use crate::step::Step;

impl Engine {
    /// The rows of a stream or table as a query at `now` sees them: a retained stream's
    /// events with `event_time > now - retention`, everything otherwise.
    pub(crate) fn stored_rows_at(&self, relation: &Relation, now: Timestamp) -> Result<RecordBatch> {
        let Some(first_kept) = first_retained_instant(relation, now) else {
            return self.stored_rows(relation);
        };
        let prefix = self.id_of(&relation.name)?.to_be_bytes();
        let mut start = prefix.to_vec();
        start.extend_from_slice(&encode_instant(first_kept));
        // Blocks are keyed by their newest event: those from `first_kept` on may still
        // hold older events, which are dropped here.
        let time_index = event_time_index(relation)?;
        let mut rows = Vec::new();
        for (key, value) in self.store.scan_range(CF_ROWS, &start, &prefix)? {
            for row in decode_stored_events(&relation.schema, &key, &value)? {
                if event_nanos(&row[time_index])? >= first_kept {
                    rows.push(row);
                }
            }
        }
        rows_to_batch(&relation.schema, &rows)
    }

    /// Deletes the stored events that every retained stream has let go of at the
    /// current clock; returns how many streams had some. Segments are not affected:
    /// their temporal filters keep what they still need (the retention's own timers
    /// hold the rows they retract), so this only frees the disk.
    pub fn drop_expired_events(&mut self) -> Result<usize> {
        self.ready_to_write()?;
        let now = self.now();
        let mut step = Step::new(&self.store, now, Some(JournalInput::DropExpiredEvents));
        let mut streams = 0;
        for relation in self.catalog.list(ObjectKind::Stream) {
            let Some(first_kept) = first_retained_instant(relation, now) else { continue };
            let id = self.id_of(&relation.name)?.to_be_bytes();
            let mut end = id.to_vec();
            end.extend_from_slice(&encode_instant(first_kept));
            // Only write a range tombstone when there is something under it.
            match self.store.first_from(CF_ROWS, &id)? {
                Some((key, _)) if key.starts_with(&id) && key < end => {}
                _ => continue,
            }
            step.delete_range(CF_ROWS, id.to_vec(), end);
            streams += 1;
        }
        if !step.is_empty() {
            self.commit(step)?;
        }
        Ok(streams)
    }
}

/// The earliest event time a retained stream still holds at `now` (`now - retention +
/// 1ns`: kept while `event_time > now - retention`); `None` without a retention.
fn first_retained_instant(relation: &Relation, now: Timestamp) -> Option<i64> {
    let retention = relation.retention.filter(|_| relation.kind == ObjectKind::Stream)?;
    Some(now.nanos().saturating_sub(retention).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use segstream_state::CF_META;

    use super::*;
    use crate::{ClockMode, EngineOptions, Output};

    const DAY: i64 = 86_400_000_000_000;

    fn open(dir: &std::path::Path) -> Engine {
        Engine::open(EngineOptions::new(dir).with_clock(ClockMode::Manual)).expect("opens")
    }

    async fn rows(engine: &mut Engine, sql: &str) -> String {
        match engine.execute(sql).await.expect("runs").pop() {
            Some(Output::Rows { batches, .. }) => {
                datafusion::arrow::util::pretty::pretty_format_batches(&batches).expect("formats").to_string()
            }
            other => panic!("{other:?}"),
        }
    }

    fn stored_keys(engine: &Engine, stream: &str) -> usize {
        let id = engine.id_of(stream).expect("id");
        engine.store.scan_prefix(CF_ROWS, &id.to_be_bytes()).expect("scans").len()
    }

    /// Deleting expired events removes the blocks whose events are all at or before
    /// `now - retention` (each INSERT below is a block of its own), leaves streams
    /// without a retention alone, and writes nothing when nothing expired.
    #[tokio::test]
    async fn expired_events_are_deleted_by_event_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = open(dir.path());
        engine
            .execute(
                "CREATE STREAM kept (user_id TEXT, ts TIMESTAMP) WITH (retention = '1 day');
                 CREATE STREAM all_time (user_id TEXT, ts TIMESTAMP);
                 INSERT INTO kept VALUES ('a', TIMESTAMP '1970-01-01 00:00:00');
                 INSERT INTO kept VALUES ('b', TIMESTAMP '1970-01-02 00:00:00');
                 INSERT INTO kept VALUES ('c', TIMESTAMP '1970-01-01 12:00:00');
                 INSERT INTO kept VALUES ('d', TIMESTAMP '1969-12-31 00:00:00');
                 INSERT INTO all_time VALUES ('a', TIMESTAMP '1970-01-01 00:00:00');",
            )
            .await
            .expect("runs");
        assert_eq!(engine.drop_expired_events().expect("drops"), 1, "d (1969) is past 1 day at 00:00");
        assert_eq!(stored_keys(&engine, "kept"), 3);
        assert_eq!(engine.drop_expired_events().expect("drops"), 0, "nothing more has expired");
        engine.advance_clock(Timestamp(DAY + DAY / 2)).expect("advances");
        // At 1970-01-02 12:00, a (day 1 00:00) and c (day 1 12:00, exactly 1 day old) are past.
        assert_eq!(engine.drop_expired_events().expect("drops"), 1);
        assert_eq!(stored_keys(&engine, "kept"), 1);
        assert_eq!(stored_keys(&engine, "all_time"), 1);
        assert!(rows(&mut engine, "SELECT user_id FROM kept").await.contains("| b "));
    }

    /// A block holding an expired event and a kept one stays on disk until its newest
    /// event expires, but queries see only the kept event.
    #[tokio::test]
    async fn a_block_is_kept_until_its_newest_event_expires_and_read_without_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = open(dir.path());
        engine
            .execute(
                "CREATE STREAM kept (user_id TEXT, ts TIMESTAMP) WITH (retention = '1 day');
                 ADVANCE TIME TO TIMESTAMP '1970-01-03 00:00:00';
                 INSERT INTO kept VALUES ('old', TIMESTAMP '1970-01-01 00:00:00'), ('new', TIMESTAMP '1970-01-02 12:00:00');",
            )
            .await
            .expect("runs");
        assert_eq!(engine.drop_expired_events().expect("drops"), 0, "the block's newest event is kept");
        let seen = rows(&mut engine, "SELECT user_id FROM kept").await;
        assert!(seen.contains("| new ") && !seen.contains("old"), "{seen}");
        engine.advance_clock(Timestamp(3 * DAY + DAY / 2)).expect("advances");
        assert_eq!(engine.drop_expired_events().expect("drops"), 1);
        assert_eq!(stored_keys(&engine, "kept"), 0);
    }

    /// A data directory whose events were keyed by arrival (16-byte keys) is rewritten
    /// to event-time keys when opened, once.
    #[tokio::test]
    async fn events_keyed_by_arrival_are_rewritten_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut engine = open(dir.path());
            engine
                .execute(
                    "CREATE STREAM e (user_id TEXT, ts TIMESTAMP);
                     INSERT INTO e VALUES ('late', TIMESTAMP '1970-01-03 00:00:00'), ('early', TIMESTAMP '1970-01-01 00:00:00');",
                )
                .await
                .expect("runs");
            // Put the rows back as the previous version stored them: one event per key.
            let id = engine.id_of("e").expect("id");
            let schema = std::sync::Arc::clone(&engine.catalog.get("e").expect("stream e").schema);
            let mut batch = engine.store.batch();
            let mut n = 0u64;
            for (key, value) in engine.store.scan_prefix(CF_ROWS, &id.to_be_bytes()).expect("scans") {
                batch.delete(CF_ROWS, &key).expect("deletes");
                for row in decode_stored_events(&schema, &key, &value).expect("decodes") {
                    let mut old = id.to_be_bytes().to_vec();
                    old.extend_from_slice(&n.to_be_bytes());
                    n += 1;
                    let encoded = segstream_state::codec::encode_row(&row).expect("encodes");
                    batch.put(CF_ROWS, &old, &encoded).expect("puts");
                }
            }
            batch.delete(CF_META, b"event_keys").expect("deletes");
            engine.store.write(batch).expect("writes");
        }
        let mut engine = open(dir.path());
        let id = engine.id_of("e").expect("id");
        let keys: Vec<usize> = engine
            .store
            .scan_prefix(CF_ROWS, &id.to_be_bytes())
            .expect("scans")
            .iter()
            .map(|(k, _)| k.len())
            .collect();
        assert_eq!(keys, vec![24, 24]);
        let rows = rows(&mut engine, "SELECT user_id FROM e ORDER BY ts").await;
        assert!(rows.find("early") < rows.find("late"), "{rows}");
    }
}
