//! Crash recovery of the real server process under load. The reference workload's seven
//! segments are driven in rounds: in each round four clients send their ingest calls
//! concurrently (one or two calls each, of up to 200 rows, each call with its own
//! idempotency key), and when every call of the round has been acknowledged one clock
//! advance follows, to an absolute instant. At 20 random points the server is killed with
//! SIGKILL — mostly while a round's calls are in flight, sometimes during an advance —
//! restarted on the same data directory, and every unacknowledged call retried with its key
//! until acknowledged (a retry of an applied call is answered `duplicate` and applies
//! nothing; an advance to an instant already reached does nothing).
//!
//! What can be compared with an uninterrupted reference server (which sends the same calls
//! one after another): the calls of one round commute in what they leave behind, not in the
//! log they write on the way. Two calls about one user log `entered` then `updated` in one
//! order and only `entered` in the other; a purchase that arrives before an add-to-cart
//! keeps a cart abandoner from ever entering, after it makes them exit. Even the multiset
//! of `(key, kind)` per `(segment, at)` depends on the order. So the rounds are serialised
//! by barriers, and at every barrier (after a round's calls, after its advance) the last
//! sequence number of each segment is recorded. The two runs must then agree on:
//! - the members and attributes of each segment at every barrier, replayed from the change
//!   log (which must replay cleanly: `entered` only for a non-member, `exited` and
//!   `updated` only for a member), and at the end, read from the segments;
//! - every change an advance logs (the state before it is the same), exactly: key, kind,
//!   `at` and attributes, in order;
//! - the `at` of every change a round's calls log: the round's clock;
//! - the events stored: each event once (nothing acknowledged lost, nothing applied twice);
//!
//! and sequence numbers have no gap.
//!
//! Evidence that kills land mid-write: the calls in flight at each kill whose outcome the
//! client could not know (the call failed with the process) are resolved after the restart
//! by the retry's `duplicate` flag. A random moment mostly finds calls not yet written (a
//! call's processing is long next to the sync that ends it), so every other kill during
//! calls waits until a server thread is inside `fsync`/`fdatasync` (read from
//! /proc/<pid>/task/*/syscall): the steps that sync covers are written, and the process dies
//! before it acknowledges them. The test asserts that most kills during a round cut such
//! calls, and that over the run some cut calls had been applied (durable but never
//! acknowledged) and some had not.
//!
//! A longer run: `SEGSTREAM_CRASH_KILLS=100 cargo test -p segstream --test e2e crash -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use segstream_proto::display::value_text;
use segstream_proto::v1 as pb;
use segstream_proto::v1::segstream_client::SegstreamClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::grpc::{execute, json_rows, Server};
use crate::support::{repo_root, WORKLOAD_SEGMENTS};

type Client = SegstreamClient<Channel>;

/// A deterministic pseudo-random sequence (so a failure can be replayed).
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const CLIENTS: usize = 4;
const USERS: u64 = 150;
const MAX_ROWS: u64 = 200;
pub(crate) const START: i64 = 1_775_037_600; // 2026-04-01 10:00:00 UTC, in seconds

pub(crate) fn time_text(seconds: i64) -> String {
    segstream_proto::display::timestamp_text(seconds * 1_000_000_000).replace('T', " ")
}

/// One ingest call with its own idempotency key.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub(crate) id: usize,
    pub(crate) relation: &'static str,
    pub(crate) rows: Vec<serde_json::Value>,
}

impl Call {
    pub(crate) fn request(&self) -> pb::IngestRequest {
        pb::IngestRequest {
            relation: self.relation.to_string(),
            payload: json_rows(&self.rows),
            idempotency_key: format!("call-{}", self.id),
        }
    }
}

/// Each client's calls (sent concurrently with the other clients'), all at the clock
/// `clock`, then an advance to `advance_to`.
pub(crate) struct Round {
    pub(crate) clients: Vec<Vec<Call>>,
    pub(crate) clock: i64,
    pub(crate) advance_to: i64,
}

