//! The real `segstream serve` binary on a free localhost port, driven by a tonic client
//! and by the command line: snapshot, live changes, disconnect and resume with no gap or
//! duplicate (also across a server restart), lookups, auth, error codes, metrics;
//! IngestStream, resuming past the end of a log, ListMembers' page sizes and tokens.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use segstream_proto::v1 as pb;
use segstream_proto::v1::segstream_client::SegstreamClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::support::repo_root;

/// A running `segstream serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    pub metrics: Option<String>,
}

impl Server {
    /// Starts the server on the manual clock with the given extra arguments and waits
    /// for its `listening on` line.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_clock(data_dir, "manual", extra)
    }

    /// Starts the server on `clock` (`manual` or `wall`).
    pub fn start_with_clock(data_dir: &Path, clock: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_segstream"))
            .args(["--clock", clock, "--data-dir"])
            .arg(data_dir)
            .args(["serve", "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .env_remove("SEGSTREAM_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("segstream serve starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
        let (mut addr, mut metrics) = (None, None);
        let mut line = String::new();
        while addr.is_none() || metrics.is_none() {
            line.clear();
            if lines.read_line(&mut line).expect("reads") == 0 {
                panic!("segstream serve exited before listening: {:?}", child.wait());
            }
            if let Some(rest) = line.strip_prefix("listening on ") {
                addr = Some(rest.split([' ', ',']).next().unwrap_or_default().trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("metrics on http://") {
                metrics = Some(rest.trim().trim_end_matches("/metrics").to_string());
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = lines.read_to_string(&mut sink);
        });
        Server { child, addr: addr.expect("address"), metrics }
    }

    pub async fn client(&self) -> SegstreamClient<Channel> {
        SegstreamClient::connect(format!("http://{}", self.addr)).await.expect("connects")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn execute(client: &mut SegstreamClient<Channel>, sql: &str) -> pb::ExecuteResponse {
    client
        .execute(pb::ExecuteRequest { sql: sql.into() })
        .await
        .unwrap_or_else(|s| panic!("{sql}: {s}"))
        .into_inner()
}

pub fn json_rows(rows: &[serde_json::Value]) -> Option<pb::ingest_request::Payload> {
    Some(pb::ingest_request::Payload::Json(pb::JsonRows {
        rows: rows.iter().map(|r| r.to_string()).collect(),
    }))
}

fn purchase(id: &str, user: &str, ts: &str) -> serde_json::Value {
    serde_json::json!({"event_id": id, "user_id": user, "event_type": "purchase", "product_id": "s", "amount": 10.0, "ts": ts})
}

pub async fn ingest(
    client: &mut SegstreamClient<Channel>,
    relation: &str,
    rows: &[serde_json::Value],
) -> pb::IngestResponse {
    let request = pb::IngestRequest {
        relation: relation.into(),
        payload: json_rows(rows),
        idempotency_key: String::new(),
    };
    client.ingest(request).await.expect("ingest").into_inner()
}

async fn advance_to(client: &mut SegstreamClient<Channel>, time: &str) {
    execute(client, &format!("ADVANCE TIME TO TIMESTAMP '{time}'")).await;
}

/// The segment's whole change log as `(seq, key, kind)`, read with SQL.
async fn change_log(client: &mut SegstreamClient<Channel>, segment: &str) -> Vec<(u64, String, String)> {
    let response = execute(
        client,
        &format!("SELECT seq, key, kind FROM segstream.changes WHERE segment = '{segment}' ORDER BY seq"),
    )
    .await;
    let Some(pb::statement_result::Result::Rows(set)) = &response.results[0].result else { panic!("rows") };
    set.rows
        .iter()
        .map(|r| {
            let text = |i: usize| segstream_proto::display::value_text(&r.values[i]);
            (text(0).parse().expect("seq"), text(1), text(2))
        })
        .collect()
}

fn kind(change: &pb::Change) -> String {
    match pb::ChangeKind::try_from(change.kind) {
        Ok(pb::ChangeKind::Entered) => "entered".into(),
        Ok(pb::ChangeKind::Exited) => "exited".into(),
        Ok(pb::ChangeKind::Updated) => "updated".into(),
        _ => "?".into(),
    }
}

/// The next change on a stream, skipping progress messages; fails after 10 s.
async fn next_change(stream: &mut tonic::Streaming<pb::SubscribeResponse>) -> pb::Change {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("a change within 10 s")
            .expect("stream ok")
            .expect("stream open");
        match message.event {
            Some(pb::subscribe_response::Event::Change(change)) => return change,
            Some(pb::subscribe_response::Event::Progress(_)) => continue,
            other => panic!("expected a change, got {other:?}"),
        }
    }
}

async fn setup_workload(client: &mut SegstreamClient<Channel>) {
    let schema =
        std::fs::read_to_string(repo_root().join("sql-examples/workload/schema.sql")).expect("schema");
    execute(client, &schema).await;
    let segment =
        std::fs::read_to_string(repo_root().join("sql-examples/recent_buyers/segment.sql")).expect("segment");
    execute(client, &segment).await;
    advance_to(client, "2026-04-01 10:00:00").await;
}

/// Snapshot, then live changes; disconnect midway, resume from the last sequence seen —
/// also after the server was killed and restarted — and the changes received are exactly
/// the log: no gap, no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_live_and_resume_across_restarts_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    setup_workload(&mut client).await;
    let response = ingest(&mut client, "events", &[purchase("p1", "ann", "2026-04-01 10:00:00")]).await;
    assert_eq!(response.accepted, 1);

    // Snapshot: ann is a member; the marker says the log stands at 1.
    let request = pb::SubscribeRequest {
        segments: vec!["recent_buyers".into()],
        start: Some(pb::subscribe_request::Start::Snapshot(pb::Snapshot {})),
        progress_interval_ms: 50,
    };
    let mut stream = client.subscribe(request).await.expect("subscribes").into_inner();
    let first = stream.message().await.expect("ok").expect("open");
    match first.event {
        Some(pb::subscribe_response::Event::Member(m)) => {
            assert_eq!((m.segment.as_str(), m.key.as_str()), ("recent_buyers", "ann"))
        }
        other => panic!("expected the snapshot member, got {other:?}"),
    }
    match stream.message().await.expect("ok").expect("open").event {
        Some(pb::subscribe_response::Event::SnapshotEnd(end)) => {
            assert_eq!(end.seq.get("recent_buyers"), Some(&1))
        }
        other => panic!("expected the snapshot marker, got {other:?}"),
    }

    // Live: bo enters, ann leaves by the clock alone (at 13:00 exactly).
    ingest(&mut client, "events", &[purchase("p2", "bo", "2026-04-01 11:00:00")]).await;
    advance_to(&mut client, "2026-04-01 13:30:00").await;
    let mut received: Vec<(u64, String, String)> = Vec::new();
    for _ in 0..2 {
        let c = next_change(&mut stream).await;
        received.push((c.seq, c.key.clone(), kind(&c)));
    }
    assert_eq!(received, vec![(2, "bo".into(), "entered".into()), (3, "ann".into(), "exited".into())]);
    let exit_at = 1_775_048_400_000_000_000i64; // 2026-04-01 13:00:00 UTC
    drop(stream);

    // While nobody listens: more changes, then a crash and a restart.
    ingest(&mut client, "events", &[purchase("p3", "cy", "2026-04-01 13:30:00")]).await;
    advance_to(&mut client, "2026-04-01 15:00:00").await; // bo exits at 14:00
    drop(client);
    server.kill();
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    ingest(&mut client, "events", &[purchase("p4", "dee", "2026-04-01 15:00:00")]).await;

    // Resume after the last change received: every later change exactly once.
    let last = received.last().map(|r| r.0).unwrap_or(0);
    let request = pb::SubscribeRequest {
        segments: vec!["recent_buyers".into()],
        start: Some(pb::subscribe_request::Start::Resume(pb::Resume {
            after_seq: [("recent_buyers".to_string(), last)].into_iter().collect(),
        })),
        progress_interval_ms: 50,
    };
    let mut stream = client.subscribe(request).await.expect("resumes").into_inner();
    // The snapshot stood at #1: every change after it must arrive.
    let log = change_log(&mut client, "recent_buyers").await;
    let log = log[1..].to_vec();
    while received.len() < log.len() {
        let c = next_change(&mut stream).await;
        if c.seq == 3 {
            assert_eq!(c.at_unix_nanos, exit_at);
        }
        received.push((c.seq, c.key.clone(), kind(&c)));
    }
    assert_eq!(received, log, "the changes received are the log, each once, in order");
    let seqs: Vec<u64> = received.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (2..=6).collect::<Vec<_>>());
    // Nothing more arrives: only progress messages, carrying the clock.
    let message =
        tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("progress").expect("ok");
    match message.and_then(|m| m.event) {
        Some(pb::subscribe_response::Event::Progress(p)) => {
            assert_eq!(p.seq.get("recent_buyers"), Some(&6));
            assert!(p.clock_unix_nanos >= 1_775_055_600_000_000_000);
        }
        other => panic!("expected progress, got {other:?}"),
    }
}

/// Lookups answer from the maintained state; an unknown segment is NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_members_memberships_pages_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    setup_workload(&mut client).await;
    let rows: Vec<_> =
        (0..25).map(|i| purchase(&format!("p{i}"), &format!("u{i:02}"), "2026-04-01 09:30:00")).collect();
    ingest(&mut client, "events", &rows).await;

    let count = client
        .count_members(pb::CountMembersRequest { segment: "recent_buyers".into() })
        .await
        .expect("count");
    assert_eq!(count.into_inner().count, 25);
    let yes = client
        .is_member(pb::IsMemberRequest { segment: "recent_buyers".into(), key: "u07".into() })
        .await
        .expect("is member")
        .into_inner();
    assert!(yes.member);
    let no = client
        .is_member(pb::IsMemberRequest { segment: "recent_buyers".into(), key: "nobody".into() })
        .await
        .expect("is member")
        .into_inner();
    assert!(!no.member);
    let memberships =
        client.get_memberships(pb::GetMembershipsRequest { key: "u07".into() }).await.expect("memberships");
    assert_eq!(memberships.into_inner().segments, vec!["recent_buyers".to_string()]);

    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_members(pb::ListMembersRequest {
                segment: "recent_buyers".into(),
                page_size: 10,
                page_token: token,
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.members.len() <= 10);
        keys.extend(page.members.into_iter().map(|m| m.key));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(keys, (0..25).map(|i| format!("u{i:02}")).collect::<Vec<_>>());

    let unknown =
        client.count_members(pb::CountMembersRequest { segment: "nope".into() }).await.expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown}");
    let unknown = client
        .subscribe(pb::SubscribeRequest {
            segments: vec!["nope".into()],
            start: None,
            progress_interval_ms: 0,
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown}");
}

/// Bad SQL and bad rows get INVALID_ARGUMENT with the position or the row's index and
/// reason; a retried ingest with the same idempotency key is applied once; the clock
/// does not go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_grpc_codes_and_idempotency_keys_apply_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    setup_workload(&mut client).await;

    let bad = client
        .execute(pb::ExecuteRequest { sql: "SELECT user_id\nFROM eventz".into() })
        .await
        .expect_err("bad");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");
    assert!(bad.message().contains("line 2"), "{bad}");
    assert!(bad.message().contains("did you mean `events`"), "{bad}");
    let syntax = client.execute(pb::ExecuteRequest { sql: "SELEC 1".into() }).await.expect_err("bad");
    assert_eq!(syntax.code(), Code::InvalidArgument, "{syntax}");
    // Larger than the request limit (16 MiB by default): refused before it is decoded.
    let huge = format!("SELECT '{}'", "x".repeat(17 << 20));
    let too_big = client.execute(pb::ExecuteRequest { sql: huge }).await.expect_err("too big");
    assert_eq!(too_big.code(), Code::OutOfRange, "{}", too_big.message());

    let rows = vec![
        purchase("p1", "ann", "2026-04-01 10:00:00"),
        serde_json::json!({"event_id": "p2", "user_id": "bo", "event_type": "purchase", "ts": "yesterday"}),
        serde_json::json!({"event_id": "p3", "event_type": "purchase", "ts": "2026-04-01 10:00:00"}),
    ];
    let request = pb::IngestRequest {
        relation: "events".into(),
        payload: json_rows(&rows),
        idempotency_key: "batch-1".into(),
    };
    let first = client.ingest(request.clone()).await.expect("ingest").into_inner();
    assert_eq!(first.accepted, 1);
    let rejected: Vec<(u64, &str)> = first.rejected.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0].0, 1);
    assert!(rejected[0].1.contains("`ts`"), "{rejected:?}");
    assert_eq!(rejected[1].0, 2);
    assert!(rejected[1].1.contains("`user_id` is NOT NULL"), "{rejected:?}");
    let retry = client.ingest(request).await.expect("ingest").into_inner();
    assert!(retry.duplicate);
    assert_eq!(retry.accepted, 1);
    let count = client
        .count_members(pb::CountMembersRequest { segment: "recent_buyers".into() })
        .await
        .expect("count");
    assert_eq!(count.into_inner().count, 1);
    let log = change_log(&mut client, "recent_buyers").await;
    assert_eq!(log.len(), 1, "the retry changed nothing: {log:?}");

    let unknown = client
        .ingest(pb::IngestRequest {
            relation: "nope".into(),
            payload: json_rows(&rows),
            idempotency_key: String::new(),
        })
        .await
        .expect_err("unknown relation");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown}");
    let into_segment = client
        .ingest(pb::IngestRequest {
            relation: "recent_buyers".into(),
            payload: json_rows(&rows),
            idempotency_key: String::new(),
        })
        .await
        .expect_err("a segment");
    assert_eq!(into_segment.code(), Code::InvalidArgument, "{into_segment}");
    let back = client
        .advance_clock(pb::AdvanceClockRequest {
            target: Some(pb::advance_clock_request::Target::ToUnixNanos(0)),
        })
        .await
        .expect_err("backwards");
    assert_eq!(back.code(), Code::InvalidArgument, "{back}");
    let forward = client
        .advance_clock(pb::AdvanceClockRequest {
            target: Some(pb::advance_clock_request::Target::ByNanos(3_600_000_000_000)),
        })
        .await
        .expect("advances")
        .into_inner();
    assert_eq!(forward.clock_unix_nanos, 1_775_037_600_000_000_000 + 3_600_000_000_000);
}

