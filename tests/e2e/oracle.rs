//! The oracle property test: the incremental engine against batch SQL.
//!
//! Random histories — events in and out of order, duplicate timestamps, clock
//! advances, profile upserts and deletes, segments created late — run against all
//! seven of the reference workload's segments (windows scaled to the histories) and
//! against segments generated from a grammar of filters, time windows, aggregates,
//! joins (inner, left, NOT IN with NULLs, EXISTS with a residual), set operations,
//! NOT FOLLOWED BY, segments of segments and a stream with a retention; and `FORGET KEY`
//! (the engine must then agree with batch SQL over the data without the key). After
//! every step each segment's maintained members and attributes must equal its SELECT
//! run by DataFusion in batch with `NOW()` at the clock. The change log must replay to
//! the membership with sequence numbers 1, 2, 3..., and every time-driven change must
//! carry the exact instant it became true: batch SQL disagrees with it one nanosecond
//! before and agrees at it.
//!
//! CI runs `SEGSTREAM_ORACLE_CASES` histories (default 32, about two minutes); a larger run:
//! `SEGSTREAM_ORACLE_CASES=2000 cargo test -p segstream --test e2e oracle`.

use std::collections::BTreeMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use segstream_engine::{ChangeKind, Engine};
use segstream_types::Timestamp;

use crate::support::{fresh_engine_with, workload_schema};

#[derive(Debug, Clone)]
struct Event {
    user: u8,
    kind: u8,
    page: u8,
    amount: u8,
    /// Minutes from the clock: negative is late, positive is ahead.
    offset: i64,
}

#[derive(Debug, Clone)]
enum Op {
    Events(Vec<Event>),
    Advance { minutes: u32 },
    Profile { user: u8, signup_offset: i64, value: u8 },
    DeleteProfile { user: u8 },
    CreateLate { template: usize },
    Forget { user: u8 },
}

#[derive(Debug, Clone)]
struct Params {
    hours: [u32; 3],
    /// The retention of the `kept` stream, which gets a copy of every event.
    retention_hours: u32,
    delay_minutes: u32,
    min_count: u32,
    /// Run with a hot-state cache of a few KiB, so state is evicted and read back from
    /// RocksDB all the time (the default cache holds everything a case touches).
    tiny_cache: bool,
}

/// The hot-state cache of a `tiny_cache` case: a handful of entries.
const TINY_CACHE_BYTES: usize = 4 * 1024;

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const KINDS: [&str; 3] = ["page_view", "purchase", "login"];
const PAGES: [&str; 2] = ["/pricing", "/home"];
/// Amounts exact in binary, so sums are the same in any order.
const AMOUNTS: [&str; 4] = ["10.0", "25.5", "100.0", "250.25"];