pub(crate) fn profiles(rng: &mut Lcg) -> Call {
    let rows = (0..USERS)
        .map(|u| {
            serde_json::json!({
                "user_id": format!("u{u}"),
                "country": "FR",
                "lifetime_value": rng.below(2000) as f64,
                "signup_at": time_text(START - rng.below(10 * 86_400) as i64),
            })
        })
        .collect();
    Call { id: 0, relation: "profiles", rows }
}

pub(crate) fn rounds(count: usize, rng: &mut Lcg) -> Vec<Round> {
    let mut clock = START;
    let mut event = 0;
    let mut id = 0;
    let mut rounds = Vec::with_capacity(count);
    for _ in 0..count {
        let mut clients = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            let mut calls = Vec::new();
            for _ in 0..1 + rng.below(2) {
                id += 1;
                let rows = (0..1 + rng.below(MAX_ROWS)).map(|_| {
                    event += 1;
                    let (id, user) = (format!("e{event}"), format!("u{}", rng.below(USERS)));
                    // Up to two hours late: out of order within and across calls.
                    let ts = time_text(clock - rng.below(7200) as i64);
                    match rng.below(10) {
                        0..=3 => serde_json::json!({"event_id": id, "user_id": user,
                            "event_type": "page_view", "page": "/pricing", "ts": ts}),
                        4..=5 => serde_json::json!({"event_id": id, "user_id": user,
                            "event_type": "add_to_cart", "product_id": "sku", "ts": ts}),
                        // Whole amounts: sums are exact in any order.
                        6..=7 => serde_json::json!({"event_id": id, "user_id": user,
                            "event_type": "purchase", "product_id": "sku",
                            "amount": (1 + rng.below(400)) as f64, "ts": ts}),
                        _ => serde_json::json!({"event_id": id, "user_id": user,
                            "event_type": "login", "ts": ts}),
                    }
                });
                calls.push(Call { id, relation: "events", rows: rows.collect() });
            }
            clients.push(calls);
        }
        let advance_to = clock + 60 * (1 + rng.below(180)) as i64;
        rounds.push(Round { clients, clock, advance_to });
        clock = advance_to;
    }
    rounds
}

pub(crate) async fn setup(client: &mut Client) {
    let read = |p: &str| std::fs::read_to_string(repo_root().join(p)).expect("workload file");
    execute(client, &read("sql-examples/workload/schema.sql")).await;
    execute(client, &read("sql-examples/workload/segments.sql")).await;
    execute(client, &format!("ADVANCE TIME TO TIMESTAMP '{}'", time_text(START))).await;
}

pub(crate) async fn advance(client: &mut Client, to: i64) -> Result<(), tonic::Status> {
    let sql = format!("ADVANCE TIME TO TIMESTAMP '{}'", time_text(to));
    client.execute(pb::ExecuteRequest { sql }).await.map(|_| ())
}

pub(crate) fn acknowledged(call: &Call, response: &pb::IngestResponse) {
    assert!(response.rejected.is_empty(), "call {}: {:?}", call.id, response.rejected);
    assert_eq!(response.accepted, call.rows.len() as u64, "call {}", call.id);
}

/// A logged change: `(seq, key, kind, at, attributes)`.
type Change = (u64, String, String, String, String);

/// Each segment's last sequence number (absent: no change yet).
pub(crate) type Positions = BTreeMap<String, u64>;

pub(crate) async fn positions(client: &mut Client) -> Positions {
    let response =
        execute(client, "SELECT segment, MAX(seq) AS last FROM segstream.changes GROUP BY segment").await;
    let Some(pb::statement_result::Result::Rows(set)) = &response.results[0].result else { panic!("rows") };
    set.rows
        .iter()
        .map(|r| (value_text(&r.values[0]), value_text(&r.values[1]).parse().expect("seq")))
        .collect()
}

