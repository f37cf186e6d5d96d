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