/// With a token, calls without it (or with another) are UNAUTHENTICATED; health checks
/// stay open; the CLI sends the token it is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--token", "s3cret"]);
    let mut client = server.client().await;
    let refused =
        client.execute(pb::ExecuteRequest { sql: "SHOW SEGMENTS".into() }).await.expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");

    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .expect("url")
        .connect()
        .await
        .expect("connects");
    let mut wrong = SegstreamClient::with_interceptor(channel.clone(), |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", "Bearer guess".parse().expect("ascii"));
        Ok(r)
    });
    let refused =
        wrong.execute(pb::ExecuteRequest { sql: "SHOW SEGMENTS".into() }).await.expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");
    let mut right = SegstreamClient::with_interceptor(channel.clone(), |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", "Bearer s3cret".parse().expect("ascii"));
        Ok(r)
    });
    right.execute(pb::ExecuteRequest { sql: "SHOW SEGMENTS".into() }).await.expect("allowed");

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "segstream.v1.Segstream".into() })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(status.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let cli = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_segstream"));
        command.args(["--addr", &server.addr, "sql", "-e", "SHOW SEGMENTS"]).env_remove("SEGSTREAM_TOKEN");
        if let Some(token) = token {
            command.env("SEGSTREAM_TOKEN", token);
        }
        command.output().expect("runs")
    };
    let without = cli(None);
    assert!(!without.status.success());
    assert!(String::from_utf8_lossy(&without.stderr).contains("--token or SEGSTREAM_TOKEN"));
    let with = cli(Some("s3cret"));
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
}

