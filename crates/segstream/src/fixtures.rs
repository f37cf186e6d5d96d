//! `segstream test PATH...`: runs sqllogictest fixtures and reports like a test runner.

use std::path::PathBuf;

use segstream_slt::{collect_fixtures, run_all, Mode};

/// Runs the fixtures under `paths`; `Ok(false)` when any failed.
pub async fn run(paths: &[PathBuf], complete: bool) -> anyhow::Result<bool> {
    let files = collect_fixtures(paths)?;
    if files.is_empty() {
        anyhow::bail!(
            "no .slt files under {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let mode = if complete { Mode::Complete } else { Mode::Check };
    let reports = run_all(&files, mode, |report| {
        let path = report.path.display();
        if report.passed() {
            let what = if report.rewritten { "completed" } else { "ok" };
            println!("{what:<9} {path} ({} records)", report.records);
        } else {
            println!("FAILED    {path}");
            for failure in &report.failures {
                println!("  {failure}\n");
            }
        }
    })
    .await;
    let failed = reports.iter().filter(|r| !r.passed()).count();
    println!("{} passed, {failed} failed", reports.len() - failed);
    Ok(failed == 0)
}