/// One run's record: the position at every barrier (after each round's calls, after each
/// advance) and, at the end, the change log, the members and the stored events.
struct Run {
    barriers: Vec<Positions>,
    /// Per segment, `(seq, key, kind, at, attributes)` in sequence order.
    log: BTreeMap<String, Vec<Change>>,
    members: Vec<pb::ExecuteResponse>,
    events: pb::ExecuteResponse,
}

async fn finish(client: &mut Client, barriers: Vec<Positions>) -> Run {
    let response = execute(
        client,
        "SELECT segment, seq, key, kind, at, attributes FROM segstream.changes ORDER BY segment, seq",
    )
    .await;
    let Some(pb::statement_result::Result::Rows(set)) = &response.results[0].result else { panic!("rows") };
    let mut log: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for row in &set.rows {
        let text = |i: usize| value_text(&row.values[i]);
        log.entry(text(0)).or_default().push((
            text(1).parse().expect("seq"),
            text(2),
            text(3),
            text(4),
            text(5),
        ));
    }
    let mut members = Vec::new();
    for segment in WORKLOAD_SEGMENTS {
        members.push(execute(client, &format!("SELECT * FROM {segment} ORDER BY user_id")).await);
    }
    let events =
        execute(client, "SELECT COUNT(*) AS events, COUNT(DISTINCT event_id) AS ids FROM events").await;
    Run { barriers, log, members, events }
}

/// The uninterrupted reference: the same calls, one after another.
async fn reference_run(profiles: &Call, rounds: &[Round]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    setup(&mut client).await;
    client.ingest(profiles.request()).await.expect("profiles");
    let mut barriers = Vec::new();
    for round in rounds {
        for call in round.clients.iter().flatten() {
            let response = client.ingest(call.request()).await.expect("reference call").into_inner();
            acknowledged(call, &response);
            assert!(!response.duplicate, "call {}", call.id);
        }
        barriers.push(positions(&mut client).await);
        advance(&mut client, round.advance_to).await.expect("reference advance");
        barriers.push(positions(&mut client).await);
    }
    finish(&mut client, barriers).await
}

/// The server the clients talk to now, and how many times it has been started before.
#[derive(Clone)]
struct Current {
    generation: u64,
    client: Client,
}

/// What the kills need to know about the calls of a round.
#[derive(Default)]
struct InFlight {
    calls: Mutex<BTreeSet<usize>>,
    acknowledged: AtomicUsize,
}

/// How a call ended: whether an attempt failed because the server it was sent to died
/// (`cut_on`: that server's generation), and the `duplicate` flag of its acknowledgement.
#[derive(Debug)]
struct Outcome {
    id: usize,
    cut_on: Option<u64>,
    duplicate: bool,
}

/// One client: its calls in order, each retried after a kill until acknowledged.
async fn client_calls(
    calls: Vec<Call>,
    current: watch::Receiver<Current>,
    flight: Arc<InFlight>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for call in calls {
        let mut cut_on = None;
        loop {
            let Current { generation, mut client } = current.borrow().clone();
            flight.calls.lock().expect("lock").insert(call.id);
            let result = client.ingest(call.request()).await;
            flight.calls.lock().expect("lock").remove(&call.id);
            match result {
                Ok(response) => {
                    acknowledged(&call, response.get_ref());
                    flight.acknowledged.fetch_add(1, Ordering::SeqCst);
                    outcomes.push(Outcome { id: call.id, cut_on, duplicate: response.get_ref().duplicate });
                    break;
                }
                Err(status) => {
                    // Only a kill may fail a call: wait for the server that replaces it.
                    assert!(
                        !matches!(
                            status.code(),
                            tonic::Code::InvalidArgument
                                | tonic::Code::NotFound
                                | tonic::Code::FailedPrecondition
                        ),
                        "call {}: {status}",
                        call.id
                    );
                    cut_on = Some(generation);
                    let mut next = current.clone();
                    tokio::time::timeout(
                        Duration::from_secs(60),
                        next.wait_for(|c| c.generation > generation),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        panic!("call {} failed with no kill to explain it: {status}", call.id)
                    })
                    .expect("the driver is alive");
                }
            }
        }
    }
    outcomes
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum KillDuring {
    Calls,
    Advance,
}