fn segments(p: &Params) -> Vec<(String, String)> {
    let [h0, h1, h2] = p.hours;
    let list = [
        // The reference workload's segments the core maintains.
        ("pricing_hot", "SELECT user_id FROM events WHERE event_type = 'page_view' AND page = '/pricing' AND ts > NOW() - INTERVAL '48 hours' GROUP BY user_id HAVING COUNT(*) >= 2".to_string()),
        ("recent_buyers", "SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '3 hours'".to_string()),
        ("rfm_champions", "SELECT user_id, COUNT(*) AS frequency, SUM(amount) AS monetary FROM events WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '90 days' GROUP BY user_id HAVING COUNT(*) >= 3 AND SUM(amount) >= 300 AND MAX(ts) > NOW() - INTERVAL '14 days'".to_string()),
        // Generated.
        ("g_window", format!("SELECT DISTINCT user_id FROM events WHERE event_type = 'login' AND ts > NOW() - INTERVAL '{h0} hours'")),
        ("g_delay", format!("SELECT DISTINCT user_id FROM events WHERE ts <= NOW() - INTERVAL '{} minutes' AND ts > NOW() - INTERVAL '{h1} hours'", p.delay_minutes)),
        ("g_counts", format!("SELECT user_id, COUNT(*) AS n, MAX(amount) AS top, MIN(ts) AS first FROM events WHERE ts > NOW() - INTERVAL '{h2} hours' GROUP BY user_id HAVING COUNT(*) >= {}", p.min_count)),
        ("g_last_seen", format!("SELECT user_id, MIN(ts) AS first_seen FROM events WHERE event_type <> 'login' GROUP BY user_id HAVING MAX(ts) > NOW() - INTERVAL '{h1} hours'")),
        ("g_profile", format!("SELECT user_id, lifetime_value FROM profiles WHERE signup_at > NOW() - INTERVAL '{h0} hours' AND lifetime_value > 20")),
        ("g_mix", "SELECT user_id, COUNT(DISTINCT page) AS pages, SUM(amount) AS total, AVG(amount) AS mean, BOOL_OR(event_type = 'purchase') AS bought FROM events GROUP BY user_id".to_string()),
        ("g_of_segment", "SELECT user_id FROM g_window WHERE user_id <> 'u0' UNION SELECT user_id FROM recent_buyers".to_string()),
        ("g_union_all", "SELECT user_id FROM events WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '2 hours' UNION ALL SELECT user_id FROM profiles WHERE lifetime_value > 100".to_string()),
        // The reference workload's joins: absence, history with live data, segments of
        // segments, suppression (windows scaled to the histories' hours).
        ("cart_abandoners", format!("SELECT DISTINCT c.user_id FROM events c WHERE c.event_type = 'login' AND c.ts <= NOW() - INTERVAL '{} minutes' AND c.ts > NOW() - INTERVAL '{h2} hours' AND NOT EXISTS (SELECT 1 FROM events p WHERE p.user_id = c.user_id AND p.event_type = 'purchase' AND p.ts >= c.ts)", p.delay_minutes)),
        ("lapsed_high_value", format!("SELECT user_id FROM profiles WHERE lifetime_value > 40 AND user_id NOT IN (SELECT user_id FROM events WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '{h1} hours')")),
        ("winback_now", format!("SELECT user_id FROM lapsed_high_value WHERE user_id IN (SELECT user_id FROM events WHERE event_type = 'login' AND ts > NOW() - INTERVAL '{h0} hours')")),
        ("welcome_offer", format!("SELECT user_id FROM profiles WHERE signup_at > NOW() - INTERVAL '{h2} hours' EXCEPT SELECT user_id FROM recent_buyers")),
        // Generated joins.
        ("g_not_in_nulls", "SELECT user_id FROM profiles WHERE country NOT IN (SELECT page FROM events WHERE event_type <> 'login')".to_string()),
        ("g_left_join", "SELECT p.user_id, p.lifetime_value, s.total FROM profiles p LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM events GROUP BY user_id) s ON s.user_id = p.user_id".to_string()),
        ("g_inner_join", format!("SELECT e.user_id, COUNT(*) AS views, MAX(p.lifetime_value) AS ltv FROM events e JOIN profiles p ON p.user_id = e.user_id AND e.ts >= p.signup_at WHERE e.ts > NOW() - INTERVAL '{h2} hours' GROUP BY e.user_id")),
        ("g_intersect", "SELECT user_id FROM recent_buyers INTERSECT SELECT user_id FROM g_window".to_string()),
        ("g_absence", format!("SELECT DISTINCT user_id FROM events WHERE event_type = 'page_view' AND NOT FOLLOWED BY (event_type = 'purchase') WITHIN INTERVAL '{} minutes'", p.delay_minutes + 1)),
        // A stream with a retention (`kept`): events leave every segment when they leave it.
        ("k_spend", "SELECT user_id, SUM(amount) AS total, COUNT(*) AS n FROM kept GROUP BY user_id".to_string()),
        ("k_recent_login", format!("SELECT DISTINCT user_id FROM kept WHERE event_type = 'login' AND ts > NOW() - INTERVAL '{h0} hours'")),
        ("k_absence", format!("SELECT DISTINCT user_id FROM kept WHERE event_type = 'page_view' AND NOT FOLLOWED BY (event_type = 'purchase') WITHIN INTERVAL '{} minutes'", p.delay_minutes + 1)),
        ("k_no_purchase", "SELECT user_id FROM profiles WHERE user_id NOT IN (SELECT user_id FROM kept WHERE event_type = 'purchase')".to_string()),
    ];
    list.into_iter().map(|(n, q)| (n.to_string(), q)).collect()
}

