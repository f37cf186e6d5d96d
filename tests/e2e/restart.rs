//! Closing and reopening the engine mid-stream changes nothing: the run reopened after
//! every statement has the same members and the same change log (same sequence
//! numbers, same instants) as the run that was never interrupted.

use segstream_engine::{ClockMode, Engine, EngineOptions};

use crate::support::{workload_schema, workload_segments};

/// A day of traffic: purchases, page views, logins, profile changes, late events and
/// clock advances that fire timers.
fn script() -> Vec<String> {
    let mut statements = vec!["ADVANCE TIME TO TIMESTAMP '2026-03-01 08:00:00'".to_string()];
    let users = ["ana", "bo", "cy", "di"];
    for hour in 0..12 {
        let user = users[hour % users.len()];
        let other = users[(hour * 3 + 1) % users.len()];
        statements.push(format!(
            "INSERT INTO events VALUES
               ('v{hour}a', '{user}', 'page_view', '/pricing', NULL, NULL, NOW()),
               ('p{hour}', '{other}', 'purchase', NULL, 'sku{hour}', {}, NOW() - INTERVAL '20 minutes'),
               ('l{hour}', '{user}', 'login', NULL, NULL, NULL, NOW())",
            50 + hour * 40
        ));
        if hour % 4 == 1 {
            statements.push(format!(
                "INSERT INTO profiles VALUES ('{user}', 'FR', {}, NOW() - INTERVAL '2 days')",
                300 + hour * 100
            ));
        }
        if hour == 7 {
            statements.push("DELETE FROM profiles WHERE user_id = 'bo'".into());
        }
        statements.push(format!("ADVANCE TIME BY INTERVAL '{} minutes'", 35 + hour * 7));
    }
    statements.push("ADVANCE TIME BY INTERVAL '3 days'".into());
    statements
}

async fn probe(engine: &Engine) -> String {
    let mut out = format!("{:?}\n", engine.change_records().expect("log"));
    for name in
        engine.catalog().list(segstream_sql::ObjectKind::Segment).map(|r| r.name.clone()).collect::<Vec<_>>()
    {
        let members = engine.members(&name).await.expect("members");
        out.push_str(&format!(
            "{name}: {:?}\n",
            datafusion::arrow::util::pretty::pretty_format_batches(&[members]).map(|t| t.to_string())
        ));
    }
    out
}

#[tokio::test]
async fn reopening_after_every_statement_changes_nothing() {
    let open = |dir: &std::path::Path| {
        Engine::open(EngineOptions::new(dir).with_clock(ClockMode::Manual)).expect("engine opens")
    };
    let setup = format!("{}\n{}", workload_schema(), workload_segments());

    let straight_dir = tempfile::tempdir().expect("tempdir");
    let mut straight = open(straight_dir.path());
    straight.execute(&setup).await.expect("setup");
    for statement in script() {
        straight.execute(&statement).await.expect("statement");
    }

    let restarted_dir = tempfile::tempdir().expect("tempdir");
    open(restarted_dir.path()).execute(&setup).await.expect("setup");
    for statement in script() {
        let mut engine = open(restarted_dir.path());
        engine.execute(&statement).await.expect("statement");
    }
    let restarted = open(restarted_dir.path());

    let expected = probe(&straight).await;
    assert_eq!(expected, probe(&restarted).await);
    let log = straight.change_records().expect("log");
    assert!(log.len() > 20, "the script exercises the log: {log:?}");
    assert!(log
        .iter()
        .any(|r| r.segment == "recent_buyers" && r.kind == segstream_engine::ChangeKind::Exited));
}

/// A data directory written before join arrangements became one value per key (one
/// state key per stored row) is rewritten when the engine opens it, and the run goes
/// on exactly as if it had never been in the old layout.
#[tokio::test]
async fn join_state_in_the_row_keyed_layout_is_rewritten_at_open() {
    use segstream_state::codec::{ByteReader, ByteWriter};
    use segstream_state::{Store, CF_META, CF_STATE};

    let open = |dir: &std::path::Path| {
        Engine::open(EngineOptions::new(dir).with_clock(ClockMode::Manual)).expect("engine opens")
    };
    let setup = format!("{}\n{}", workload_schema(), workload_segments());
    let script = script();
    let half = script.len() / 2;

    let straight_dir = tempfile::tempdir().expect("tempdir");
    let mut straight = open(straight_dir.path());
    straight.execute(&setup).await.expect("setup");
    for statement in &script {
        straight.execute(statement).await.expect("statement");
    }

    let old_dir = tempfile::tempdir().expect("tempdir");
    {
        let mut engine = open(old_dir.path());
        engine.execute(&setup).await.expect("setup");
        for statement in &script[..half] {
            engine.execute(statement).await.expect("statement");
        }
    }
    // Rewrite the join state as the older version kept it. A join's keys are its
    // segment id and node (12 bytes), the side ('l' or 'r'), the join key's length and
    // bytes; the old layout put each row under its own key ('L' or 'R', the same join
    // key, then the row's bytes) with its weight and match count as the value.
    let rewritten = {
        let store = Store::open(old_dir.path()).expect("store");
        let mut batch = store.batch();
        let mut rows = 0;
        for (key, value) in store.scan_prefix(CF_STATE, &[]).expect("state") {
            let Some(side @ (b'l' | b'r')) = key.get(12).copied() else { continue };
            let mut reader = ByteReader::new(&value);
            while !reader.is_done() {
                let row = reader.bytes().expect("row").to_vec();
                let mut counts = ByteWriter::default();
                counts.i64(reader.i64().expect("weight")).i64(reader.i64().expect("matches"));
                let mut old_key = key.clone();
                old_key[12] = side.to_ascii_uppercase();
                old_key.extend_from_slice(&row);
                batch.put(CF_STATE, &old_key, &counts.0).expect("put");
                rows += 1;
            }
            batch.delete(CF_STATE, &key).expect("delete");
        }
        batch.delete(CF_META, b"join_layout").expect("marker");
        store.write(batch).expect("write");
        rows
    };
    assert!(rewritten >= 5, "the script leaves join state to rewrite: {rewritten} rows");
    for statement in &script[half..] {
        let mut engine = open(old_dir.path());
        engine.execute(statement).await.expect("statement");
    }
    let upgraded = open(old_dir.path());
    assert_eq!(probe(&straight).await, probe(&upgraded).await);
}