/// The command line against a server: statements, a file ingest with a rejected row
/// named by its line, a subscription printing changes, and the metrics endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_drives_a_server_and_metrics_count_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_segstream"))
            .current_dir(repo_root())
            .args(["--addr", &server.addr])
            .args(args)
            .env_remove("SEGSTREAM_TOKEN")
            .output()
            .expect("runs")
    };
    let out = cli(&[
        "sql",
        "-f",
        "sql-examples/workload/schema.sql",
        "-f",
        "sql-examples/recent_buyers/segment.sql",
        "-e",
        "ADVANCE TIME TO TIMESTAMP '2026-04-01 10:00:00'",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("CREATE SEGMENT"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A script runs a statement per call: what ran before a failing statement is
    // printed, nothing after it runs, and the error points into the script.
    let out = cli(&[
        "sql",
        "-e",
        "SHOW SEGMENTS;\nCREATE SEGMENT s AS\n  SELECT DISTINCT user_id FROM events\n  ORDER BY user_id;\nSHOW STREAMS",
    ]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("recent_buyers"), "SHOW SEGMENTS ran and printed: {stdout}");
    assert_eq!(stdout.matches(" row").count(), 1, "one result: SHOW STREAMS did not run: {stdout}");
    assert!(stderr.contains("at line 4, column 3: ORDER BY"), "{stderr}");
    assert!(stderr.contains("--> -e #1:4:3"), "{stderr}");
    assert!(stderr.contains("4 |   ORDER BY user_id;\n  |   ^"), "{stderr}");

    let files = tempfile::tempdir().expect("tempdir");
    let ndjson = files.path().join("events.ndjson");
    let mut f = std::fs::File::create(&ndjson).expect("creates");
    writeln!(f, "{}", purchase("p1", "ann", "2026-04-01 09:00:00")).expect("writes");
    writeln!(f).expect("writes");
    writeln!(f, "{{not json").expect("writes");
    writeln!(f, "{}", purchase("p2", "bo", "2026-04-01 09:30:00")).expect("writes");
    drop(f);
    let out = cli(&["ingest", "--stream", "events", ndjson.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a rejected row makes the exit status 1: {stdout}");
    assert!(stdout.contains("ingested 2 rows into events"), "{stdout}");
    assert!(stdout.contains("rejected 1 row:\n  line 3: not JSON"), "{stdout}");

    let csv = files.path().join("events.csv");
    std::fs::write(
        &csv,
        "event_id,user_id,event_type,page,product_id,amount,ts\n\
         p3,cy,purchase,,s,12.5,2026-04-01 09:45:00\n\
         p4,dee,purchase,,s,lots,2026-04-01 09:45:00\n",
    )
    .expect("writes");
    let out = cli(&["ingest", "--stream", "events", csv.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ingested 1 row into events"), "{stdout}");
    assert!(stdout.contains("row 2: column `amount`"), "{stdout}");

    let out = cli(&["subscribe", "recent_buyers", "--snapshot", "--count", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("recent_buyers  member  ann"), "{stdout}");
    assert!(stdout.contains("-- snapshot complete at recent_buyers #3"), "{stdout}");
    let out = cli(&["subscribe", "recent_buyers", "--from", "2", "--count", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            "recent_buyers  #2  entered  bo  2026-04-01T10:00:00  {}",
            "recent_buyers  #3  entered  cy  2026-04-01T10:00:00  {}"
        ],
        "{stdout}"
    );

    let metrics = http_get(server.metrics.as_deref().expect("metrics address"), "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let values: BTreeMap<&str, &str> =
        metrics.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.rsplit_once(' ')).collect();
    assert_eq!(values.get("segstream_events_ingested_total"), Some(&"3"), "{metrics}");
    assert_eq!(values.get("segstream_rows_rejected_total"), Some(&"2"), "{metrics}");
    assert_eq!(values.get("segstream_segment_members{segment=\"recent_buyers\"}"), Some(&"3"), "{metrics}");
    assert!(metrics.contains("segstream_step_seconds_bucket"), "{metrics}");
    // Every acknowledged call was made durable by a journal sync.
    let syncs: u64 =
        values.get("segstream_journal_syncs_total").expect("journal syncs").parse().expect("a number");
    let committed: u64 =
        values.get("segstream_steps_committed_total").expect("steps").parse().expect("a number");
    assert!(syncs >= 1 && committed >= syncs, "{metrics}");
    for name in ["segstream_checkpoints_total", "segstream_journal_records_replayed_total"] {
        assert!(values.contains_key(name), "{name} missing: {metrics}");
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    response
}

/// A client that is not Rust: Python grpcio with stubs generated from proto/ by
/// grpcio-tools creates a segment, ingests, and receives the entry and the exact exit.
/// The interpreter comes from scripts/setup-python.sh (run by scripts/test.sh), or
/// SEGSTREAM_PYTHON.
#[test]
fn a_python_grpcio_client_ingests_and_receives_changes() {
    let python = std::env::var_os("SEGSTREAM_PYTHON").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/segstream-venv/bin/python")
    });
    assert!(
        python.exists(),
        "no Python with grpcio at {}: run scripts/setup-python.sh (scripts/test.sh does)",
        python.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let output = Command::new(&python)
        .arg(repo_root().join("tests/python/grpc_client.py"))
        .arg(&server.addr)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("received: recent_buyers #1 entered pat"), "{stdout}");
    assert!(stdout.contains("received: recent_buyers #2 exited pat at 13:00:00 exactly"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

/// TLS from PEM files: a client that trusts the certificate talks to the server; a
/// plaintext client cannot. (The certificate is made by the `openssl` command.)
#[test]
fn tls_from_certificate_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A CA, and the server's certificate signed by it (rustls refuses a CA certificate
    // as the server's own).
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    let (ca, ca_key, cert, key, csr, ext) = (
        path("ca.pem"),
        path("ca.key"),
        path("cert.pem"),
        path("key.pem"),
        path("cert.csr"),
        path("ext.cnf"),
    );
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .expect("writes");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec[..],
            &["-days", "1", "-subj", "/CN=segstream test CA", "-keyout", &ca_key, "-out", &ca][..],
        ]
        .concat(),
        [&["req"][..], &ec[..], &["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr][..]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    ];
    for args in steps {
        let made =
            Command::new("openssl").args(&args).current_dir(dir.path()).output().expect("openssl runs");
        assert!(made.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&made.stderr));
    }
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--tls-cert", &cert, "--tls-key", &key]);
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_segstream"))
            .args(args)
            .args(["sql", "-e", "SELECT 1 AS one"])
            .env_remove("SEGSTREAM_TOKEN")
            .output()
            .expect("runs")
    };
    let secure = cli(&["--addr", &format!("https://{}", server.addr), "--ca-cert", &ca]);
    assert!(secure.status.success(), "{}", String::from_utf8_lossy(&secure.stderr));
    assert!(String::from_utf8_lossy(&secure.stdout).contains("| one |"));
    let plain = cli(&["--addr", &server.addr]);
    assert!(!plain.status.success(), "a plaintext client must not get through");
}

/// The interactive shell (in a pseudo-terminal): statements across lines until `;`,
/// results printed, `\q` to leave, and the history kept in ~/.segstream_history.
#[test]
fn the_interactive_shell_runs_statements_and_keeps_history() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    // `script` gives the shell a terminal; its input is typed line by line.
    let command =
        format!("{} --clock manual --data-dir {} sql", env!("CARGO_BIN_EXE_segstream"), data.display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", home.path())
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs");
    {
        let stdin = child.stdin.as_mut().expect("stdin");
        for line in ["SELECT 40 + 2", "  AS answer;", "\\q"] {
            std::thread::sleep(Duration::from_millis(300));
            stdin.write_all(format!("{line}\r").as_bytes()).expect("types");
            stdin.flush().expect("flushes");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("exits");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("segstream> "), "{stdout}");
    assert!(stdout.contains("| answer |") && stdout.contains("| 42     |"), "{stdout}");
    let history = std::fs::read_to_string(home.path().join(".segstream_history")).expect("history written");
    assert!(history.contains("SELECT 40 + 2"), "{history}");
}

/// With change-log retention, a subscriber resuming from a change already dropped is
/// refused with FAILED_PRECONDITION telling it to resnapshot; a snapshot still works and
/// the changes the log keeps resume exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_a_dropped_change_asks_for_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--change-log-max-changes", "2"]);
    let mut client = server.client().await;
    setup_workload(&mut client).await;
    for (i, user) in ["ann", "bob", "cat", "dan", "eve"].iter().enumerate() {
        let response =
            ingest(&mut client, "events", &[purchase(&format!("p{i}"), user, "2026-04-01 10:00:00")]).await;
        assert_eq!(response.accepted, 1);
    }
    let resume = |after: u64| pb::SubscribeRequest {
        segments: vec!["recent_buyers".into()],
        start: Some(pb::subscribe_request::Start::Resume(pb::Resume {
            after_seq: [("recent_buyers".to_string(), after)].into_iter().collect(),
        })),
        progress_interval_ms: 50,
    };
    // The server trims every second; wait (bounded) until it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let refused = loop {
        match client.subscribe(resume(0)).await {
            Err(status) => break status,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Ok(_) => panic!("the log was never trimmed to 2 changes"),
        }
    };
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("keeps them from 4 on"), "{}", refused.message());
    assert!(refused.message().contains("snapshot"), "{}", refused.message());

    // After 3 the log is whole: dan (4) and eve (5), exactly.
    let mut stream = client.subscribe(resume(3)).await.expect("resumes").into_inner();
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Some(pb::subscribe_response::Event::Change(c)) =
            stream.message().await.expect("ok").expect("open").event
        {
            got.push((c.seq, c.key));
        }
    }
    assert_eq!(got, vec![(4, "dan".to_string()), (5, "eve".to_string())]);

    // A snapshot still has every member.
    let request = pb::SubscribeRequest {
        segments: vec!["recent_buyers".into()],
        start: Some(pb::subscribe_request::Start::Snapshot(pb::Snapshot {})),
        progress_interval_ms: 50,
    };
    let mut stream = client.subscribe(request).await.expect("subscribes").into_inner();
    let mut members = Vec::new();
    loop {
        match stream.message().await.expect("ok").expect("open").event {
            Some(pb::subscribe_response::Event::Member(m)) => members.push(m.key),
            Some(pb::subscribe_response::Event::SnapshotEnd(end)) => {
                assert_eq!(end.seq.get("recent_buyers"), Some(&5));
                break;
            }
            _ => {}
        }
    }
    members.sort();
    assert_eq!(members, vec!["ann", "bob", "cat", "dan", "eve"]);
}

/// `FORGET KEY` over gRPC: a live subscriber receives the erase as `exited` with the
/// reason `erased`; one that resumes from before it receives the earlier change about the
/// key as `redacted` (no key), then the same erase; no query names the key afterwards.
#[tokio::test]
async fn forgetting_a_key_reaches_subscribers_as_an_erased_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    setup_workload(&mut client).await;
    let subscribe = |after: u64| pb::SubscribeRequest {
        segments: vec!["recent_buyers".into()],
        start: Some(pb::subscribe_request::Start::Resume(pb::Resume {
            after_seq: [("recent_buyers".to_string(), after)].into_iter().collect(),
        })),
        progress_interval_ms: 50,
    };
    let mut live = client.subscribe(subscribe(0)).await.expect("subscribes").into_inner();
    ingest(&mut client, "events", &[purchase("p1", "ann", "2026-04-01 09:30:00")]).await;
    ingest(&mut client, "events", &[purchase("p2", "bob", "2026-04-01 09:45:00")]).await;
    let first = next_change(&mut live).await;
    assert_eq!((first.seq, first.key.as_str(), kind(&first)), (1, "ann", "entered".to_string()));
    assert_eq!(next_change(&mut live).await.key, "bob");

    let response = execute(&mut client, "FORGET KEY 'ann'").await;
    let Some(pb::statement_result::Result::Done(done)) = &response.results[0].result else {
        panic!("{response:?}")
    };
    assert!(done.contains("1 event, 0 table rows; exited 1 segment; 1 earlier change redacted"), "{done}");
    let erased = next_change(&mut live).await;
    assert_eq!((erased.seq, erased.key.as_str(), kind(&erased)), (3, "ann", "exited".to_string()));
    assert_eq!(erased.reason, "erased");

    // Resuming from the start: the first change has kept its number and lost its person.
    let mut resumed = client.subscribe(subscribe(0)).await.expect("resumes").into_inner();
    let redacted = next_change(&mut resumed).await;
    assert_eq!(redacted.seq, 1);
    assert_eq!(pb::ChangeKind::try_from(redacted.kind), Ok(pb::ChangeKind::Redacted));
    assert_eq!((redacted.key.as_str(), redacted.attributes_json.as_str()), ("", "{}"));
    assert_eq!(next_change(&mut resumed).await.key, "bob");
    let again = next_change(&mut resumed).await;
    assert_eq!((again.seq, again.key.as_str(), again.reason.as_str()), (3, "ann", "erased"));

    let events = execute(&mut client, "SELECT COUNT(*) FROM events WHERE user_id = 'ann'").await;
    let Some(pb::statement_result::Result::Rows(set)) = &events.results[0].result else { panic!("rows") };
    assert_eq!(segstream_proto::display::value_text(&set.rows[0].values[0]), "0");
    assert_eq!(
        change_log(&mut client, "recent_buyers").await,
        vec![
            (1, String::new(), "redacted".to_string()),
            (2, "bob".to_string(), "entered".to_string()),
            (3, "ann".to_string(), "exited".to_string())
        ]
    );
}

/// An Arrow IPC stream of purchases, its times as text (the server converts them).
fn arrow_purchases(rows: &[(&str, &str, &str)]) -> Vec<u8> {
    use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::ipc::writer::StreamWriter;
    use datafusion::arrow::record_batch::RecordBatch;
    let text = |values: Vec<&str>| -> ArrayRef { std::sync::Arc::new(StringArray::from(values)) };
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("ts", DataType::Utf8, false),
    ]));
    let columns = vec![
        text(rows.iter().map(|r| r.0).collect()),
        text(rows.iter().map(|r| r.1).collect()),
        text(vec!["purchase"; rows.len()]),
        std::sync::Arc::new(Float64Array::from(vec![Some(10.0); rows.len()])) as ArrayRef,
        text(rows.iter().map(|r| r.2).collect()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("a batch");
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &schema).expect("writer");
    writer.write(&batch).expect("writes");
    writer.finish().expect("finishes");
    drop(writer);
    out
}

fn ingest_message(
    relation: &str,
    payload: Option<pb::ingest_request::Payload>,
    key: &str,
) -> pb::IngestRequest {
    pb::IngestRequest { relation: relation.into(), payload, idempotency_key: key.into() }
}

async fn ingest_stream(
    client: &mut SegstreamClient<Channel>,
    messages: Vec<pb::IngestRequest>,
) -> Result<pb::IngestResponse, tonic::Status> {
    let messages = tonic::codegen::tokio_stream::iter(messages);
    client.ingest_stream(messages).await.map(|r| r.into_inner())
}

/// All members of a segment, read with ListMembers pages.
async fn member_keys(client: &mut SegstreamClient<Channel>, segment: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_members(pb::ListMembersRequest { segment: segment.into(), page_size: 0, page_token: token })
            .await
            .expect("page")
            .into_inner();
        keys.extend(page.members.into_iter().map(|m| m.key));
        if page.next_page_token.is_empty() {
            return keys;
        }
        token = page.next_page_token;
    }
}

