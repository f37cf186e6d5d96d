//! Change latency through the gRPC service, in process over localhost: from a single-event
//! `Ingest` call's acknowledgement (and from its send) to a subscriber, on its own
//! connection, receiving the `entered` change that event causes.
//!
//! Two phases on the recent_buyers segment (every event is a purchase by a new user, so
//! every event is one change):
//! 1. **Saturation**: `SEGSTREAM_BENCH_CLIENTS` (default 8) clients ingest back to back for
//!    a few seconds; the acknowledged rate is the maximum sustainable load.
//! 2. **Latency** at a fixed offered load (default: half of that maximum; or
//!    `SEGSTREAM_BENCH_RATE` events/s, which skips phase 1), paced open-loop for `SEGSTREAM_BENCH_SECONDS`
//!    (default 10): p50/p99/max of ack -> received and send -> received.
//!
//! With `SEGSTREAM_BENCH_EXITS=N` it measures time-driven exits instead: a server on the wall
//! clock (`SEGSTREAM_BENCH_TIMER_DELAY_MS`, default the server's), N members whose windows
//! end 1-5 s later, and how late each exit reaches a subscriber after its instant, with no
//! other call; then the CPU the idle server uses.
//!
//! ```sh
//! cargo bench -p segstream --bench latency
//! SEGSTREAM_BENCH_RATE=1000 SEGSTREAM_BENCH_SECONDS=30 cargo bench -p segstream --bench latency
//! SEGSTREAM_BENCH_EXITS=1000 cargo bench -p segstream --bench latency
//! ```

/// The binary's allocator, configured as it is (see `src/allocator.rs`), so the figures
/// are the binary's.
/// (Its unit test runs with the binary's tests, not here.)
#[allow(dead_code, unused_imports)]
#[path = "../src/allocator.rs"]
mod allocator;

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use segstream_engine::ClockMode;
use segstream_proto::v1 as pb;
use segstream_proto::v1::segstream_client::SegstreamClient;
use tonic::transport::Channel;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn purchase(user: u64) -> String {
    format!(
        r#"{{"event_id":"e{user}","user_id":"u{user}","event_type":"purchase","amount":10.0,"ts":"2026-04-01 10:00:00"}}"#
    )
}

async fn ingest_one(client: &mut SegstreamClient<Channel>, user: u64) {
    let request = pb::IngestRequest {
        relation: "events".into(),
        payload: Some(pb::ingest_request::Payload::Json(pb::JsonRows { rows: vec![purchase(user)] })),
        idempotency_key: String::new(),
    };
    let response = client.ingest(request).await.expect("ingest").into_inner();
    assert_eq!(response.accepted, 1);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {name:<22} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms   ({} samples)",
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        samples.len()
    );
}