/// A kill and the calls in flight at that moment.
struct Kill {
    generation: u64,
    in_flight: BTreeSet<usize>,
    /// Whether it landed while the server was syncing (its journal, or a checkpoint).
    on_sync: bool,
}

/// The server under test: killed, and started again on the same data directory.
struct Crashing {
    dir: PathBuf,
    server: Option<Server>,
    generation: u64,
    current: watch::Sender<Current>,
}

impl Crashing {
    /// Kills the server — with `at_sync`, while one of its threads is syncing the
    /// journal or a checkpoint, if that is seen within two seconds — and starts it again. Returns
    /// the calls in flight at the kill and whether it landed on a sync.
    async fn kill_and_restart(&mut self, flight: Arc<InFlight>, at_sync: bool) -> (BTreeSet<usize>, bool) {
        let server = self.server.take().expect("a server");
        let (in_flight, on_sync) = tokio::task::spawn_blocking(move || {
            let on_sync = at_sync && wait_for_wal_sync(server.pid(), Duration::from_secs(2));
            let in_flight = flight.calls.lock().expect("lock").clone();
            server.kill();
            (in_flight, on_sync)
        })
        .await
        .expect("kills");
        let dir = self.dir.clone();
        let server = tokio::task::spawn_blocking(move || Server::start(&dir, &[])).await.expect("starts");
        self.generation += 1;
        let client = server.client().await;
        self.server = Some(server);
        self.current.send_replace(Current { generation: self.generation, client });
        (in_flight, on_sync)
    }

    fn client(&self) -> Client {
        self.current.borrow().client.clone()
    }
}

/// Waits until a thread of process `pid` is inside `fsync` or `fdatasync`, as Linux shows
/// in /proc/<pid>/task/<tid>/syscall: a step written but not yet acknowledged is then
/// durable (in the page cache, which outlives the process) unless the sync covers none.
/// False when none is seen within `limit`.
pub(crate) fn wait_for_wal_sync(pid: u32, limit: Duration) -> bool {
    let syncs: &[&str] = if cfg!(target_arch = "aarch64") { &["82 ", "83 "] } else { &["74 ", "75 "] };
    wait_for_syscall(pid, syncs, limit)
}

