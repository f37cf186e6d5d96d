//! Clock advances fire timers in passes: the due instants of different members run as
//! one step, each member at its own instant. The change log must be what one step per
//! instant writes (`EngineOptions::with_timer_passes(false)`, the reference): the same
//! records with the same `at` instants, in `at` order, and the same members.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use segstream_engine::{ChangeRecord, Engine, TimerPassStats};
use segstream_types::Timestamp;

use crate::support::{
    fresh_engine, fresh_engine_with, workload_schema, workload_segments, WORKLOAD_SEGMENTS,
};

const MINUTE: i64 = 60_000_000_000;

/// Segments whose time conditions set timers; all but `initials` keep member keys apart.
const SEGMENTS: [(&str, &str); 7] = [
    ("bought", "SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '40 minutes'"),
    ("viewed_twice", "SELECT user_id, COUNT(*) AS views FROM events WHERE event_type = 'page_view' AND ts > NOW() - INTERVAL '70 minutes' GROUP BY user_id HAVING COUNT(*) >= 2"),
    ("spenders", "SELECT user_id, SUM(amount) AS total FROM events WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '3 hours' GROUP BY user_id HAVING MAX(ts) > NOW() - INTERVAL '25 minutes'"),
    // Its rows enter a while after their oldest event: an expiry processed at one
    // instant sets a timer a little later, inside the same pass.
    ("settled", "SELECT user_id FROM events WHERE ts > NOW() - INTERVAL '30 minutes' GROUP BY user_id HAVING MIN(ts) <= NOW() - INTERVAL '7 minutes'"),
    ("no_purchase_after_login", "SELECT DISTINCT c.user_id FROM events c WHERE c.event_type = 'login' AND c.ts <= NOW() - INTERVAL '5 minutes' AND c.ts > NOW() - INTERVAL '2 hours' AND NOT EXISTS (SELECT 1 FROM events p WHERE p.user_id = c.user_id AND p.event_type = 'purchase' AND p.ts >= c.ts)"),
    ("bought_and_logged_in", "SELECT user_id FROM bought WHERE user_id IN (SELECT user_id FROM events WHERE event_type = 'login' AND ts > NOW() - INTERVAL '20 minutes')"),
    // The member key is computed: users `u0x` share the key `u0`. Its timers fire one
    // instant per step.
    ("initials", "SELECT DISTINCT substr(user_id, 1, 2) AS initial FROM events WHERE ts > NOW() - INTERVAL '45 minutes'"),
];

const KINDS: [&str; 3] = ["purchase", "page_view", "login"];

#[derive(Debug, Clone)]
enum Op {
    /// (user, kind, amount, minutes from the clock)
    Events(Vec<(u8, u8, u8, i64)>),
    Advance {
        minutes: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec((0..16u8, 0..3u8, 1..5u8, -90i64..10), 1..12).prop_map(Op::Events),
        2 => prop_oneof![0..20u32, 20..200u32].prop_map(|minutes| Op::Advance { minutes }),
    ]
}

async fn engine_with_segments(passes: bool) -> (Engine, tempfile::TempDir) {
    let (mut engine, dir) = fresh_engine_with(|o| o.with_timer_passes(passes));
    engine.execute(&workload_schema()).await.expect("schema");
    engine.execute("ADVANCE TIME TO TIMESTAMP '2026-03-01 00:00:00'").await.expect("clock");
    for (name, query) in SEGMENTS {
        engine.execute(&format!("CREATE SEGMENT {name} AS {query}")).await.expect("segment");
    }
    (engine, dir)
}

/// A segment's log as its records in `at` order (within one instant, by key and kind),
/// after checking that sequence numbers run 1, 2, 3... and `at` never goes back.
fn log_of(engine: &Engine, segment: &str) -> Vec<(Timestamp, String, String, String)> {
    let records: Vec<ChangeRecord> =
        engine.change_records().expect("change log").into_iter().filter(|r| r.segment == segment).collect();
    for (i, pair) in records.windows(2).enumerate() {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "{segment}: sequence gap after record {i}");
        assert!(
            pair[1].at >= pair[0].at,
            "{segment}: seq {} at {} before {}",
            pair[1].seq,
            pair[1].at,
            pair[0].at
        );
    }
    let mut log: Vec<_> =
        records.into_iter().map(|r| (r.at, r.key, r.kind.as_str().to_string(), r.attributes)).collect();
    log.sort();
    log
}

#[test]
fn workload_segments_fire_their_timers_in_passes() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (mut engine, _dir) = fresh_engine();
        engine.execute(&workload_schema()).await.expect("schema");
        engine.execute(&workload_segments()).await.expect("segments");
        for name in WORKLOAD_SEGMENTS {
            assert!(engine.fires_timers_in_passes(name), "{name} keeps member keys apart");
        }
        engine
            .execute("CREATE SEGMENT initials AS SELECT DISTINCT substr(user_id, 1, 2) AS initial FROM events WHERE ts > NOW() - INTERVAL '1 hour'")
            .await
            .expect("segment");
        assert!(!engine.fires_timers_in_passes("initials"), "a computed key mixes members");
    });
}