/// IngestStream: the first message names the relation and later ones inherit it; JSON and
/// Arrow messages mix; a bad row is rejected alone, its index counted across messages; the
/// one response has the totals, and the rows are members. Sent again with the same keys,
/// nothing is applied twice. A stream that fails midway has applied the messages before
/// the failure, and a retry of the whole stream with its keys applies each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stream_applies_every_message_and_answers_the_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    setup_workload(&mut client).await;
    let at = "2026-04-01 09:30:00";
    let messages = vec![
        ingest_message(
            "events",
            json_rows(&[purchase("p1", "ann", at), purchase("p2", "bo", at), purchase("p3", "cy", at)]),
            "s-1",
        ),
        ingest_message(
            "",
            json_rows(&[
                purchase("p4", "dee", at),
                serde_json::json!({"event_id": "p5", "user_id": "eli", "event_type": "purchase", "ts": "yesterday"}),
                purchase("p6", "eve", at),
            ]),
            "s-2",
        ),
        ingest_message(
            "",
            Some(pb::ingest_request::Payload::ArrowIpc(arrow_purchases(&[
                ("p7", "fay", at),
                ("p8", "gus", at),
            ]))),
            "s-3",
        ),
        ingest_message(
            "",
            json_rows(&[
                serde_json::json!({"event_id": "p9", "event_type": "purchase", "ts": at}),
                purchase("p10", "hal", at),
            ]),
            "s-4",
        ),
    ];
    let response = ingest_stream(&mut client, messages.clone()).await.expect("streams");
    assert_eq!(response.accepted, 8);
    assert!(!response.duplicate);
    let rejected: Vec<(u64, &str)> = response.rejected.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), vec![4, 8], "{rejected:?}");
    assert!(rejected[0].1.contains("`ts`"), "{rejected:?}");
    assert!(rejected[1].1.contains("`user_id` is NOT NULL"), "{rejected:?}");
    let members = ["ann", "bo", "cy", "dee", "eve", "fay", "gus", "hal"];
    assert_eq!(member_keys(&mut client, "recent_buyers").await, members);
    let log = change_log(&mut client, "recent_buyers").await;
    let mut entered: Vec<&str> = log.iter().map(|c| c.1.as_str()).collect();
    entered.sort();
    assert_eq!(entered, members);
    assert!(log.iter().all(|c| c.2 == "entered"), "{log:?}");
    let count = execute(&mut client, "SELECT COUNT(*) FROM events").await;
    let Some(pb::statement_result::Result::Rows(set)) = &count.results[0].result else { panic!("rows") };
    assert_eq!(segstream_proto::display::value_text(&set.rows[0].values[0]), "8");

    // The same stream again: every key had been applied, so nothing is, and the totals
    // are the first call's.
    let again = ingest_stream(&mut client, messages).await.expect("streams");
    assert!(again.duplicate);
    assert_eq!((again.accepted, &again.rejected), (response.accepted, &response.rejected));
    assert_eq!(change_log(&mut client, "recent_buyers").await, log, "nothing applied twice");

    // A stream failing at its second message (an unknown relation): the first was applied.
    let failing = vec![
        ingest_message("events", json_rows(&[purchase("q1", "ivy", at)]), "t-1"),
        ingest_message("nope", json_rows(&[purchase("q2", "jo", at)]), "t-2"),
    ];
    let failed = ingest_stream(&mut client, failing).await.expect_err("an unknown relation");
    assert_eq!(failed.code(), Code::NotFound, "{failed}");
    assert!(failed.message().contains("nope"), "{failed}");
    let ivy = client
        .is_member(pb::IsMemberRequest { segment: "recent_buyers".into(), key: "ivy".into() })
        .await
        .expect("is member")
        .into_inner();
    assert!(ivy.member, "the message before the failure was applied");
    // Retried whole with the same keys: the first message is not applied again.
    let retried = vec![
        ingest_message("events", json_rows(&[purchase("q1", "ivy", at)]), "t-1"),
        ingest_message("", json_rows(&[purchase("q2", "jo", at)]), "t-2"),
    ];
    let response = ingest_stream(&mut client, retried).await.expect("streams");
    assert_eq!(response.accepted, 2);
    let log = change_log(&mut client, "recent_buyers").await;
    assert_eq!(log.len(), 10, "{log:?}");
    assert_eq!(log.iter().filter(|c| c.1 == "ivy").count(), 1, "{log:?}");
    assert_eq!(log.last().map(|c| c.1.as_str()), Some("jo"));

    // The first message must name the relation.
    let unnamed =
        ingest_stream(&mut client, vec![ingest_message("", json_rows(&[purchase("r1", "kim", at)]), "")])
            .await
            .expect_err("no relation");
    assert_eq!(unnamed.code(), Code::InvalidArgument, "{unnamed}");
    assert!(unnamed.message().contains("`relation`"), "{unnamed}");
}