/// Waits until a thread of process `pid` is inside one of `syscalls` (numbers followed by
/// a space, as /proc/<pid>/task/<tid>/syscall starts); false when none is seen within
/// `limit`.
pub(crate) fn wait_for_syscall(pid: u32, syscalls: &[&str], limit: Duration) -> bool {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        let Ok(entries) = std::fs::read_dir(&tasks) else { return false };
        for entry in entries.flatten() {
            if let Ok(call) = std::fs::read_to_string(entry.path().join("syscall")) {
                if syscalls.iter().any(|s| call.starts_with(s)) {
                    return true;
                }
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    let kills: usize = std::env::var("SEGSTREAM_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut rng = Lcg(7);
    let profiles = profiles(&mut rng);
    let rounds = rounds(kills + kills / 4 + 1, &mut rng);
    // A kill in `kills` distinct rounds: during its calls, or one time in five during its advance.
    let mut plan: Vec<Option<KillDuring>> = vec![None; rounds.len()];
    while plan.iter().flatten().count() < kills {
        let r = rng.below(rounds.len() as u64) as usize;
        if plan[r].is_none() {
            plan[r] = Some(if rng.below(5) == 0 { KillDuring::Advance } else { KillDuring::Calls });
        }
    }

    let expected = reference_run(&profiles, &rounds).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    setup(&mut client).await;
    client.ingest(profiles.request()).await.expect("profiles");
    let (current, receiver) = watch::channel(Current { generation: 0, client });
    let mut crashing =
        Crashing { dir: dir.path().to_path_buf(), server: Some(server), generation: 0, current };
    let mut barriers = Vec::new();
    let mut kills_in_calls: Vec<Kill> = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut advances_cut = 0;
    for (round, kill) in rounds.iter().zip(&plan) {
        let flight = Arc::new(InFlight::default());
        let tasks: Vec<_> = round
            .clients
            .iter()
            .map(|calls| tokio::spawn(client_calls(calls.clone(), receiver.clone(), Arc::clone(&flight))))
            .collect();
        if *kill == Some(KillDuring::Calls) {
            // After a random number of the round's calls are acknowledged, while others
            // are in flight.
            let total: usize = round.clients.iter().map(Vec::len).sum();
            let after = rng.below(total as u64) as usize;
            loop {
                let busy = !flight.calls.lock().expect("lock").is_empty();
                let done = flight.acknowledged.load(Ordering::SeqCst);
                if (busy && done >= after) || done == total {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            // Every other kill waits for a sync; the others land after a random pause.
            let at_sync = kills_in_calls.len().is_multiple_of(2);
            if !at_sync {
                tokio::time::sleep(Duration::from_micros(rng.below(5_000))).await;
            }
            let generation = crashing.generation;
            let (in_flight, on_sync) = crashing.kill_and_restart(Arc::clone(&flight), at_sync).await;
            kills_in_calls.push(Kill { generation, in_flight, on_sync });
        }
        for task in tasks {
            outcomes.extend(task.await.expect("client task"));
        }
        barriers.push(positions(&mut crashing.client()).await);

        if *kill == Some(KillDuring::Advance) {
            let mut client = crashing.client();
            let to = round.advance_to;
            let call = tokio::spawn(async move { advance(&mut client, to).await });
            tokio::time::sleep(Duration::from_micros(rng.below(20_000))).await;
            crashing.kill_and_restart(Arc::new(InFlight::default()), false).await;
            if call.await.expect("advance task").is_err() {
                advances_cut += 1;
            }
        }
        // Retried until acknowledged (an advance to an instant already reached does nothing).
        let mut attempts = 0;
        while let Err(status) = advance(&mut crashing.client(), round.advance_to).await {
            attempts += 1;
            assert!(attempts < 5, "the advance to {} keeps failing: {status}", round.advance_to);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        barriers.push(positions(&mut crashing.client()).await);
    }
    assert_eq!(crashing.generation as usize, kills);
    let actual = finish(&mut crashing.client(), barriers).await;

    // The evidence: what the calls in flight at each kill turned out to be.
    let outcome: BTreeMap<usize, &Outcome> = outcomes.iter().map(|o| (o.id, o)).collect();
    assert_eq!(outcome.len(), rounds.iter().flat_map(|r| r.clients.iter().flatten()).count());
    let (mut applied, mut not_applied, mut kills_cutting_calls) = (0, 0, 0);
    for kill in &kills_in_calls {
        let cut: Vec<&Outcome> = kill
            .in_flight
            .iter()
            .map(|id| outcome[id])
            .filter(|o| o.cut_on == Some(kill.generation))
            .collect();
        kills_cutting_calls += usize::from(!cut.is_empty());
        applied += cut.iter().filter(|o| o.duplicate).count();
        not_applied += cut.iter().filter(|o| !o.duplicate).count();
    }
    for o in &outcomes {
        assert!(
            o.cut_on.is_some() || !o.duplicate,
            "call {} was acknowledged as a duplicate on its first try",
            o.id
        );
    }
    eprintln!(
        "crash: {kills} kills ({} during calls, {} of them on a sync, {} with calls cut in flight; {} \
         during an advance, {advances_cut} cutting it); calls cut in flight: {applied} had been applied \
         (the retry was a duplicate), {not_applied} had not",
        kills_in_calls.len(),
        kills_in_calls.iter().filter(|k| k.on_sync).count(),
        kills_cutting_calls,
        kills - kills_in_calls.len()
    );
    assert!(
        kills_cutting_calls * 2 > kills_in_calls.len(),
        "only {kills_cutting_calls} of {} kills during calls cut a call in flight",
        kills_in_calls.len()
    );
    assert!(applied > 0, "no kill landed between a call's write and its acknowledgement");
    assert!(not_applied > 0, "no kill landed before a call in flight was written");

    compare(&expected, &actual, &rounds);
}

/// The comparison the module doc describes.
fn compare(expected: &Run, actual: &Run, rounds: &[Round]) {
    assert_eq!(actual.barriers.len(), expected.barriers.len());
    let changes: usize = actual.log.values().map(Vec::len).sum();
    assert!(changes > 200, "the run produced changes to compare: {changes}");
    for segment in WORKLOAD_SEGMENTS {
        let want = expected.log.get(segment).map(Vec::as_slice).unwrap_or(&[]);
        let got = actual.log.get(segment).map(Vec::as_slice).unwrap_or(&[]);
        for (i, change) in got.iter().enumerate() {
            assert_eq!(change.0, i as u64 + 1, "a gap or a duplicate in {segment}'s log");
        }
        let (mut members_want, mut members_got) = (BTreeMap::new(), BTreeMap::new());
        let (mut from_want, mut from_got) = (0, 0);
        for (b, (barrier_want, barrier_got)) in expected.barriers.iter().zip(&actual.barriers).enumerate() {
            let round = &rounds[b / 2];
            let to_want = barrier_want.get(segment).copied().unwrap_or(0) as usize;
            let to_got = barrier_got.get(segment).copied().unwrap_or(0) as usize;
            let phase_want = &want[from_want..to_want];
            let phase_got = &got[from_got..to_got];
            if b % 2 == 0 {
                // A round's calls: only what they leave behind, and the instant.
                let clock = time_text(round.clock).replace(' ', "T");
                for change in phase_want.iter().chain(phase_got) {
                    assert_eq!(
                        change.3,
                        clock,
                        "{segment}: a change of round {} not at its clock: {change:?}",
                        b / 2
                    );
                }
            } else {
                // An advance: exactly the same changes.
                let strip = |p: &[Change]| {
                    p.iter().map(|c| (c.1.clone(), c.2.clone(), c.3.clone(), c.4.clone())).collect::<Vec<_>>()
                };
                assert_eq!(strip(phase_got), strip(phase_want), "{segment}: the advance of round {}", b / 2);
            }
            replay(&mut members_want, phase_want, segment);
            replay(&mut members_got, phase_got, segment);
            assert_eq!(members_got, members_want, "{segment}: the members after barrier {b}");
            (from_want, from_got) = (to_want, to_got);
        }
        assert_eq!(
            (from_want, from_got),
            (want.len(), got.len()),
            "{segment}: changes after the last barrier"
        );
    }
    assert!(actual.members == expected.members, "the members at the end differ from the reference run");
    let total = rounds.iter().flat_map(|r| r.clients.iter().flatten()).map(|c| c.rows.len()).sum::<usize>();
    for run in [expected, actual] {
        let Some(pb::statement_result::Result::Rows(set)) = &run.events.results[0].result else {
            panic!("rows")
        };
        let counts: Vec<String> = set.rows[0].values.iter().map(value_text).collect();
        assert_eq!(counts, vec![total.to_string(), total.to_string()], "events stored, distinct event ids");
    }
}

/// Applies a stretch of the log to a segment's members, checking that it applies.
fn replay(members: &mut BTreeMap<String, String>, changes: &[Change], segment: &str) {
    for (seq, key, kind, _, attributes) in changes {
        let present = members.contains_key(key);
        match kind.as_str() {
            "entered" => assert!(!present, "{segment} #{seq}: {key} entered while a member"),
            "exited" | "updated" => assert!(present, "{segment} #{seq}: {key} {kind} while not a member"),
            other => panic!("{segment} #{seq}: unexpected kind {other}"),
        }
        if kind == "exited" {
            members.remove(key);
        } else {
            members.insert(key.clone(), attributes.clone());
        }
    }
}
