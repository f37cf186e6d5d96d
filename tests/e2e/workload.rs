//! All seven segments of the reference workload plan, and EXPLAIN shows their
//! operators, state and timers. The full text is kept in `tests/plans/workload.explain`
//! (rewritten with `SEGSTREAM_BLESS=1`).

use segstream_engine::Output;
use segstream_sql::ObjectKind;

use crate::support::{fresh_engine, repo_root, workload_schema, workload_segments};

#[tokio::test]
async fn the_seven_workload_segments_plan_and_explain() {
    let (mut engine, _dir) = fresh_engine();
    engine.execute(&workload_schema()).await.expect("schema");
    engine.execute(&workload_segments()).await.expect("every workload segment plans");
    let names: Vec<String> = engine.catalog().list(ObjectKind::Segment).map(|r| r.name.clone()).collect();
    assert_eq!(names.len(), 7, "{names:?}");
    let mut text = String::new();
    for name in crate::support::WORKLOAD_SEGMENTS {
        let out = engine.execute(&format!("EXPLAIN SEGMENT {name}")).await.expect("explains");
        let Output::Text(explain) = &out[0] else { panic!("EXPLAIN gives text") };
        assert!(explain.contains("Membership: key=user_id"), "{explain}");
        assert!(explain.contains("state: members by user_id"), "{explain}");
        text.push_str(explain);
        text.push('\n');
    }
    // Each segment's defining feature shows up as an operator with its state or timers.
    let expect = [
        "timers: exit at events.ts + 2 days", // pricing_hot: 48 h window
        "timers: enter at events.ts + 5 minutes; exit at events.ts + 1 day", // cart_abandoners
        "left anti on [c.user_id = __correlated_sq_1.user_id] residual=(__correlated_sq_1.ts >= c.ts)",
        "timers: exit at events.ts + 3 hours", // recent_buyers
        "Join: left anti on [profiles.user_id = __correlated_sq_1.user_id]", // lapsed_high_value
        "Source: segment lapsed_high_value",   // winback_now reads a segment
        "exit at \"max(events.ts)\" + 14 days", // rfm_champions: timer after the aggregate
        "Source: segment recent_buyers",       // welcome_offer
    ];
    for e in expect {
        assert!(text.contains(e), "EXPLAIN lacks `{e}`:\n{text}");
    }
    let golden = repo_root().join("tests/plans/workload.explain");
    if std::env::var_os("SEGSTREAM_BLESS").is_some() {
        std::fs::write(&golden, &text).expect("writes golden");
    } else {
        let expected = std::fs::read_to_string(&golden).expect("tests/plans/workload.explain exists");
        assert_eq!(expected, text);
    }
}
