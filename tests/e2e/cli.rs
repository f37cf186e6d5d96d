//! The `segstream` binary: `sql -e`, `-f`, standard input, and errors shown with their
//! line, column and a caret.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::repo_root;

fn segstream(data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segstream"));
    command.arg("--data-dir").arg(data).arg("--clock").arg("manual");
    command
}

#[test]
fn sql_runs_files_and_statements_and_prints_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = repo_root();
    let output = segstream(dir.path())
        .arg("sql")
        .arg("-f")
        .arg(root.join("sql-examples/workload/schema.sql"))
        .arg("-f")
        .arg(root.join("sql-examples/workload/segments.sql"))
        .arg("-e")
        .arg("SHOW SEGMENTS")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("| cart_abandoners   | user_id |"), "{stdout}");
    assert!(stdout.contains("(7 rows)"), "{stdout}");

    // The same data directory, a second process: the catalog was persisted.
    let output =
        segstream(dir.path()).args(["sql", "-e", "EXPLAIN SEGMENT recent_buyers"]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.contains("TemporalFilter"), "{stdout}");
    assert!(stdout.contains("timers: exit at events.ts + 3 hours"), "{stdout}");
}

/// The README's main job (scripts/run.sh): the workload, a day of traffic, the changes.
#[test]
fn the_story_of_a_day_shows_exact_entries_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = repo_root();
    let mut command = segstream(dir.path());
    command.arg("sql");
    for file in ["schema.sql", "segments.sql", "story.sql"] {
        command.arg("-f").arg(root.join("sql-examples/workload").join(file));
    }
    let output = command.output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    for row in [
        "| cart_abandoners   | 1   | cy  | entered | 2026-03-01T09:05:00 |",
        "| welcome_offer     | 3   | bo  | exited  | 2026-03-01T09:30:00 |",
        "| winback_now       | 2   | ana | exited  | 2026-03-01T12:00:00 |",
        "| recent_buyers     | 2   | bo  | exited  | 2026-03-01T12:30:00 |",
        "| welcome_offer     | 4   | bo  | entered | 2026-03-01T12:30:00 |",
        "| cart_abandoners   | 2   | cy  | exited  | 2026-03-02T09:00:00 |",
    ] {
        assert!(stdout.contains(row), "missing {row} in\n{stdout}");
    }
}

#[test]
fn statements_can_come_from_standard_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = segstream(dir.path())
        .arg("sql")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawns");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"ADVANCE TIME TO TIMESTAMP '2026-01-01 00:00:00'; SELECT NOW() AS now;")
        .expect("writes");
    let output = child.wait_with_output().expect("finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.contains("ADVANCE TIME 2026-01-01 00:00:00"), "{stdout}");
    assert!(stdout.contains("| 2026-01-01T00:00:00 |"), "{stdout}");
}

#[test]
fn errors_point_at_the_line_and_column_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = repo_root();
    let output = segstream(dir.path())
        .arg("sql")
        .arg("-f")
        .arg(root.join("sql-examples/workload/schema.sql"))
        .arg("-e")
        .arg("CREATE SEGMENT s AS\nSELECT DISTINCT user_id FROM events\nORDER BY user_id")
        .arg("-e")
        .arg("SHOW SEGMENTS")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("not supported in a segment at line 3, column 1: ORDER BY"), "{stderr}");
    assert!(stderr.contains("--> -e #1:3:1"), "{stderr}");
    assert!(stderr.contains("3 | ORDER BY user_id\n  | ^"), "{stderr}");
    assert!(stderr.contains("help: remove ORDER BY"), "{stderr}");
    assert!(!stdout.contains("name"), "SHOW SEGMENTS must not run after the error: {stdout}");
}

#[test]
fn help_lists_examples() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_segstream")).args(["sql", "--help"]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.contains("Examples:") && stdout.contains("segstream sql -e"), "{stdout}");
}
