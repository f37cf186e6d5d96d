//! The journal under SIGKILL, through the public gRPC API, against a twin. Two servers on
//! the manual clock get the same calls in the same order (the workload's seven segments,
//! ingest calls with idempotency keys and clock advances to absolute instants): one is
//! never killed; the other checkpoints every 10 ms and is killed with SIGKILL at random
//! moments: right after a call was sent, while a thread syncs (`fdatasync`: the journal),
//! or while a thread is in `fsync` (a checkpoint starting a new journal file). After each
//! kill it is restarted and the call in flight retried with the same key until answered.
//! A live subscriber follows all seven segments on the killed server, resuming after each
//! restart from the last change it received.
//!
//! The calls are sent one at a time, so both servers see one order, and the promise can be
//! checked exactly: the killed server's final change log equals the twin's (every segment,
//! every seq, key, kind, `at`, attributes and reason), its members and stored events
//! equal the twin's, and every change the subscriber received before and between kills is
//! in that final log, identical, with no gap and no duplicate on the way. (Concurrent
//! calls under kills are `crash.rs`.)
//!
//! A longer run: `SEGSTREAM_TWIN_KILLS=60 cargo test -p segstream --test e2e crash_twin -- --nocapture`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use segstream_proto::v1 as pb;
use segstream_proto::v1::segstream_client::SegstreamClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::crash::{self, Call, Lcg};
use crate::grpc::{execute, Server};
use crate::support::WORKLOAD_SEGMENTS;

type Client = SegstreamClient<Channel>;

/// One call, sent to both servers.
#[derive(Clone, Debug)]
enum Input {
    Ingest(Call),
    Advance(i64),
}

/// The rounds of `crash.rs`, one call after another.
fn inputs(rounds: Vec<crash::Round>) -> Vec<Input> {
    let mut inputs = Vec::new();
    for round in rounds {
        inputs.extend(round.clients.into_iter().flatten().map(Input::Ingest));
        inputs.push(Input::Advance(round.advance_to));
    }
    inputs
}

/// Sends one input; `Some(duplicate)` for an acknowledged ingest.
async fn send(client: &mut Client, input: &Input) -> Result<Option<bool>, tonic::Status> {
    match input {
        Input::Ingest(call) => {
            let response = client.ingest(call.request()).await?.into_inner();
            crash::acknowledged(call, &response);
            Ok(Some(response.duplicate))
        }
        Input::Advance(to) => crash::advance(client, *to).await.map(|_| None),
    }
}

/// Where a kill lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// Right after the call was sent (usually while it is processed).
    Sent,
    /// While a thread is in `fdatasync` (the journal's group commit).
    JournalSync,
    /// While a thread is in `fsync` (a checkpoint rolling the journal to a new file).
    Checkpoint,
}

/// Every change of every segment, read by a subscription from the start of each log up to
/// the last seq the server reports.
async fn full_log(client: &mut Client) -> BTreeMap<(String, u64), pb::Change> {
    let last = crash::positions(client).await;
    let request = pb::SubscribeRequest {
        segments: WORKLOAD_SEGMENTS.iter().map(|s| s.to_string()).collect(),
        start: Some(pb::subscribe_request::Start::Resume(pb::Resume { after_seq: HashMap::new() })),
        progress_interval_ms: 100,
    };
    let mut stream = client.subscribe(request).await.expect("subscribes").into_inner();
    let mut log = BTreeMap::new();
    let done = |log: &BTreeMap<(String, u64), pb::Change>| {
        last.iter().all(|(segment, seq)| log.contains_key(&(segment.clone(), *seq)))
    };
    while !done(&log) {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("the log arrives")
            .expect("the stream stays open")
            .expect("a message");
        if let Some(pb::subscribe_response::Event::Change(change)) = message.event {
            log.insert((change.segment.clone(), change.seq), change);
        }
    }
    log
}

