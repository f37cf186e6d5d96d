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

/// `segstream ingest` into the data directory (no server): a Parquet file, typed columns
/// converted to the declared ones, a row that does not convert rejected by its row
/// number, the others loaded; the same for CSV.
#[test]
fn ingest_loads_parquet_and_csv_files_and_names_rejected_rows() {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let schema_sql = repo_root().join("sql-examples/workload/schema.sql");
    let created = segstream(&data).arg("sql").arg("-f").arg(&schema_sql).output().expect("runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    // Parquet: amount as DOUBLE, ts as text (converted to TIMESTAMP); the third row's ts is not a time.
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("ts", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["p1", "p2", "p3"])),
        Arc::new(StringArray::from(vec!["ann", "ben", "cy"])),
        Arc::new(StringArray::from(vec!["purchase", "purchase", "purchase"])),
        Arc::new(Float64Array::from(vec![Some(20.0), None, Some(5.0)])),
        Arc::new(StringArray::from(vec!["2026-04-01 10:00:00", "2026-04-01 10:30:00", "soon"])),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch");
    let parquet_path = dir.path().join("events.parquet");
    let file = std::fs::File::create(&parquet_path).expect("creates");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    writer.write(&batch).expect("writes");
    writer.close().expect("closes");

    let out =
        segstream(&data).args(["ingest", "--stream", "events"]).arg(&parquet_path).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ingested 2 rows into events"), "{stdout}");
    assert!(stdout.contains("rejected 1 row:\n  row 3: column `ts`"), "{stdout}");

    let csv_path = dir.path().join("profiles.csv");
    std::fs::write(
        &csv_path,
        "user_id,country,lifetime_value,signup_at\nann,FR,1200.5,2024-06-01 00:00:00\n",
    )
    .expect("writes");
    let out = segstream(&data).args(["ingest", "--table", "profiles"]).arg(&csv_path).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ingested 1 row into profiles"));

    let out = segstream(&data)
        .args([
            "sql",
            "-e",
            "SELECT user_id, amount FROM events ORDER BY user_id",
            "-e",
            "SELECT * FROM profiles",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| ann     | 20.0   |") && stdout.contains("| ben     |        |"), "{stdout}");
    assert!(stdout.contains("(2 rows)") && stdout.contains("1200.5"), "{stdout}");

    let unknown =
        segstream(&data).args(["ingest", "--stream", "events"]).arg(dir.path().join("x.txt")).output();
    let unknown = unknown.expect("runs");
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("give --format"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}
