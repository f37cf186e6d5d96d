//! The catalog, the clock and stored rows survive closing and reopening the engine.

use segstream_engine::{ClockMode, Engine, EngineOptions, Output};

use crate::support::{workload_schema, workload_segments};

fn render(outputs: &[Output]) -> String {
    outputs.iter().map(Output::render).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn definitions_clock_and_rows_reload_on_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = EngineOptions::new(dir.path()).with_clock(ClockMode::Manual);
    let probe = "SHOW STREAMS; SHOW TABLES; SHOW SEGMENTS; EXPLAIN SEGMENT winback_now; EXPLAIN SEGMENT lapsed_high_value; \
                 EXPLAIN SEGMENT welcome_offer; SELECT NOW(); SELECT COUNT(*) AS n FROM events; \
                 SELECT * FROM profiles";
    let before = {
        let mut engine = Engine::open(options.clone()).expect("open");
        engine.execute(&workload_schema()).await.expect("schema");
        engine.execute(&workload_segments()).await.expect("segments");
        // Replaced after winback_now was created from it: its definition now has the
        // larger id, and reloading must still plan winback_now after it.
        engine
            .execute(
                "CREATE OR REPLACE SEGMENT lapsed_high_value AS
                 SELECT user_id FROM profiles
                 WHERE lifetime_value > 1000
                   AND user_id NOT IN (SELECT user_id FROM events
                                       WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '30 days')",
            )
            .await
            .expect("replace");
        engine
            .execute(
                "ADVANCE TIME TO TIMESTAMP '2026-05-01 12:00:00';
                 INSERT INTO events VALUES ('e1', 'u1', 'login', NULL, NULL, NULL, TIMESTAMP '2026-05-01 11:59:00');
                 INSERT INTO profiles VALUES ('u1', 'FR', 2000.0, NULL)",
            )
            .await
            .expect("data");
        render(&engine.execute(probe).await.expect("probe"))
    };
    let mut engine = Engine::open(options).expect("reopen");
    let after = render(&engine.execute(probe).await.expect("probe after restart"));
    assert_eq!(before, after);
    assert!(after.contains("lifetime_value > 1000"), "the replaced definition is the one reloaded: {after}");
    assert!(after.contains("2026-05-01T12:00:00"), "{after}");
    let members = engine.execute("SELECT * FROM winback_now").await.expect("members");
    assert_eq!(members[0].row_count(), 1, "u1 is lapsed, high-value and logged in a minute ago");
}

#[tokio::test]
async fn replacing_a_segment_that_others_read_must_keep_them_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine =
        Engine::open(EngineOptions::new(dir.path()).with_clock(ClockMode::Manual)).expect("open");
    engine.execute(&workload_schema()).await.expect("schema");
    engine
        .execute(
            "CREATE SEGMENT spenders AS SELECT user_id, SUM(amount) AS total FROM events GROUP BY user_id;
             CREATE SEGMENT big_spenders AS SELECT user_id FROM spenders WHERE total > 1000",
        )
        .await
        .expect("segments");
    let e = engine
        .execute("CREATE OR REPLACE SEGMENT spenders AS SELECT DISTINCT user_id FROM events")
        .await
        .expect_err("big_spenders reads `total`");
    assert!(e.to_string().contains("segment `big_spenders` reads it and would no longer plan"), "{e}");
    let text = render(&engine.execute("SHOW SEGMENTS").await.expect("show"));
    assert!(text.contains("total"), "the old definition stays: {text}");
}

/// A stream stored before column PRIMARY KEYs on streams were refused still loads (and
/// the segments reading it with it); only a new CREATE STREAM is refused.
#[tokio::test]
async fn a_stored_stream_with_a_column_primary_key_still_loads() {
    use segstream_state::{Store, CF_CATALOG};

    let dir = tempfile::tempdir().expect("tempdir");
    let options = EngineOptions::new(dir.path()).with_clock(ClockMode::Manual);
    {
        let mut engine = Engine::open(options.clone()).expect("open");
        engine
            .execute(
                "CREATE STREAM clicks (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL);
                 CREATE SEGMENT clicked AS SELECT DISTINCT user_id FROM clicks;
                 INSERT INTO clicks VALUES ('a', TIMESTAMP '1970-01-01 00:00:00');",
            )
            .await
            .expect("setup");
    }
    // Written as an older version accepted it.
    {
        let store = Store::open(dir.path()).expect("store");
        let (id, text) = store
            .catalog_entries()
            .expect("catalog")
            .into_iter()
            .find(|(_, text)| text.starts_with("CREATE STREAM clicks"))
            .expect("the stream's definition");
        let old = text.replace("user_id TEXT NOT NULL", "user_id TEXT PRIMARY KEY");
        assert_ne!(old, text);
        let mut batch = store.batch();
        batch.put(CF_CATALOG, &id.to_be_bytes(), old.as_bytes()).expect("put");
        store.write(batch).expect("write");
    }
    let mut engine = Engine::open(options).expect("a stored definition loads as it was accepted");
    engine.execute("INSERT INTO clicks VALUES ('b', TIMESTAMP '1970-01-01 00:00:00')").await.expect("insert");
    assert_eq!(engine.member_count("clicked").expect("members"), 2);
    let e = engine
        .execute("CREATE STREAM other (user_id TEXT PRIMARY KEY, ts TIMESTAMP)")
        .await
        .expect_err("a new one is refused");
    assert!(e.to_string().contains("a stream is append-only and has no PRIMARY KEY (`user_id`)"), "{e}");
}
