//! `segstream test` (the fixture runner) and `segstream demo`, run as a user runs them.

use std::process::Command;

use crate::support::repo_root;

fn segstream() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segstream"));
    command.current_dir(repo_root());
    command
}

/// The product's scenarios pass through the command line, as the README tells users to
/// run them.
#[test]
fn segstream_test_passes_the_sql_examples() {
    let output = segstream().args(["test", "sql-examples/", "tests/slt/"]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for scenario in [
        "pricing_intent",
        "cart_abandonment",
        "recent_buyers",
        "no_purchase_30_days",
        "dormant_high_value",
        "rfm_scores",
        "suppression",
        "overlap",
        "late_events",
    ] {
        assert!(
            stdout.contains(&format!("ok        sql-examples/{scenario}/{scenario}.slt")),
            "{scenario}: {stdout}"
        );
    }
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{stdout}");
}

/// A deliberately wrong fixture fails with a diff naming the file, the line and the rows
/// that differ, and the run exits non-zero.
#[test]
fn a_wrong_fixture_fails_with_file_line_and_differing_rows() {
    let output = segstream().args(["test", "tests/slt-failing/wrong_rows.slt"]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED    tests/slt-failing/wrong_rows.slt"), "{stdout}");
    // The query record starts on line 20: its rows differ on bo's exit only.
    assert!(stdout.contains("tests/slt-failing/wrong_rows.slt:20: the query's rows differ"), "{stdout}");
    assert!(
        stdout.contains("  - 4 bo exited 2026-04-01T12:00:00\n  + 4 bo exited 2026-04-01T13:00:00"),
        "{stdout}"
    );
    assert!(stdout.contains("    3 ann exited 2026-04-01T12:00:00"), "context row missing: {stdout}");
    assert!(!stdout.contains("- 1 ann entered"), "rows in common are not shown as differing: {stdout}");
    // The wrong error message: expected and actual, at the statement's line.
    assert!(stdout.contains("tests/slt-failing/wrong_rows.slt:28: the error differs"), "{stdout}");
    assert!(stdout.contains("expected an error containing: this is not the message"), "{stdout}");
    assert!(stdout.contains(": no stream, table or segment is named `nobody`"), "{stdout}");
    assert!(stdout.trim_end().ends_with("0 passed, 1 failed"), "{stdout}");
}

/// `--complete` fills in a new fixture's results; the completed file then passes as is.
#[test]
fn complete_mode_fills_in_results_that_then_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("new.slt");
    std::fs::write(
        &file,
        "statement ok\nCREATE STREAM clicks (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL) \
         WITH (event_time = 'ts', key = 'user_id')\n\n\
         statement ok\nCREATE SEGMENT clicked AS SELECT user_id, COUNT(*) AS n FROM clicks \
         WHERE ts > NOW() - INTERVAL '1 hour' GROUP BY user_id\n\n\
         statement ok\nADVANCE TIME TO TIMESTAMP '2026-01-01 10:00:00'\n\n\
         statement ok\nINSERT INTO clicks VALUES ('b', TIMESTAMP '2026-01-01 10:00:00'), \
         ('a', TIMESTAMP '2026-01-01 09:30:00'), ('a', TIMESTAMP '2026-01-01 09:45:00')\n\n\
         query T rowsort\nSELECT user_id, n FROM clicked\n\n\
         statement ok\nADVANCE TIME TO TIMESTAMP '2026-01-01 12:00:00'\n\n\
         query ITTP\nSELECT seq, key, kind, at FROM segstream.changes ORDER BY seq\n----\nstale row\n",
    )
    .expect("writes");
    let output = segstream().arg("test").arg("--complete").arg(&file).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("completed"), "{stdout}");
    let completed = std::fs::read_to_string(&file).expect("reads");
    // The column types were corrected and the rows written sorted; the stale row replaced.
    // a's count drops from 2 to 1 when her 09:30 click ages out at 10:30: `updated`.
    assert!(
        completed.contains("query TI rowsort\nSELECT user_id, n FROM clicked\n----\na 2\nb 1\n"),
        "{completed}"
    );
    assert!(
        completed.contains(
            "----\n1 b entered 2026-01-01T10:00:00\n2 a entered 2026-01-01T10:00:00\n\
             3 a updated 2026-01-01T10:30:00\n4 a exited 2026-01-01T10:45:00\n\
             5 b exited 2026-01-01T11:00:00\n"
        ),
        "{completed}"
    );
    assert!(!completed.contains("stale row"), "{completed}");
    let output = segstream().arg("test").arg(&file).output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn a_fixture_that_is_not_well_formed_names_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.slt");
    std::fs::write(&file, "statement ok\nSELECT 1\n\nqeury T\nSELECT 1\n").expect("writes");
    let output = segstream().arg("test").arg(&file).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("bad.slt:4: unknown record `qeury`"), "{stdout}");

    let output = segstream().args(["test", "no/such/dir"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no/such/dir does not exist"));
}

/// The demo creates the workload, streams events on the wall clock and shows every
/// segment; with --data-dir it can be stopped and started again on the same data.
#[test]
fn the_demo_streams_events_and_shows_the_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..2 {
        let output = segstream()
            .arg("--data-dir")
            .arg(dir.path())
            .args(["demo", "--duration", "3", "--users", "2000", "--rate", "200"])
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "round {round}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for segment in crate::support::WORKLOAD_SEGMENTS {
            assert!(stdout.contains(segment), "round {round}: {segment} missing: {stdout}");
        }
        let events: u64 = stdout
            .lines()
            .find_map(|l| l.split(" events ingested").next().filter(|_| l.contains(" events ingested")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no event count: {stdout}"));
        assert!(events >= 200, "round {round}: only {events} events in 3 s at 200/s: {stdout}");
        // About 20% of the users are worth more than 500 and none bought in 30 days yet.
        let lapsed: i64 = stdout
            .lines()
            .find(|l| l.starts_with("lapsed_high_value "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no lapsed_high_value row: {stdout}"));
        assert!(lapsed > 100, "round {round}: {lapsed} lapsed members: {stdout}");
    }
}

/// `demo --segments many` runs the 105 segments of the many-segment workload: the seven
/// shown one per line, the 98 variants summed.
#[test]
fn the_demo_runs_the_many_segment_workload() {
    let output = segstream()
        .args(["demo", "--segments", "many", "--duration", "3", "--users", "2000", "--rate", "200"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for segment in crate::support::WORKLOAD_SEGMENTS {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("{segment} "))), "{segment} missing: {stdout}");
    }
    let variants =
        stdout.lines().find(|l| l.starts_with("+98 variants")).unwrap_or_else(|| panic!("{stdout}"));
    let members: i64 = variants.split_whitespace().nth(2).and_then(|n| n.parse().ok()).expect("a count");
    assert!(members > 0, "the variants have members: {stdout}");
}