/// The live subscriber: follows every segment of the server `current` names, and after a
/// kill resumes on the restarted one after the last change it received. A gap or a
/// duplicate fails it at once.
async fn follow(
    mut current: watch::Receiver<(u64, Client)>,
    received: Arc<Mutex<Vec<pb::Change>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: HashMap<String, u64> = HashMap::new();
    while !*stop.borrow() {
        let (generation, mut client) = current.borrow().clone();
        let request = pb::SubscribeRequest {
            segments: WORKLOAD_SEGMENTS.iter().map(|s| s.to_string()).collect(),
            start: Some(pb::subscribe_request::Start::Resume(pb::Resume { after_seq: last.clone() })),
            progress_interval_ms: 100,
        };
        if let Ok(response) = client.subscribe(request).await {
            let mut stream = response.into_inner();
            loop {
                tokio::select! {
                    message = stream.message() => {
                        let Ok(Some(message)) = message else { break };
                        let Some(pb::subscribe_response::Event::Change(change)) = message.event else { continue };
                        let before = last.get(&change.segment).copied().unwrap_or(0);
                        assert_eq!(change.seq, before + 1, "a gap or a duplicate after a resume: {change:?}");
                        last.insert(change.segment.clone(), change.seq);
                        received.lock().expect("lock").push(change);
                    }
                    _ = stop.changed() => return,
                }
            }
        }
        // The server died (or was not up yet): wait for the next one.
        let mut next = current.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), next.wait_for(|c| c.0 > generation)).await;
        current = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_ends_with_the_log_of_a_twin_never_killed() {
    let kills: usize = std::env::var("SEGSTREAM_TWIN_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let mut rng = Lcg(23);
    let profiles = crash::profiles(&mut rng);
    let inputs = inputs(crash::rounds(kills.div_ceil(2).max(6), &mut rng));
    let mut plan: BTreeMap<usize, Moment> = BTreeMap::new();
    while plan.len() < kills.min(inputs.len()) {
        let at = rng.below(inputs.len() as u64) as usize;
        let moment = [Moment::Sent, Moment::JournalSync, Moment::Checkpoint][rng.below(3) as usize];
        plan.entry(at).or_insert(moment);
    }

    let twin_dir = tempfile::tempdir().expect("tempdir");
    let twin = Server::start(twin_dir.path(), &[]);
    let mut twin_client = twin.client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--checkpoint-interval-ms", "10"];
    let mut server = Server::start(dir.path(), &args);
    let mut client = server.client().await;
    for c in [&mut twin_client, &mut client] {
        crash::setup(c).await;
        c.ingest(profiles.request()).await.expect("profiles");
    }

    let (current, watching) = watch::channel((0, client.clone()));
    let (stop, stopping) = watch::channel(false);
    let received = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tokio::spawn(follow(watching, Arc::clone(&received), stopping));

    let fsync: &[&str] = if cfg!(target_arch = "aarch64") { &["82 "] } else { &["74 "] };
    let fdatasync: &[&str] = if cfg!(target_arch = "aarch64") { &["83 "] } else { &["75 "] };
    let mut generation = 0;
    // Per moment: kills, and how many of them caught the server in that syscall.
    let mut landed: BTreeMap<Moment, (usize, usize)> = BTreeMap::new();
    let (mut cut_applied, mut cut_lost) = (0, 0);
    for (i, input) in inputs.iter().enumerate() {
        send(&mut twin_client, input).await.expect("the twin answers");
        let Some(&moment) = plan.get(&i) else {
            send(&mut client, input).await.expect("no kill: the call is answered");
            continue;
        };
        let first = tokio::spawn({
            let (mut client, input) = (client.clone(), input.clone());
            async move { send(&mut client, &input).await }
        });
        let pid = server.pid();
        let caught = tokio::task::spawn_blocking(move || match moment {
            Moment::Sent => true,
            Moment::JournalSync => crash::wait_for_syscall(pid, fdatasync, Duration::from_secs(2)),
            Moment::Checkpoint => crash::wait_for_syscall(pid, fsync, Duration::from_secs(2)),
        })
        .await
        .expect("waits");
        let count = landed.entry(moment).or_default();
        count.0 += 1;
        count.1 += usize::from(caught);
        server.kill();
        let answered_before_kill = first.await.expect("the call's task").is_ok();
        server = tokio::task::spawn_blocking({
            let dir = dir.path().to_path_buf();
            move || Server::start(&dir, &args)
        })
        .await
        .expect("restarts");
        client = server.client().await;
        generation += 1;
        current.send_replace((generation, client.clone()));
        // The retry, with the same key (an advance to an absolute instant is its own key).
        let duplicate = send(&mut client, input).await.expect("the retry is answered");
        if !answered_before_kill {
            match duplicate {
                Some(true) => cut_applied += 1,
                Some(false) => cut_lost += 1,
                None => {}
            }
        }
    }

    // The subscriber catches up with the final log, then stops.
    let last = crash::positions(&mut client).await;
    let caught_up = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let seen: BTreeMap<String, u64> = {
                let received = received.lock().expect("lock");
                let mut seen = BTreeMap::new();
                for change in received.iter() {
                    seen.insert(change.segment.clone(), change.seq);
                }
                seen
            };
            if seen == last {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    stop.send_replace(true);
    subscriber.await.expect("the subscriber saw no gap and no duplicate");
    assert!(caught_up.is_ok(), "the subscriber reached the final positions {last:?}");

    let expected = full_log(&mut twin_client).await;
    let actual = full_log(&mut client).await;
    for (key, change) in &expected {
        assert_eq!(actual.get(key), Some(change), "change {key:?}");
    }
    for (key, change) in &actual {
        assert_eq!(expected.get(key), Some(change), "change {key:?}, not in the twin's log");
    }
    let received = received.lock().expect("lock").clone();
    assert!(!received.is_empty(), "the subscriber received changes");
    for change in &received {
        assert_eq!(
            actual.get(&(change.segment.clone(), change.seq)),
            Some(change),
            "a change the subscriber received is in the final log, identical"
        );
    }
    for segment in WORKLOAD_SEGMENTS {
        let sql = format!("SELECT * FROM {segment} ORDER BY user_id");
        assert_eq!(execute(&mut client, &sql).await, execute(&mut twin_client, &sql).await, "{segment}");
    }
    let sql = "SELECT COUNT(*) AS events, COUNT(DISTINCT event_id) AS ids, SUM(amount) AS amount FROM events";
    assert_eq!(execute(&mut client, sql).await, execute(&mut twin_client, sql).await, "stored events");

    eprintln!(
        "{} inputs, {} changes, {} received live; kills by moment (kills, caught in the syscall): {landed:?}; \
         calls cut by a kill: {cut_applied} applied before it, {cut_lost} not",
        inputs.len(),
        expected.len(),
        received.len()
    );
    for moment in [Moment::JournalSync, Moment::Checkpoint] {
        if let Some((kills, caught)) = landed.get(&moment) {
            assert!(*caught > 0, "{moment:?}: none of {kills} kills caught the server in the syscall");
        }
    }
}
