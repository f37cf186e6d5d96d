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
