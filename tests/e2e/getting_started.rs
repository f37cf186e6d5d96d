//! docs/getting-started.md, run: every `$ ` command of its `console` blocks, in order, in
//! a fresh directory (with `sql-examples/` linked in) and with the built `segstream` first
//! on PATH; each command's output must be what the guide shows. A command ending in `&`
//! runs in the background (the server, a subscriber): the test waits for its first line
//! before going on, and for all of its lines at the end.
//!
//! In the guide's outputs a line `...` stands for any number of lines and a line ending in
//! `...` for any line with that beginning. The guide's ports (50051, 9464) are replaced by
//! free ones so the test can run beside anything else.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::repo_root;

/// A command of the guide and the output shown under it.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    background: bool,
    expected: Vec<String>,
}

fn parse_guide(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_console = !in_console && line.trim() == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            let command = command.trim_end();
            let (command, background) = match command.strip_suffix('&') {
                Some(c) => (c.trim_end(), true),
                None => (command, false),
            };
            steps.push(Step { line: i + 1, command: command.to_string(), background, expected: Vec::new() });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.to_string());
        }
    }
    steps
}

/// Whether `actual` is what `expected` shows, with `...` wildcards.
fn output_matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => match actual.split_first() {
            None => false,
            Some((line, actual_rest)) => {
                let same = match first.strip_suffix("...") {
                    Some(prefix) => line.starts_with(prefix),
                    None => line == first,
                };
                same && output_matches(rest, actual_rest)
            }
        },
    }
}

fn trimmed(lines: &[String]) -> Vec<String> {
    let mut lines: Vec<String> = lines.iter().map(|l| l.trim_end().to_string()).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Background {
    step: Step,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(
    output: &Arc<Mutex<Vec<String>>>,
    done: impl Fn(&[String]) -> bool,
    limit: Duration,
) -> Vec<String> {
    let started = Instant::now();
    loop {
        let lines = output.lock().map(|o| o.clone()).unwrap_or_default();
        if done(&lines) || started.elapsed() > limit {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_command_of_the_getting_started_guide_prints_what_the_guide_shows() {
    let guide_path = repo_root().join("docs/getting-started.md");
    let guide = std::fs::read_to_string(&guide_path).expect("the guide");
    let steps = parse_guide(&guide);
    assert!(steps.len() >= 6, "the guide has its commands: {steps:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    #[cfg(unix)]
    std::os::unix::fs::symlink(repo_root().join("sql-examples"), dir.path().join("sql-examples"))
        .expect("links");
    let bin_dir: PathBuf =
        Path::new(env!("CARGO_BIN_EXE_segstream")).parent().expect("bin dir").to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let (grpc, metrics) = (free_port(), free_port());
    let ports = |text: &str| {
        text.replace("127.0.0.1:50051", &format!("127.0.0.1:{grpc}"))
            .replace("127.0.0.1:9464", &format!("127.0.0.1:{metrics}"))
    };
    let shell = |command: &str| {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(command)
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("SEGSTREAM_ADDR", format!("127.0.0.1:{grpc}"))
            .env("SEGSTREAM_METRICS_ADDR", format!("127.0.0.1:{metrics}"))
            .env_remove("SEGSTREAM_DATA_DIR")
            .env_remove("SEGSTREAM_CLOCK")
            .env_remove("SEGSTREAM_TOKEN");
        c
    };

    let mut background: Vec<Background> = Vec::new();
    for step in steps {
        let command = ports(&step.command);
        let expected: Vec<String> = trimmed(&step.expected.iter().map(|l| ports(l)).collect::<Vec<_>>());
        let place = format!("docs/getting-started.md:{}: `{}`", step.line, step.command);
        if step.background {
            let mut child = shell(&format!("exec {command}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("{place}: {e}"));
            let output: Arc<Mutex<Vec<String>>> = Arc::default();
            let stdout = child.stdout.take().expect("stdout");
            {
                let output = Arc::clone(&output);
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        if let Ok(mut o) = output.lock() {
                            o.push(line);
                        }
                    }
                });
            }
            // Ready once its first line is out (a server listening, a subscriber subscribed).
            let first = expected.first().cloned();
            let lines = wait_for(&output, |l| first.is_none() || !l.is_empty(), Duration::from_secs(30));
            assert!(first.is_none() || !lines.is_empty(), "{place}: printed nothing in 30 s");
            background.push(Background { step: Step { expected, ..step }, child, output });
            continue;
        }
        let out = shell(&command).output().unwrap_or_else(|e| panic!("{place}: {e}"));
        let actual: Vec<String> =
            trimmed(&String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>());
        assert!(
            output_matches(&expected, &actual),
            "{place}: the output is not what the guide shows\n--- the guide:\n{}\n--- the command printed:\n{}\n--- stderr:\n{}",
            expected.join("\n"),
            actual.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for task in &background {
        let place = format!("docs/getting-started.md:{}: `{} &`", task.step.line, task.step.command);
        let lines = wait_for(
            &task.output,
            |l| output_matches(&task.step.expected, &trimmed(l)),
            Duration::from_secs(30),
        );
        assert!(
            output_matches(&task.step.expected, &trimmed(&lines)),
            "{place}: the output is not what the guide shows\n--- the guide:\n{}\n--- the command printed:\n{}",
            task.step.expected.join("\n"),
            lines.join("\n")
        );
    }
}

#[test]
fn the_guide_matcher_understands_its_wildcards() {
    let lines = |t: &str| t.lines().map(str::to_string).collect::<Vec<_>>();
    assert!(output_matches(&lines("a\n...\nd"), &lines("a\nb\nc\nd")));
    assert!(output_matches(&lines("a\n...\nd"), &lines("a\nd")));
    assert!(output_matches(&lines("ab...\nc"), &lines("abc 12\nc")));
    assert!(!output_matches(&lines("a\nd"), &lines("a\nb\nd")));
    assert!(!output_matches(&lines("ab...\n"), &lines("xab")));
    let steps = parse_guide("text\n```console\n$ one &\nout\n$ two\n```\n```sh\n$ not run\n```\n");
    assert_eq!(steps.len(), 2);
    assert!(steps[0].background && steps[0].expected == vec!["out".to_string()]);
    assert_eq!(steps[1].command, "two");
}
