//! sqllogictest fixtures for segments: `.slt` files that create segments, move the
//! manual clock, and assert who is a member and exactly when they entered and left.
//!
//! Used by `segstream test PATH...` and by the `slt` test target, so the same files pass
//! or fail the same way in both. The format is in [`parse`]; how a file runs in [`run`];
//! docs/testing.md is the guide for fixture authors.

pub mod diff;
pub mod parse;
pub mod run;

use std::path::{Path, PathBuf};

pub use parse::{parse, Expect, ParseError, Record, SortMode};
pub use run::{run_file, Failure, FileReport, Mode};

/// The `.slt` files under each path (a file is taken as is), sorted, without duplicates.
pub fn collect_fixtures(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut files)?;
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            ));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "slt") {
            files.push(path);
        }
    }
    Ok(())
}

/// Runs fixtures one after the other; `on_file` sees each report as it is done.
pub async fn run_all(files: &[PathBuf], mode: Mode, mut on_file: impl FnMut(&FileReport)) -> Vec<FileReport> {
    let mut reports = Vec::with_capacity(files.len());
    for file in files {
        let report = run_file(file, mode).await;
        on_file(&report);
        reports.push(report);
    }
    reports
}
