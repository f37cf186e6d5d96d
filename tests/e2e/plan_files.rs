//! Planner tests as `.sql` files (`tests/plans/`), in the style of Arroyo's plan tests.
//!
//! Each file runs in a fresh data directory with the manual clock. Its transcript (each
//! statement, `----`, then its output or error) must equal the `.out` file beside it;
//! `SEGSTREAM_BLESS=1 cargo test --test e2e plan_files` rewrites the `.out` files.
//! Header lines:
//! - `--setup=workload` runs `sql-examples/workload/schema.sql` first (not transcribed);
//! - `--fail=<error>` says the last statement fails and what its error's first line is,
//!   so the file shows the error message next to the SQL that causes it.

use std::path::Path;

use crate::support::{fresh_engine, repo_root, workload_schema};

#[tokio::test]
async fn plan_files() {
    let dir = repo_root().join("tests/plans");
    let bless = std::env::var_os("SEGSTREAM_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/plans exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "expected the planner files, found {}", files.len());
    let mut failures = Vec::new();
    for file in &files {
        if let Err(problem) = run_file(file, bless).await {
            failures.push(format!("{}: {problem}", file.display()));
        }
    }
    println!("plan files: {} passed, {} failed", files.len() - failures.len(), failures.len());
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

async fn run_file(file: &Path, bless: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let expected_error = text.lines().find_map(|l| l.strip_prefix("--fail=")).map(str::trim);
    let setup = text.lines().any(|l| l.trim() == "--setup=workload");
    let (mut engine, _dir) = fresh_engine();
    if setup {
        engine.execute(&workload_schema()).await.map_err(|e| format!("workload setup: {e}"))?;
    }
    let mut transcript = String::new();
    let mut error = None;
    match segstream_sql::parse_statements(&text) {
        Err(e) => {
            transcript.push_str(&format!("error: {e}\n"));
            error = Some((e.to_string(), true));
        }
        Ok(statements) => {
            let count = statements.len();
            for (i, statement) in statements.iter().enumerate() {
                transcript.push_str(&statement.text);
                transcript.push_str("\n----\n");
                match engine.execute_statement(statement).await {
                    Ok(output) => transcript.push_str(&output.render()),
                    Err(e) => {
                        let e = e.or_position(statement.position);
                        transcript.push_str(&format!("error: {e}"));
                        error = Some((e.to_string(), i + 1 == count));
                        transcript.push_str("\n\n");
                        break;
                    }
                }
                transcript.push_str("\n\n");
            }
        }
    }
    match (expected_error, &error) {
        (None, None) => {}
        (Some(expected), Some((actual, last))) => {
            let first_line = actual.lines().next().unwrap_or_default();
            if first_line != expected {
                return Err(format!("expected error\n  {expected}\nbut got\n  {first_line}"));
            }
            if !last {
                return Err("the error came before the last statement".into());
            }
        }
        (Some(expected), None) => {
            return Err(format!("expected the error `{expected}`, but every statement ran"))
        }
        (None, Some((actual, _))) => return Err(format!("unexpected error: {actual}")),
    }
    let golden = file.with_extension("out");
    if bless {
        std::fs::write(&golden, &transcript).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(&golden)
        .map_err(|_| format!("{} is missing; run with SEGSTREAM_BLESS=1 to write it", golden.display()))?;
    if expected != transcript {
        return Err(format!(
            "transcript differs from {}:\n{}",
            golden.display(),
            diff(&expected, &transcript)
        ));
    }
    Ok(())
}

/// The lines that differ, `-` expected and `+` actual, with their line numbers.
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            if let Some(x) = x {
                out.push_str(&format!("{:>4} - {x}\n", i + 1));
            }
            if let Some(y) = y {
                out.push_str(&format!("{:>4} + {y}\n", i + 1));
            }
        }
    }
    out
}