/// `a`'s oldest event expires at 10:10; its next oldest then makes it enter at 10:11,
/// the instant `b` leaves. The pass over 10:10 and 10:11 sets that timer inside itself,
/// so it is taken back and run again ending before 10:11.
#[test]
fn a_pass_that_sets_a_timer_inside_itself_is_run_again_shorter() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut logs = Vec::new();
        for passes in [true, false] {
            let (mut engine, _dir) = fresh_engine_with(|o| o.with_timer_passes(passes));
            engine.execute(&workload_schema()).await.expect("schema");
            engine.execute("ADVANCE TIME TO TIMESTAMP '2026-03-01 10:09:00'").await.expect("clock");
            engine
                .execute("CREATE SEGMENT settled AS SELECT user_id FROM events WHERE ts > NOW() - INTERVAL '10 minutes' GROUP BY user_id HAVING MIN(ts) <= NOW() - INTERVAL '2 minutes'")
                .await
                .expect("segment");
            engine
                .execute(
                    "INSERT INTO events (event_id, user_id, event_type, ts) VALUES \
                     ('e1', 'a', 'login', TIMESTAMP '2026-03-01 10:00:00'), \
                     ('e2', 'a', 'login', TIMESTAMP '2026-03-01 10:09:00'), \
                     ('e3', 'b', 'login', TIMESTAMP '2026-03-01 10:01:00')",
                )
                .await
                .expect("events");
            engine.execute("ADVANCE TIME TO TIMESTAMP '2026-03-01 10:30:00'").await.expect("advance");
            let stats = engine.timer_pass_stats();
            let log: Vec<String> = log_of(&engine, "settled")
                .into_iter()
                .map(|(at, key, kind, _)| format!("{} {key} {kind}", &at.to_string()[11..16]))
                .collect();
            assert_eq!(
                log,
                ["10:09 a entered", "10:09 b entered", "10:10 a exited", "10:11 a entered", "10:11 b exited", "10:19 a exited"],
                "passes: {passes}"
            );
            if passes {
                // 10:10 and 10:11 first, taken back; then 10:10 | 10:11 | 10:19.
                assert_eq!(stats, TimerPassStats { passes: 3, instants: 3, retried: 1 });
            } else {
                assert_eq!(stats, TimerPassStats { passes: 3, instants: 3, retried: 0 });
            }
            logs.push(log);
        }
        assert_eq!(logs[0], logs[1]);
    });
}

/// Random histories with 16 users: the engine firing timers in passes and the one firing
/// them one instant per step log the same changes at the same instants and keep the same
/// members. The runs are seeded, so the totals below are stable: passes over several
/// instants, retried passes and timers of the mixed-key segment all happen.
#[test]
fn passes_log_what_one_step_per_instant_logs() {
    let cases = std::env::var("SEGSTREAM_ORACLE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let totals = std::cell::Cell::new(TimerPassStats::default());
    runner
        .run(&prop::collection::vec(op(), 1..30), |ops| {
            runtime.block_on(async {
                let (mut with, _a) = engine_with_segments(true).await;
                let (mut without, _b) = engine_with_segments(false).await;
                let mut history = String::new();
                let mut event_id = 0;
                for op in &ops {
                    let sql = match op {
                        Op::Events(events) => {
                            let now = with.now().nanos();
                            let values: Vec<String> = events
                                .iter()
                                .map(|(user, kind, amount, offset)| {
                                    event_id += 1;
                                    format!(
                                        "('e{event_id}', 'u{user:02}', '{}', NULL, NULL, {amount}.0, TIMESTAMP '{}')",
                                        KINDS[*kind as usize],
                                        Timestamp(now + offset * MINUTE)
                                    )
                                })
                                .collect();
                            format!("INSERT INTO events VALUES {}", values.join(", "))
                        }
                        Op::Advance { minutes } => format!("ADVANCE TIME BY INTERVAL '{minutes} minutes'"),
                    };
                    history.push_str(&sql);
                    history.push('\n');
                    with.execute(&sql).await.expect("with passes");
                    without.execute(&sql).await.expect("without passes");
                }
                for (name, _) in SEGMENTS {
                    prop_assert_eq!(log_of(&with, name), log_of(&without, name), "{} after:\n{}", name, history);
                    let (a, b) = (with.members(name).await, without.members(name).await);
                    prop_assert_eq!(
                        format!("{:?}", a.map(|m| m.columns().to_vec())),
                        format!("{:?}", b.map(|m| m.columns().to_vec())),
                        "{} members after:\n{}",
                        name,
                        history
                    );
                }
                let (s, mut t) = (with.timer_pass_stats(), totals.get());
                t.passes += s.passes;
                t.instants += s.instants;
                t.retried += s.retried;
                totals.set(t);
                Ok(())
            })
        })
        .expect("passes log what one step per instant logs");
    let totals = totals.get();
    println!("timer passes over {cases} histories: {totals:?}");
    if cases >= 32 {
        assert!(totals.instants >= totals.passes + 100, "few passes covered several instants: {totals:?}");
        assert!(totals.retried > 0, "no pass was run again: {totals:?}");
    }
}
