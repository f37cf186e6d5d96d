//! Change-log retention: each segment's log keeps its changes for a declared age (by the
//! engine's clock) and up to a declared number, so it does not grow for ever. What is
//! dropped is recorded as the first sequence number still kept; a reader that asks for
//! an older change is told to start again from a snapshot, never silently given a gap.

use std::time::Duration;

use segstream_state::{CF_CHANGES, CF_META};
use segstream_types::{Error, Result};

use crate::change_log::{decode_change, ChangeLog};
use crate::journal_record::JournalInput;
use crate::step::Step;
use crate::Engine;

/// How much of each segment's change log is kept. Unlimited by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeLogRetention {
    /// Changes logged longer ago than this (engine clock) are dropped.
    pub max_age: Option<Duration>,
    /// At most this many of the latest changes are kept per segment.
    pub max_changes: Option<u64>,
}

impl ChangeLogRetention {
    pub fn is_unlimited(&self) -> bool {
        self.max_age.is_none() && self.max_changes.is_none()
    }
}

/// Changes looked at per page while finding the age cut.
const PAGE: usize = 1024;

/// `logstart/<log id>` in `meta`: the first sequence number a trimmed log still holds.
pub(crate) fn first_kept_key(log_id: u64) -> Vec<u8> {
    let mut key = b"logstart/".to_vec();
    key.extend_from_slice(&log_id.to_be_bytes());
    key
}

impl Engine {
    /// The first sequence number still in a segment's change log (1 until something
    /// was dropped; one past the last change when everything was).
    pub fn first_kept_seq(&self, segment: &str) -> Result<u64> {
        let log_id = self.log_id(segment)?;
        self.first_kept_of(log_id)
    }

    fn first_kept_of(&self, log_id: u64) -> Result<u64> {
        match self.store.get(CF_META, &first_kept_key(log_id))? {
            Some(v) => {
                Ok(u64::from_be_bytes(v.try_into().map_err(|_| Error::storage("damaged change-log start"))?))
            }
            None => Ok(1),
        }
    }

    /// Drops the changes `retention` no longer keeps from every segment's log, in one
    /// write batch, and returns how many were dropped. Running it again with nothing
    /// new to drop writes nothing.
    pub fn trim_change_logs(&mut self, retention: &ChangeLogRetention) -> Result<u64> {
        if retention.is_unlimited() {
            return Ok(0);
        }
        self.ready_to_write()?;
        let now = self.clock.now().nanos();
        let input = JournalInput::TrimChangeLogs {
            max_age_nanos: retention.max_age.map(|a| i64::try_from(a.as_nanos()).unwrap_or(i64::MAX)),
            max_changes: retention.max_changes,
        };
        let mut step = Step::new(&self.store, self.clock.now(), Some(input));
        let mut dropped = 0;
        for (name, dataflow) in &self.dataflows {
            let log_id = dataflow.log_id;
            let first = self.first_kept_of(log_id)?;
            let last = self.last_seq(name)?;
            let mut cut = first;
            if let Some(keep) = retention.max_changes {
                cut = cut.max((last + 1).saturating_sub(keep));
            }
            if let Some(age) = retention.max_age {
                let oldest = now.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
                'pages: while cut <= last {
                    let page = self.store.scan_range_limit(
                        CF_CHANGES,
                        &ChangeLog::new(log_id).key(cut),
                        &log_id.to_be_bytes(),
                        PAGE,
                    )?;
                    if page.is_empty() {
                        break;
                    }
                    for (key, value) in &page {
                        let change = decode_change(name, key, value)?;
                        if change.at.nanos() >= oldest {
                            break 'pages;
                        }
                        cut = change.seq + 1;
                    }
                }
            }
            if cut > first {
                step.delete_range(
                    CF_CHANGES,
                    ChangeLog::new(log_id).key(first),
                    ChangeLog::new(log_id).key(cut),
                );
                step.cx.put(CF_META, first_kept_key(log_id), cut.to_be_bytes().to_vec());
                dropped += cut - first;
            }
        }
        if dropped > 0 {
            self.commit(step)?;
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use segstream_types::Timestamp;

    use super::*;
    use crate::{ClockMode, EngineOptions, IngestRows};

    const HOUR: i64 = 3_600_000_000_000;

    fn open(dir: &std::path::Path) -> Engine {
        Engine::open(EngineOptions::new(dir).with_clock(ClockMode::Manual)).expect("opens")
    }

    fn click(engine: &mut Engine, user: &str) {
        let row = serde_json::json!({"user_id": user, "ts": "1970-01-01 00:00:00"});
        engine.ingest("clicks", IngestRows::Json(vec![row])).expect("ingests");
    }

    async fn engine_with_segment(dir: &std::path::Path) -> Engine {
        let mut engine = open(dir);
        engine
            .execute(
                "CREATE STREAM clicks (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL) \
                 WITH (event_time = 'ts', key = 'user_id');
                 CREATE SEGMENT clicked AS SELECT DISTINCT user_id FROM clicks;",
            )
            .await
            .expect("creates");
        engine
    }

    /// By count: only the latest N changes stay; what was dropped is remembered across
    /// a restart, and the kept changes keep their sequence numbers.
    #[tokio::test]
    async fn keeps_the_latest_changes_by_count_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = engine_with_segment(dir.path()).await;
        for user in ["a", "b", "c", "d", "e"] {
            click(&mut engine, user);
        }
        let keep_two = ChangeLogRetention { max_changes: Some(2), ..Default::default() };
        assert_eq!(engine.trim_change_logs(&keep_two).expect("trims"), 3);
        assert_eq!(engine.trim_change_logs(&keep_two).expect("trims"), 0, "nothing new to drop");
        assert_eq!(engine.first_kept_seq("clicked").expect("start"), 4);
        drop(engine);

        let engine = open(dir.path());
        assert_eq!(engine.first_kept_seq("clicked").expect("start"), 4);
        let kept: Vec<(u64, String)> =
            engine.changes_from("clicked", 1).expect("reads").into_iter().map(|c| (c.seq, c.key)).collect();
        assert_eq!(kept, vec![(4, "d".to_string()), (5, "e".to_string())]);
        assert_eq!(engine.member_count("clicked").expect("count"), 5, "members are not the log");
    }