/// Resuming exactly at the end of a log waits for the next change; resuming after a
/// sequence number the segment has not reached is OUT_OF_RANGE, with a message naming the
/// segment, how far its log goes and the position asked for (the client is probably
/// talking to another server); the command line shows that message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_past_the_end_of_a_log_is_out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    setup_workload(&mut client).await;
    execute(
        &mut client,
        "CREATE SEGMENT viewers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'page_view'",
    )
    .await;
    ingest(&mut client, "events", &[purchase("p1", "ann", "2026-04-01 09:30:00")]).await;
    ingest(&mut client, "events", &[purchase("p2", "bo", "2026-04-01 09:40:00")]).await;
    let resume = |after: &[(&str, u64)]| pb::SubscribeRequest {
        segments: after.iter().map(|a| a.0.to_string()).collect(),
        start: Some(pb::subscribe_request::Start::Resume(pb::Resume {
            after_seq: after.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        })),
        progress_interval_ms: 50,
    };

    // After the last change: accepted, and the next change is the first one sent.
    let mut stream = client.subscribe(resume(&[("recent_buyers", 2)])).await.expect("resumes").into_inner();
    ingest(&mut client, "events", &[purchase("p3", "cy", "2026-04-01 09:50:00")]).await;
    let next = next_change(&mut stream).await;
    assert_eq!((next.seq, next.key.as_str(), kind(&next)), (3, "cy", "entered".to_string()));

    for after in [4, 1_000] {
        let refused =
            client.subscribe(resume(&[("recent_buyers", after)])).await.expect_err("beyond the log");
        assert_eq!(refused.code(), Code::OutOfRange, "{refused}");
        assert!(
            refused.message().contains(&format!(
                "segment `recent_buyers` has logged 3 changes, so it cannot resume after {after}"
            )),
            "{}",
            refused.message()
        );
        assert!(refused.message().contains("is this the server the client was subscribed to?"), "{refused}");
    }
    // One segment of several beyond its log (here an empty one): the whole call is refused.
    let refused = client
        .subscribe(resume(&[("recent_buyers", 3), ("viewers", 1)]))
        .await
        .expect_err("viewers has no change");
    assert_eq!(refused.code(), Code::OutOfRange, "{refused}");
    assert!(refused.message().contains("segment `viewers` has logged 0 changes"), "{refused}");

    // `segstream subscribe --from N` starts at N: from 5 resumes after 4.
    let out = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(["--addr", &server.addr, "subscribe", "recent_buyers", "--from", "5", "--count", "1"])
        .env_remove("SEGSTREAM_TOKEN")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("has logged 3 changes, so it cannot resume after 4"), "{stderr}");
}

