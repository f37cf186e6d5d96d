//! Crash recovery of the real server process: a client drives the reference workload's
//! seven segments with a sequence of ingest calls (each with an idempotency key) and clock
//! advances; at 20 random points the server is killed with SIGKILL while a call is in
//! flight, restarted on the same data directory, and the interrupted call retried (the key
//! makes a retry of an applied call harmless; an advance is to an absolute instant). At
//! the end, membership and the full change log must equal an uninterrupted reference
//! server's over the same calls: nothing acknowledged lost, nothing applied twice, sequence
//! numbers without gaps.
//!
//! A longer run: `SEGSTREAM_CRASH_KILLS=100 cargo test -p segstream --test e2e crash`.

use std::time::Duration;

use segstream_proto::v1 as pb;
use segstream_proto::v1::segstream_client::SegstreamClient;
use tonic::transport::Channel;

use crate::grpc::{execute, json_rows, Server};
use crate::support::repo_root;

/// A deterministic pseudo-random sequence (so a failure can be replayed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Ingest { relation: &'static str, rows: Vec<serde_json::Value>, key: String },
    AdvanceTo(String),
}

const START: i64 = 1_775_037_600; // 2026-04-01 10:00:00 UTC, in seconds

fn time_text(seconds: i64) -> String {
    segstream_proto::display::timestamp_text(seconds * 1_000_000_000).replace('T', " ")
}

fn operations(count: usize, seed: u64) -> Vec<Op> {
    let mut rng = Lcg(seed);
    let users = 40;
    let mut ops = Vec::with_capacity(count + 1);
    let profiles = (0..users)
        .map(|u| {
            serde_json::json!({
                "user_id": format!("u{u}"),
                "country": "FR",
                "lifetime_value": rng.below(2000) as f64,
                "signup_at": time_text(START - rng.below(10 * 86_400) as i64),
            })
        })
        .collect();
    ops.push(Op::Ingest { relation: "profiles", rows: profiles, key: "profiles".into() });
    let mut clock = START;
    let mut event = 0;
    for i in 0..count {
        if rng.below(100) < 15 {
            clock += 60 * (1 + rng.below(180)) as i64;
            ops.push(Op::AdvanceTo(time_text(clock)));
            continue;
        }
        let rows = (0..1 + rng.below(20))
            .map(|_| {
                event += 1;
                let user = format!("u{}", rng.below(users));
                // Up to two hours late: out of order within and across calls.
                let ts = time_text(clock - rng.below(7200) as i64);
                match rng.below(10) {
                    0..=3 => serde_json::json!({"event_id": format!("e{event}"), "user_id": user,
                        "event_type": "page_view", "page": "/pricing", "ts": ts}),
                    4..=5 => serde_json::json!({"event_id": format!("e{event}"), "user_id": user,
                        "event_type": "add_to_cart", "product_id": "sku", "ts": ts}),
                    6..=7 => serde_json::json!({"event_id": format!("e{event}"), "user_id": user,
                        "event_type": "purchase", "product_id": "sku",
                        "amount": (1 + rng.below(400)) as f64, "ts": ts}),
                    _ => serde_json::json!({"event_id": format!("e{event}"), "user_id": user,
                        "event_type": "login", "ts": ts}),
                }
            })
            .collect();
        ops.push(Op::Ingest { relation: "events", rows, key: format!("op-{i}") });
    }
    ops
}

async fn apply(client: &mut SegstreamClient<Channel>, op: &Op) -> Result<(), tonic::Status> {
    match op {
        Op::Ingest { relation, rows, key } => {
            let request = pb::IngestRequest {
                relation: relation.to_string(),
                payload: json_rows(rows),
                idempotency_key: key.clone(),
            };
            let response = client.ingest(request).await?.into_inner();
            assert!(response.rejected.is_empty(), "{:?}", response.rejected);
            Ok(())
        }
        Op::AdvanceTo(time) => {
            let sql = format!("ADVANCE TIME TO TIMESTAMP '{time}'");
            client.execute(pb::ExecuteRequest { sql }).await.map(|_| ())
        }
    }
}

async fn setup(client: &mut SegstreamClient<Channel>) {
    let read = |p: &str| std::fs::read_to_string(repo_root().join(p)).expect("workload file");
    execute(client, &read("sql-examples/workload/schema.sql")).await;
    execute(client, &read("sql-examples/workload/segments.sql")).await;
    execute(client, &format!("ADVANCE TIME TO TIMESTAMP '{}'", time_text(START))).await;
}

/// Everything a subscriber or a lookup could see: the change log and every segment's members.
async fn observable_state(client: &mut SegstreamClient<Channel>) -> Vec<pb::ExecuteResponse> {
    let mut out = vec![
        execute(
            client,
            "SELECT segment, seq, key, kind, at, attributes FROM segstream.changes ORDER BY segment, seq",
        )
        .await,
    ];
    for segment in crate::support::WORKLOAD_SEGMENTS {
        out.push(execute(client, &format!("SELECT * FROM {segment} ORDER BY user_id")).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    let kills: usize = std::env::var("SEGSTREAM_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let ops = operations((kills * 6).max(120), 7);
    let mut rng = Lcg(42);
    let mut kill_at: Vec<usize> = Vec::new();
    while kill_at.len() < kills {
        let i = 1 + rng.below(ops.len() as u64 - 1) as usize;
        if !kill_at.contains(&i) {
            kill_at.push(i);
        }
    }

    // The reference: the same calls, never interrupted.
    let reference_dir = tempfile::tempdir().expect("tempdir");
    let reference = Server::start(reference_dir.path(), &[]);
    let mut client = reference.client().await;
    setup(&mut client).await;
    for op in &ops {
        apply(&mut client, op).await.expect("reference call");
    }
    let expected = observable_state(&mut client).await;
    drop(reference);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    setup(&mut client).await;
    let mut killed = 0;
    for (i, op) in ops.iter().enumerate() {
        if kill_at.contains(&i) {
            // The call in flight when the process dies: applied or not, never half.
            let mut in_flight = client.clone();
            let op_copy = op.clone();
            let call = tokio::spawn(async move { apply(&mut in_flight, &op_copy).await });
            tokio::time::sleep(Duration::from_micros(rng.below(4000))).await;
            server.kill();
            killed += 1;
            let _ = call.await;
            server = Server::start(dir.path(), &[]);
            client = server.client().await;
        }
        // Retried until acknowledged (the first try, or the retry after a kill).
        let mut attempts = 0;
        while let Err(status) = apply(&mut client, op).await {
            attempts += 1;
            assert!(attempts < 5, "op {i} keeps failing: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(killed, kills);
    let actual = observable_state(&mut client).await;

    // No gap in any segment's sequence numbers.
    if let Some(pb::statement_result::Result::Rows(set)) = &actual[0].results[0].result {
        let mut last: std::collections::HashMap<String, u64> = Default::default();
        for row in &set.rows {
            let segment = segstream_proto::display::value_text(&row.values[0]);
            let seq: u64 = segstream_proto::display::value_text(&row.values[1]).parse().expect("seq");
            let previous = last.insert(segment.clone(), seq).unwrap_or(0);
            assert_eq!(seq, previous + 1, "a gap or a duplicate in {segment}'s log");
        }
        assert!(set.rows.len() > 50, "the run produced changes to compare: {}", set.rows.len());
    }
    assert!(
        actual == expected,
        "after {kills} kills the change log or the members differ from the reference run"
    );
}