    /// By age: changes logged before `now - max_age` go, the rest stay; when all are
    /// old the log is empty and starts after the last change.
    #[tokio::test]
    async fn drops_changes_older_than_the_age_by_the_engine_clock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = engine_with_segment(dir.path()).await;
        click(&mut engine, "a"); // logged at hour 0
        engine.advance_clock(Timestamp(2 * HOUR)).expect("advances");
        click(&mut engine, "b"); // hour 2
        engine.advance_clock(Timestamp(3 * HOUR)).expect("advances");
        click(&mut engine, "c"); // hour 3

        let ninety_minutes =
            ChangeLogRetention { max_age: Some(Duration::from_secs(90 * 60)), ..Default::default() };
        // At hour 3 the cut is hour 1.5: only a (hour 0) is older.
        assert_eq!(engine.trim_change_logs(&ninety_minutes).expect("trims"), 1);
        assert_eq!(engine.first_kept_seq("clicked").expect("start"), 2);
        let keys: Vec<String> =
            engine.changes_from("clicked", 1).expect("reads").into_iter().map(|c| c.key).collect();
        assert_eq!(keys, vec!["b", "c"]);

        engine.advance_clock(Timestamp(10 * HOUR)).expect("advances");
        assert_eq!(engine.trim_change_logs(&ninety_minutes).expect("trims"), 2);
        assert_eq!(engine.first_kept_seq("clicked").expect("start"), 4, "one past the last change");
        assert!(engine.changes_from("clicked", 1).expect("reads").is_empty());
        click(&mut engine, "d");
        assert_eq!(engine.changes_from("clicked", 1).expect("reads")[0].seq, 4, "numbering goes on");
    }

    /// Dropping a segment removes where its trimmed log starts, with the rest of it.
    #[tokio::test]
    async fn a_dropped_segment_leaves_no_log_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = engine_with_segment(dir.path()).await;
        for user in ["a", "b", "c"] {
            click(&mut engine, user);
        }
        let log_id = engine.log_id("clicked").expect("log id");
        let keep_one = ChangeLogRetention { max_changes: Some(1), ..Default::default() };
        assert_eq!(engine.trim_change_logs(&keep_one).expect("trims"), 2);
        assert!(engine.store.get(CF_META, &first_kept_key(log_id)).expect("reads").is_some());
        engine.execute("DROP SEGMENT clicked").await.expect("drops");
        assert_eq!(engine.store.get(CF_META, &first_kept_key(log_id)).expect("reads"), None);
    }

    #[tokio::test]
    async fn unlimited_retention_drops_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = engine_with_segment(dir.path()).await;
        click(&mut engine, "a");
        assert_eq!(engine.trim_change_logs(&ChangeLogRetention::default()).expect("trims"), 0);
        assert_eq!(engine.first_kept_seq("clicked").expect("start"), 1);
    }
}