fn main() {
    allocator::configure();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    if let Ok(exits) = std::env::var("SEGSTREAM_BENCH_EXITS") {
        time_driven_exits(exits.parse().expect("SEGSTREAM_BENCH_EXITS is a number")).await;
        return;
    }
    let clients = env("SEGSTREAM_BENCH_CLIENTS", 8);
    let seconds = env("SEGSTREAM_BENCH_SECONDS", 10);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = segstream_server::ServerConfig::new(dir.path());
    config.clock = ClockMode::Manual;
    config.addr = "127.0.0.1:0".parse().expect("address");
    config.metrics_addr = None;
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        segstream_server::serve(
            config,
            async {
                let _ = stop_rx.await;
            },
            move |listening| {
                let _ = addr_tx.send(listening.grpc);
            },
        )
        .await
        .expect("serves");
    });
    let url = format!("http://{}", addr_rx.await.expect("server listening"));
    let mut client = SegstreamClient::connect(url.clone()).await.expect("connects");
    let setup = [
        include_str!("../../../sql-examples/workload/schema.sql"),
        include_str!("../../../sql-examples/recent_buyers/segment.sql"),
        "ADVANCE TIME TO TIMESTAMP '2026-04-01 10:00:00'",
    ];
    for sql in setup {
        client.execute(pb::ExecuteRequest { sql: sql.into() }).await.expect("setup");
    }

    // The subscriber records when each user's change arrives.
    let received: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut subscriber = SegstreamClient::connect(url.clone()).await.expect("connects");
    let mut stream = subscriber
        .subscribe(pb::SubscribeRequest {
            segments: vec!["recent_buyers".into()],
            start: Some(pb::subscribe_request::Start::Now(pb::Now {})),
            progress_interval_ms: 1000,
        })
        .await
        .expect("subscribes")
        .into_inner();
    let subscriber_task = {
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                if let Some(pb::subscribe_response::Event::Change(change)) = message.event {
                    let now = Instant::now();
                    if let Ok(mut r) = received.lock() {
                        r.insert(change.key, now);
                    }
                }
            }
        })
    };

    // 1. Saturation: closed loop, `clients` connections.
    let next_user = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // With a rate given there is nothing to find out.
    let saturation = if std::env::var("SEGSTREAM_BENCH_RATE").is_ok() {
        Duration::ZERO
    } else {
        Duration::from_secs(seconds.clamp(2, 5))
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next_user = Arc::clone(&next_user);
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = SegstreamClient::connect(url).await.expect("connects");
            while started.elapsed() < saturation {
                let user = next_user.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ingest_one(&mut client, user).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    let sent = next_user.load(std::sync::atomic::Ordering::Relaxed);
    let max_rate = sent as f64 / started.elapsed().as_secs_f64();
    if !saturation.is_zero() {
        println!(
            "saturation: {clients} clients, single-event Ingest calls: {max_rate:.0} events/s acknowledged"
        );
        // The subscriber catches up with the saturation phase before latency is measured.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // 2. Latency at a fixed offered load, paced open-loop over `clients` connections.
    let rate = env("SEGSTREAM_BENCH_RATE", (max_rate / 2.0).max(1.0) as u64).max(1);
    let total = rate * seconds;
    let first = next_user.load(std::sync::atomic::Ordering::Relaxed);
    let timings: Arc<Mutex<Vec<(u64, Instant, Instant)>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.clone();
        let timings = Arc::clone(&timings);
        tasks.push(tokio::spawn(async move {
            let mut client = SegstreamClient::connect(url).await.expect("connects");
            let mut i = c;
            while i < total {
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let user = first + i;
                let sent_at = Instant::now();
                ingest_one(&mut client, user).await;
                let acked_at = Instant::now();
                if let Ok(mut t) = timings.lock() {
                    t.push((user, sent_at, acked_at));
                }
                i += clients;
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let timings = timings.lock().map(|t| t.clone()).unwrap_or_default();
    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    // Per second of the run, so a warm-up or a backlog shows.
    let mut by_second: Vec<Vec<Duration>> = vec![Vec::new(); seconds as usize + 1];
    let mut after_ack = Vec::new();
    let mut after_send = Vec::new();
    let mut before_ack = 0usize;
    let mut missing = 0usize;
    for (user, sent_at, acked_at) in &timings {
        match received.get(&format!("u{user}")) {
            Some(at) => {
                after_send.push(at.saturating_duration_since(*sent_at));
                if at < acked_at {
                    before_ack += 1;
                }
                after_ack.push(at.saturating_duration_since(*acked_at));
                let second =
                    (sent_at.saturating_duration_since(started).as_secs() as usize).min(seconds as usize);
                by_second[second].push(at.saturating_duration_since(*acked_at));
            }
            None => missing += 1,
        }
    }
    println!(
        "latency: offered {rate} events/s for {:.1} s ({} events, achieved {:.0}/s), {clients} clients",
        elapsed.as_secs_f64(),
        timings.len(),
        timings.len() as f64 / elapsed.as_secs_f64()
    );
    report("ack -> subscriber", after_ack);
    report("send -> subscriber", after_send);
    println!("  changes that reached the subscriber before the ack: {before_ack}; never received: {missing}");
    let per_second: Vec<String> = by_second
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|mut s| {
            s.sort();
            format!("{:.1}", percentile(&s, 0.99).as_secs_f64() * 1e3)
        })
        .collect();
    println!("  ack -> subscriber p99 by second (ms): {}", per_second.join(" "));
    subscriber_task.abort();
    let _ = stop_tx.send(());
    let _ = server.await;
}

/// Nanoseconds since the epoch, from the system clock (the engine's wall clock).
fn wall_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_nanos() as i64
}

/// Time-driven exits on the wall clock: how long after its instant each exit reaches a
/// subscriber, with no call to the server meanwhile; then the idle server's CPU.
async fn time_driven_exits(members: u64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = segstream_server::ServerConfig::new(dir.path());
    config.clock = ClockMode::Wall;
    config.addr = "127.0.0.1:0".parse().expect("address");
    config.metrics_addr = None;
    config.timer_delay =
        Duration::from_millis(env("SEGSTREAM_BENCH_TIMER_DELAY_MS", config.timer_delay.as_millis() as u64));
    let delay = config.timer_delay;
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        segstream_server::serve(
            config,
            async {
                let _ = stop_rx.await;
            },
            move |listening| {
                let _ = addr_tx.send(listening.grpc);
            },
        )
        .await
        .expect("serves");
    });
    let url = format!("http://{}", addr_rx.await.expect("server listening"));
    let mut client = SegstreamClient::connect(url.clone()).await.expect("connects");
    for sql in [
        include_str!("../../../sql-examples/workload/schema.sql"),
        include_str!("../../../sql-examples/recent_buyers/segment.sql"),
    ] {
        client.execute(pb::ExecuteRequest { sql: sql.into() }).await.expect("setup");
    }
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            segments: vec!["recent_buyers".into()],
            start: Some(pb::subscribe_request::Start::Now(pb::Now {})),
            progress_interval_ms: 1000,
        })
        .await
        .expect("subscribes")
        .into_inner();
    // Purchases a little under 3 hours old: each member leaves 1-5 s from now, at its own
    // instant.
    let three_hours = 3 * 3600 * 1_000_000_000i64;
    let start = wall_nanos() - three_hours + 1_000_000_000;
    let rows: Vec<String> = (0..members)
        .map(|i| {
            let ts = start + (i as i64 * 4_000_000_000) / members.max(1) as i64;
            let text = datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime(ts).expect("a time");
            format!(
                r#"{{"event_id":"x{i}","user_id":"x{i}","event_type":"purchase","amount":1.0,"ts":"{text}"}}"#
            )
        })
        .collect();
    let request = pb::IngestRequest {
        relation: "events".into(),
        payload: Some(pb::ingest_request::Payload::Json(pb::JsonRows { rows })),
        idempotency_key: String::new(),
    };
    let response = client.ingest(request).await.expect("ingest").into_inner();
    assert_eq!(response.accepted, members);
    let mut late = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (late.len() as u64) < members {
        let Ok(Ok(Some(message))) = tokio::time::timeout_at(deadline, stream.message()).await else { break };
        if let Some(pb::subscribe_response::Event::Change(change)) = message.event {
            if change.kind == pb::ChangeKind::Exited as i32 {
                let received = wall_nanos();
                late.push(Duration::from_nanos(received.saturating_sub(change.at_unix_nanos).max(0) as u64));
            }
        }
    }
    println!(
        "time-driven exits on the wall clock: {members} members leaving over 4 s, timer delay {} ms",
        delay.as_millis()
    );
    report("instant -> subscriber", late.clone());
    println!("  exits never received: {}", members - late.len() as u64);
    // The idle server: no call, no timer due.
    let idle = Duration::from_secs(5);
    let cpu_before = support::process_cpu_seconds();
    tokio::time::sleep(idle).await;
    let cpu = support::process_cpu_seconds() - cpu_before;
    println!("  idle: {:.1} ms of CPU per second over {} s", cpu * 1e3 / idle.as_secs_f64(), idle.as_secs());
    let _ = stop_tx.send(());
    let _ = server.await;
}
