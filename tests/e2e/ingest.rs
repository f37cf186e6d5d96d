//! Ingest in process: JSON rows and Arrow batches, validated row by row; bad rows are
//! reported with their index and reason, good ones reach the segments durably.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use segstream_engine::{ClockMode, Engine, EngineOptions, IngestRows, RejectedRow};
use serde_json::json;

use crate::support::{workload_schema, workload_segments};

#[tokio::test]
async fn json_and_arrow_rows_are_checked_row_by_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = EngineOptions::new(dir.path()).with_clock(ClockMode::Manual);
    let mut engine = Engine::open(options.clone()).expect("open");
    engine.execute(&workload_schema()).await.expect("schema");
    engine.execute(&workload_segments()).await.expect("segments");
    engine.execute("ADVANCE TIME TO TIMESTAMP '2026-02-01 10:00:00'").await.expect("clock");

    let report = engine
        .ingest(
            "events",
            IngestRows::Json(vec![
                json!({"event_id": "e1", "user_id": "u1", "event_type": "purchase", "amount": 42.5, "ts": "2026-02-01 09:30:00"}),
                json!({"event_id": "e2", "event_type": "purchase", "ts": "2026-02-01 09:30:00"}),
                json!({"event_id": "e3", "user_id": "u2", "event_type": "login", "ts": "yesterday"}),
                json!({"event_id": "e4", "user_id": "u2", "event_type": "login", "ts": "2026-02-01 09:00:00", "colour": "red"}),
                json!({"event_id": "e5", "user_id": 7, "event_type": "login", "ts": "2026-02-01 09:00:00"}),
                json!(["not", "an", "object"]),
                json!({"event_id": "e6", "user_id": "u3", "event_type": "purchase", "amount": 10, "ts": "2026-02-01T09:59:00Z"}),
            ]),
        )
        .expect("ingest");
    engine.execute("CREATE TABLE counters (id TEXT PRIMARY KEY, n INT, r REAL)").await.expect("table");
    let numbers = engine
        .ingest(
            "counters",
            IngestRows::Json(vec![
                json!({"id": "a", "n": 3.0, "r": 1.5}),
                json!({"id": "b", "n": 2.5}),
                json!({"id": "c", "n": 3_000_000_000i64}),
                json!({"id": "d", "r": 1e39}),
                json!({"id": "e", "n": "7"}),
            ]),
        )
        .expect("ingest");
    assert_eq!(numbers.accepted, 1, "{:?}", numbers.rejected);
    let reasons: Vec<(usize, &str)> = numbers.rejected.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(
        reasons,
        vec![
            (1, "column `n`: 2.5 is not an integer"),
            (2, "column `n`: 3000000000 is out of range for INT"),
            (3, "column `r`: 1e+39 is out of range for REAL"),
            (4, "column `n`: expected INT, found a string"),
        ]
    );
    assert_eq!(report.accepted, 2);
    let reasons: Vec<(usize, &str)> = report.rejected.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(
        reasons,
        vec![
            (1, "column `user_id` is NOT NULL but got no value"),
            (2, "column `ts`: `yesterday` is not a timestamp (write e.g. 2026-01-01 10:00:00)"),
            (3, "`events` has no column `colour`"),
            (4, "column `user_id`: expected TEXT, found a number"),
            (5, "a row must be a JSON object, found an array"),
        ]
    );

    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("amount", DataType::Utf8, true),
        Field::new("ts", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a1", "a2"])),
            Arc::new(StringArray::from(vec!["u4", "u5"])),
            Arc::new(StringArray::from(vec!["purchase", "purchase"])),
            Arc::new(StringArray::from(vec![Some("12.5"), Some("lots")])),
            Arc::new(StringArray::from(vec!["2026-02-01 09:45:00", "2026-02-01 09:45:00"])),
        ],
    )
    .expect("batch");
    let report = engine.ingest("events", IngestRows::Arrow(batch)).expect("ingest");
    assert_eq!(report.accepted, 1);
    assert_eq!(
        report.rejected,
        vec![RejectedRow { index: 1, reason: "column `amount`: 'lots' does not convert to DOUBLE".into() }]
    );

    // An Arrow float column into an INT column: whole numbers convert, fractions are rejected.
    let floats = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Float64, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["f1", "f2"])),
            Arc::new(datafusion::arrow::array::Float64Array::from(vec![4.0, 4.5])),
        ],
    )
    .expect("batch");
    let report = engine.ingest("counters", IngestRows::Arrow(floats)).expect("ingest");
    assert_eq!(report.accepted, 1);
    assert_eq!(
        report.rejected,
        vec![RejectedRow { index: 1, reason: "column `n`: 4.5 does not fit INT".into() }]
    );

    let e = engine.ingest("recent_buyers", IngestRows::Json(vec![])).expect_err("a segment");
    assert!(e.to_string().contains("computed from its query"), "{e}");
    let e = engine.ingest("nowhere", IngestRows::Json(vec![])).expect_err("unknown");
    assert!(e.to_string().contains("no stream, table or segment is named `nowhere`"), "{e}");

    // Accepted rows reached the segments, durably: u1, u3 and u4 bought.
    drop(engine);
    let engine = Engine::open(options).expect("reopen");
    let members = engine.members("recent_buyers").await.expect("members");
    let keys = datafusion::arrow::util::pretty::pretty_format_batches(&[members]).expect("table").to_string();
    for user in ["u1", "u3", "u4"] {
        assert!(keys.contains(user), "{user} missing from\n{keys}");
    }
    assert!(!keys.contains("u5") && !keys.contains("u2"), "{keys}");

    // Lookups a service needs: a key's memberships, and the log from a sequence number.
    assert_eq!(engine.memberships_of("u4").expect("memberships"), vec!["recent_buyers".to_string()]);
    assert!(engine.memberships_of("nobody").expect("memberships").is_empty());
    let all = engine.changes_from("recent_buyers", 1).expect("log");
    assert_eq!(all.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    let rest = engine.changes_from("recent_buyers", 3).expect("log");
    assert_eq!(rest, all[2..].to_vec());
    assert!(engine.changes_from("recent_buyers", 4).expect("log").is_empty());
    assert!(engine.changes_from("no_such_segment", 1).is_err());
}