fn event() -> impl Strategy<Value = Event> {
    (0..4u8, 0..3u8, 0..2u8, 0..4u8, -300i64..60).prop_map(|(user, kind, page, amount, offset)| Event {
        user,
        kind,
        page,
        amount,
        offset: offset / 15 * 15, // on quarter hours, so timestamps repeat
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(event(), 1..5).prop_map(Op::Events),
        3 => prop_oneof![0..30u32, 30..400u32, 400..3000u32].prop_map(|minutes| Op::Advance { minutes }),
        1 => (0..4u8, -600i64..0, 0..4u8).prop_map(|(user, signup_offset, value)| Op::Profile { user, signup_offset, value }),
        1 => (0..4u8).prop_map(|user| Op::DeleteProfile { user }),
        1 => (0..24usize).prop_map(|template| Op::CreateLate { template }),
        1 => (0..4u8).prop_map(|user| Op::Forget { user }),
    ]
}

fn params() -> impl Strategy<Value = Params> {
    ([1..6u32, 1..10u32, 1..30u32], 1..8u32, 0..90u32, 1..4u32, any::<bool>()).prop_map(
        |(hours, retention_hours, delay_minutes, min_count, tiny_cache)| Params {
            hours,
            retention_hours,
            delay_minutes,
            min_count,
            tiny_cache,
        },
    )
}

/// Rows as sorted strings: a multiset comparison independent of order.
fn rows(batch: &RecordBatch) -> Vec<String> {
    let mut out: Vec<String> = (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, r).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    out
}

fn keys(batch: &RecordBatch) -> Vec<String> {
    let mut out: Vec<String> = (0..batch.num_rows())
        .map(|r| array_value_to_string(batch.column(0), r).unwrap_or_default())
        .collect();
    out.sort();
    out
}

async fn check_members(engine: &Engine, names: &[String], history: &str) -> Result<(), TestCaseError> {
    for name in names {
        let maintained =
            engine.members(name).await.map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        let judged =
            engine.batch_members(name).await.map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        prop_assert!(engine.is_maintained(name), "{name} is not maintained");
        prop_assert_eq!(
            rows(&maintained),
            rows(&judged),
            "segment {} at {} after:\n{}",
            name,
            engine.now(),
            history
        );
    }
    Ok(())
}

/// Every change logged since `seen` that a timer caused during an advance from
/// `from` must be exact: batch SQL flips at its instant, not a nanosecond earlier.
async fn check_instants(
    engine: &Engine,
    from: Timestamp,
    seen: &mut BTreeMap<String, u64>,
    history: &str,
) -> Result<(), TestCaseError> {
    let records = engine.change_records().map_err(|e| TestCaseError::fail(e.to_string()))?;
    for record in records {
        let last = seen.entry(record.segment.clone()).or_insert(0);
        if record.seq <= *last {
            continue;
        }
        prop_assert_eq!(record.seq, *last + 1, "sequence gap in {}", record.segment);
        *last = record.seq;
        if record.at <= from {
            continue;
        }
        let at = record.at;
        let before = engine
            .batch_members_at(&record.segment, Timestamp(at.nanos() - 1))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let after = engine
            .batch_members_at(&record.segment, at)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (was, is) = (keys(&before).contains(&record.key), keys(&after).contains(&record.key));
        let exact = match record.kind {
            ChangeKind::Entered => !was && is,
            ChangeKind::Exited => was && !is,
            ChangeKind::Updated => was && is,
            ChangeKind::Redacted => true, // rewritten by FORGET KEY: nothing left to check
        };
        prop_assert!(
            exact,
            "{} {} {:?} at {} is not exact (member before: {}, at: {}) after:\n{}",
            record.segment,
            record.key,
            record.kind,
            at,
            was,
            is,
            history
        );
    }
    Ok(())
}

async fn run_history(p: Params, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let tiny_cache = p.tiny_cache;
    let (mut engine, _dir) =
        fresh_engine_with(|o| if tiny_cache { o.with_state_cache_bytes(TINY_CACHE_BYTES) } else { o });
    let fail = |e: segstream_types::Error| TestCaseError::fail(e.to_string());
    engine.execute(&workload_schema()).await.map_err(fail)?;
    let kept = workload_schema()
        .split(';')
        .find(|s| s.contains("CREATE STREAM events"))
        .expect("the workload declares events")
        .replace("CREATE STREAM events", "CREATE STREAM kept")
        .replace("key = 'user_id')", &format!("key = 'user_id', retention = '{} hours')", p.retention_hours));
    engine.execute(&kept).await.map_err(fail)?;
    engine.execute("ADVANCE TIME TO TIMESTAMP '2026-01-01 00:00:00'").await.map_err(fail)?;
    let all = segments(&p);
    let mut live: Vec<String> = Vec::new();
    // Most segments exist from the start; a CreateLate op adds a late copy of one.
    for (name, query) in all.iter().take(10).chain(all.iter().skip(11)) {
        engine.execute(&format!("CREATE SEGMENT {name} AS {query}")).await.map_err(fail)?;
        live.push(name.clone());
    }
    let mut history = String::new();
    let mut seen = BTreeMap::new();
    let mut event_id = 0;
    for op in ops {
        let before = engine.now();
        let sql = match &op {
            Op::Events(events) => {
                let values: Vec<String> = events
                    .iter()
                    .map(|e| {
                        event_id += 1;
                        let ts = Timestamp(before.nanos() + e.offset * 60_000_000_000);
                        let is_view = e.kind == 0;
                        format!(
                            "('e{event_id}', '{}', '{}', {}, NULL, {}, TIMESTAMP '{ts}')",
                            USERS[e.user as usize],
                            KINDS[e.kind as usize],
                            if is_view { format!("'{}'", PAGES[e.page as usize]) } else { "NULL".into() },
                            if e.kind == 1 { AMOUNTS[e.amount as usize] } else { "NULL" },
                        )
                    })
                    .collect();
                let values = values.join(", ");
                format!("INSERT INTO events VALUES {values}; INSERT INTO kept VALUES {values}")
            }
            Op::Advance { minutes } => format!("ADVANCE TIME BY INTERVAL '{minutes} minutes'"),
            Op::Profile { user, signup_offset, value } => format!(
                "INSERT INTO profiles VALUES ('{}', 'FR', {}, TIMESTAMP '{}')",
                USERS[*user as usize],
                [5.0, 50.0, 500.0, 5000.0][*value as usize],
                Timestamp(before.nanos() + signup_offset * 60_000_000_000)
            ),
            Op::DeleteProfile { user } => {
                format!("DELETE FROM profiles WHERE user_id = '{}'", USERS[*user as usize])
            }
            Op::CreateLate { template } => {
                let (name, query) = &all[*template];
                let late = format!("late_{name}");
                let reads_a_segment =
                    ["g_of_segment", "winback_now", "welcome_offer", "g_intersect"].contains(&name.as_str());
                if live.contains(&late) || reads_a_segment {
                    continue;
                }
                live.push(late.clone());
                format!("CREATE SEGMENT {late} AS {query}")
            }
            Op::Forget { user } => format!("FORGET KEY '{}'", USERS[*user as usize]),
        };
        history.push_str(&sql);
        history.push('\n');
        engine.execute(&sql).await.map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
        check_members(&engine, &live, &history).await?;
        check_instants(&engine, before, &mut seen, &history).await?;
        if let Op::Forget { user } = &op {
            // Only the erase markers still name the key.
            let user = USERS[*user as usize];
            for r in engine.change_records().map_err(fail)? {
                prop_assert!(
                    r.key != user || (r.kind == ChangeKind::Exited && r.reason == "erased"),
                    "{} keeps {:?} about {} after:\n{}",
                    r.segment,
                    r,
                    user,
                    history
                );
            }
        }
        // Deleting the events `kept` no longer retains changes nothing anyone sees.
        if engine.drop_expired_events().map_err(fail)? > 0 {
            let reading_kept: Vec<String> = live.iter().filter(|n| n.contains("k_")).cloned().collect();
            check_members(&engine, &reading_kept, &history).await?;
        }
    }
    // The change log replays to the membership.
    let records = engine.change_records().map_err(fail)?;
    for name in &live {
        let mut replayed: BTreeMap<String, ()> = BTreeMap::new();
        for r in records.iter().filter(|r| &r.segment == name) {
            match r.kind {
                ChangeKind::Entered | ChangeKind::Updated => {
                    replayed.insert(r.key.clone(), ());
                }
                ChangeKind::Exited => {
                    replayed.remove(&r.key);
                }
                ChangeKind::Redacted => {}
            }
        }
        let members = engine.members(name).await.map_err(fail)?;
        prop_assert_eq!(
            replayed.into_keys().collect::<Vec<_>>(),
            keys(&members),
            "log of {} does not replay",
            name
        );
    }
    if tiny_cache {
        // The state outgrew the cache, which stayed within its bytes: what was evicted
        // was read back from RocksDB, and the comparisons above still held.
        let cache = engine.state_cache_stats().map_err(fail)?;
        prop_assert!(cache.bytes <= TINY_CACHE_BYTES, "cache over budget: {:?}", cache);
    }
    Ok(())
}

#[test]
fn incremental_membership_equals_batch_sql() {
    let cases = std::env::var("SEGSTREAM_ORACLE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runner
        .run(&(params(), prop::collection::vec(op(), 1..25)), |(p, ops)| {
            runtime.block_on(run_history(p, ops))
        })
        .expect("the engine agrees with batch SQL");
}