/// ListMembers' page sizes as documented: 0 means 1000, more than 10,000 means 10,000;
/// following `next_page_token` returns every member once, in key order, and the token
/// names a position, so members leaving between pages do not shift the next page; a
/// token the server did not give is INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_members_page_sizes_and_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    execute(
        &mut client,
        "CREATE TABLE accounts (id TEXT PRIMARY KEY, plan TEXT);
         CREATE SEGMENT pro AS SELECT id, plan FROM accounts WHERE plan = 'pro'",
    )
    .await;
    let ids: Vec<String> = (0..10_300).map(|i| format!("a{i:05}")).collect();
    let plan = |i: usize| if i % 97 == 5 { "free" } else { "pro" };
    let rows: Vec<_> =
        ids.iter().enumerate().map(|(i, id)| serde_json::json!({"id": id, "plan": plan(i)})).collect();
    for chunk in rows.chunks(2_500) {
        assert_eq!(ingest(&mut client, "accounts", chunk).await.accepted, chunk.len() as u64);
    }
    let expected: Vec<String> =
        ids.iter().enumerate().filter(|(i, _)| plan(*i) == "pro").map(|(_, id)| id.clone()).collect();
    assert!(expected.len() > 10_100, "more members than the largest page");
    let count = client.count_members(pb::CountMembersRequest { segment: "pro".into() }).await.expect("count");
    assert_eq!(count.into_inner().count, expected.len() as u64);

    let lister = client.clone();
    let page = |size: u32, token: String| {
        let mut client = lister.clone();
        async move {
            client
                .list_members(pb::ListMembersRequest {
                    segment: "pro".into(),
                    page_size: size,
                    page_token: token,
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let keys =
        |page: &pb::ListMembersResponse| page.members.iter().map(|m| m.key.clone()).collect::<Vec<_>>();
    // Key lists are long: say how they differ, not what they hold.
    let same = |got: Vec<String>, want: &[String], what: &str| {
        let first = got.iter().zip(want).position(|(g, w)| g != w);
        assert!(
            got == want,
            "{what}: {} keys from {:?} to {:?}, expected {} from {:?} to {:?}; first difference at {first:?}",
            got.len(),
            got.first(),
            got.last(),
            want.len(),
            want.first(),
            want.last()
        );
    };

    // 0: the default page of 1000.
    let first = page(0, String::new()).await.expect("page");
    same(keys(&first), &expected[..1000], "page size 0");
    assert!(!first.next_page_token.is_empty());
    assert_eq!(first.members[0].attributes_json, r#"{"plan":"pro"}"#);
    assert_eq!(first.members[0].segment, "pro");
    // More than the maximum: 10,000, and the next page has the rest.
    let capped = page(50_000, String::new()).await.expect("page");
    same(keys(&capped), &expected[..10_000], "page size 50,000");
    let rest = page(u32::MAX, capped.next_page_token.clone()).await.expect("page");
    same(keys(&rest), &expected[10_000..], "the page after 10,000");
    assert!(rest.next_page_token.is_empty(), "the last page has no token");
    same(keys(&page(10_000, String::new()).await.expect("page")), &expected[..10_000], "page size 10,000");

    // A size that does not divide the count: full pages, then the rest; every member once.
    let (mut all, mut sizes, mut token) = (Vec::new(), Vec::new(), String::new());
    loop {
        let p = page(3_000, token).await.expect("page");
        sizes.push(p.members.len());
        all.extend(keys(&p));
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    same(all, &expected, "pages of 3,000");
    assert_eq!(sizes, vec![3_000, 3_000, 3_000, expected.len() - 9_000]);

    // The member a page ended with, and the one after it, leave before the next page.
    execute(
        &mut client,
        &format!("DELETE FROM accounts WHERE id IN ('{}', '{}')", expected[999], expected[1000]),
    )
    .await;
    let second = page(5, first.next_page_token.clone()).await.expect("page");
    same(keys(&second), &expected[1001..1006], "the page after two members left");

    let bad = page(10, "zz".into()).await.expect_err("not a token");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");
    assert!(bad.message().contains("`page_token`"), "{bad}");
}

/// With the wall clock, a member leaves its window at the exact instant with no other
/// call: the server wakes when the exit is due (it does not wait for an event or poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_wall_clock_a_time_driven_exit_arrives_with_no_other_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_clock(dir.path(), "wall", &[]);
    let mut client = server.client().await;
    let schema =
        std::fs::read_to_string(repo_root().join("sql-examples/workload/schema.sql")).expect("schema");
    execute(&mut client, &schema).await;
    execute(
        &mut client,
        "CREATE SEGMENT just_bought AS SELECT DISTINCT user_id FROM events \
         WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '2 seconds'",
    )
    .await;
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            segments: vec!["just_bought".into()],
            start: Some(pb::subscribe_request::Start::Now(pb::Now {})),
            progress_interval_ms: 0,
        })
        .await
        .expect("subscribes")
        .into_inner();
    let wall_nanos = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_nanos()
            as i64
    };
    // Bought half a second ago (to the microsecond): leaves 1.5 s from now.
    let ts = (wall_nanos() - 500_000_000) / 1000 * 1000;
    let text =
        datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime(ts).expect("a time").to_string();
    let response = ingest(&mut client, "events", &[purchase("e1", "u1", &text)]).await;
    assert_eq!(response.accepted, 1, "{response:?}");
    let entered = next_change(&mut stream).await;
    assert_eq!((kind(&entered), entered.key.as_str()), ("entered".to_string(), "u1"));
    let exited = next_change(&mut stream).await;
    let received = wall_nanos();
    assert_eq!((kind(&exited), exited.key.as_str()), ("exited".to_string(), "u1"));
    assert_eq!(exited.at_unix_nanos, ts + 2_000_000_000, "the exit is stamped with the window's end");
    assert!(received >= exited.at_unix_nanos, "never before its instant");
    println!(
        "time-driven exit received {:.1} ms after its instant",
        (received - exited.at_unix_nanos) as f64 / 1e6
    );
}