#[tokio::test]
async fn a_backfill_reports_its_progress_batch_by_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = EngineOptions::new(dir.path()).with_clock(ClockMode::Manual).with_backfill_batch(4);
    let mut engine = Engine::open(options).expect("open");
    engine.execute(&workload_schema()).await.expect("schema");
    let events: Vec<_> = (0..10)
        .map(|i| json!({"event_id": format!("e{i}"), "user_id": format!("u{}", i % 3), "event_type": "login", "ts": "1970-01-01 00:00:00"}))
        .collect();
    engine.ingest("events", IngestRows::Json(events)).expect("ingest");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    engine.on_backfill_progress(move |p| {
        sink.lock().expect("lock").push((p.relation.clone(), p.rows, p.total))
    });
    engine
        .execute("CREATE SEGMENT logins AS SELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id")
        .await
        .expect("create");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![("events".to_string(), 4, 10), ("events".to_string(), 8, 10), ("events".to_string(), 10, 10)]
    );
    // One change per member, however many batches the backfill took.
    let log = engine.changes_from("logins", 1).expect("log");
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|c| c.kind == segstream_engine::ChangeKind::Entered));
}

/// INSERT checks its rows as an ingest call does (one check for both), but fails whole
/// on the first bad row, naming it: nothing of a failed INSERT is stored.
#[tokio::test]
async fn insert_checks_rows_as_ingest_does_and_fails_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine =
        Engine::open(EngineOptions::new(dir.path()).with_clock(ClockMode::Manual)).expect("open");
    engine.execute("CREATE TABLE counters (id TEXT PRIMARY KEY, n INT, at TIMESTAMP)").await.expect("table");
    for (sql, error) in [
        (
            "INSERT INTO counters VALUES ('a', 1, NULL), ('b', 2.5, NULL)",
            "`counters`, row 2: column `n`: 2.5 does not fit INT",
        ),
        (
            "INSERT INTO counters VALUES ('a', 99999999999, NULL)",
            "`counters`, row 1: column `n`: 99999999999 does not convert to INT",
        ),
        (
            "INSERT INTO counters VALUES ('a', 1, 'noon')",
            "`counters`, row 1: column `at`: 'noon' does not convert to TIMESTAMP",
        ),
        ("INSERT INTO counters (id, at) VALUES ('a', 1700000000)", "integers are not read as times"),
        (
            "INSERT INTO counters (id, n) SELECT 'a', CAST(2.5 AS DECIMAL(4, 1))",
            "`counters`, row 1: column `n`: 2.5 does not fit INT",
        ),
        (
            "INSERT INTO counters (n) VALUES (1)",
            "`counters`, row 1: column `id` is NOT NULL but got no value",
        ),
    ] {
        let e = engine.execute(sql).await.expect_err(sql).to_string();
        assert!(e.contains(error), "{sql}: {e}");
    }
    // None of it was stored; good rows, converted, are.
    engine
        .execute("INSERT INTO counters VALUES ('a', 2.0, '2026-01-01 10:00:00'), ('b', '7', NULL)")
        .await
        .expect("good rows");
    let outputs = engine.execute("SELECT id, n, at FROM counters ORDER BY id").await.expect("query");
    let Some(segstream_engine::Output::Rows { batches, .. }) = outputs.last() else { panic!("{outputs:?}") };
    let text = datafusion::arrow::util::pretty::pretty_format_batches(batches).expect("table").to_string();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| a") || l.starts_with("| b")).collect();
    assert_eq!(rows, ["| a  | 2 | 2026-01-01T10:00:00 |", "| b  | 7 |                     |"], "{text}");
}
