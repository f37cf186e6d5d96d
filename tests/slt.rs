//! The sqllogictest fixtures of `sql-examples/` and `tests/slt/` under `cargo test`, run
//! by the same runner as `segstream test` (harness = false: one line per file).
//!
//! `cargo test -p segstream --test slt -- recent` runs the files whose path contains
//! `recent`; `SEGSTREAM_COMPLETE=1` fills in expected results instead of checking them.

use std::path::Path;
use std::process::ExitCode;

use segstream_slt::{collect_fixtures, run_all, Mode};

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let files = match collect_fixtures(&[root.join("sql-examples"), root.join("tests/slt")]) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("cannot list the fixtures: {e}");
            return ExitCode::FAILURE;
        }
    };
    let total = files.len();
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| filters.is_empty() || filters.iter().any(|x| f.to_string_lossy().contains(x.as_str())))
        .collect();
    let filtered_out = total - files.len();
    let mode = if std::env::var_os("SEGSTREAM_COMPLETE").is_some() { Mode::Complete } else { Mode::Check };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("\nrunning {} fixtures", files.len());
    let reports = runtime.block_on(run_all(&files, mode, |report| {
        let name = report.path.strip_prefix(&root).unwrap_or(&report.path).display().to_string();
        if report.passed() {
            println!("test {name} ... ok");
        } else {
            println!("test {name} ... FAILED");
            for failure in &report.failures {
                println!("  {failure}\n");
            }
        }
    }));
    let failed = reports.iter().filter(|r| !r.passed()).count();
    let passed = reports.len() - failed;
    // The libtest summary line, so scripts/test.sh counts the fixtures with the rest.
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered_out} filtered out\n",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed == 0 && (total > 0 || !filters.is_empty()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
