//! The `segstream` command line.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use segstream_engine::{ClockMode, Engine, EngineOptions};
use segstream_types::{Error, Position};

mod demo;
mod fixtures;

#[derive(Parser)]
#[command(
    name = "segstream",
    version,
    about = "Real-time audience segmentation: customer segments declared in streaming SQL, kept exact as events arrive."
)]
struct Cli {
    /// Where segstream keeps its data (created if missing).
    #[arg(long, global = true, default_value = "./segstream-data", env = "SEGSTREAM_DATA_DIR")]
    data_dir: PathBuf,

    /// `wall` follows UTC; `manual` starts at 1970-01-01 and moves only by ADVANCE TIME.
    #[arg(long, global = true, default_value = "wall", env = "SEGSTREAM_CLOCK")]
    clock: ClockMode,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run statements against the data directory and print their results.
    #[command(after_help = "Examples:
  segstream sql -e \"SHOW SEGMENTS\"
  segstream sql -f sql-examples/workload/schema.sql -f sql-examples/workload/segments.sql
  segstream sql --clock manual -e \"ADVANCE TIME BY INTERVAL '1 hour'\" -e \"SELECT NOW()\"
  echo \"EXPLAIN SEGMENT recent_buyers\" | segstream sql

Statements run in the order given; the first error stops the run and exits with status 1.")]
    Sql {
        /// A statement (or several, separated by `;`). May be repeated.
        #[arg(short = 'e', long = "execute", value_name = "SQL")]
        execute: Vec<String>,

        /// A file of statements. May be repeated; -e and -f run in the order given.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        files: Vec<PathBuf>,
    },

    /// Run sqllogictest fixtures (.slt): each file in a fresh data directory on the manual clock.
    #[command(after_help = "Examples:
  segstream test sql-examples/
  segstream test sql-examples/recent_buyers/recent_buyers.slt
  segstream test --complete my_segment.slt    # fill in the expected rows of a new fixture

A fixture is a list of records separated by blank lines:

  statement ok
  ADVANCE TIME TO TIMESTAMP '2026-04-01 13:00:00'

  query TTP
  SELECT key, kind, at FROM segstream.changes WHERE segment = 'recent_buyers' ORDER BY seq
  ----
  ann entered 2026-04-01T10:00:00
  ann exited 2026-04-01T13:00:00

Exits with status 1 when any file fails. --data-dir and --clock do not apply. See docs/testing.md.")]
    Test {
        /// Fixture files, or directories searched for `.slt` files.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,

        /// Write each query's results (and column types) into the file instead of checking them.
        #[arg(long)]
        complete: bool,
    },

    /// Watch the product work: the reference workload's seven segments over live generated events.
    #[command(after_help = "Examples:
  segstream demo                       # until Ctrl-C, in a temporary data directory
  segstream demo --rate 2000 --users 50000
  segstream --data-dir ./demo-data demo --duration 60

Creates the stream, table and segments of sql-examples/workload/, loads a profile per user, then
streams events stamped with the wall clock and shows each segment's members and the latest entries
and exits, read from the change log as a subscriber would. Without --data-dir the data goes to a
temporary directory removed at the end.")]
    Demo {
        /// Events per second.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        rate: u64,

        /// Users in the generated population (each with a profile).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        users: u64,

        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, &matches).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `Ok(false)` when a statement failed (already reported).
async fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<bool> {
    let options = EngineOptions::new(&cli.data_dir).with_clock(cli.clock);
    match cli.command {
        Command::Test { paths, complete } => fixtures::run(&paths, complete).await,
        Command::Demo { rate, users, duration } => {
            let options = demo::DemoOptions {
                rate,
                users: users as usize,
                duration: duration.map(std::time::Duration::from_secs),
            };
            // Unless a data directory was asked for, the demo leaves nothing behind.
            let explicit = matches!(
                matches.value_source("data_dir"),
                Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
            );
            if explicit {
                demo::run(&cli.data_dir, options).await?;
            } else {
                let dir = tempfile::Builder::new().prefix("segstream-demo").tempdir()?;
                demo::run(dir.path(), options).await?;
            }
            Ok(true)
        }
        Command::Sql { execute, files } => {
            let mut engine = Engine::open(options)
                .with_context(|| format!("opening the data directory {}", cli.data_dir.display()))?;
            engine.on_backfill_progress(|p| {
                if p.total > 100_000 {
                    eprintln!("backfill {}: {} rows of {} from {}", p.segment, p.rows, p.total, p.relation);
                }
            });
            // -e and -f in command-line order: clap keeps each occurrence's index.
            let sql_matches = matches.subcommand_matches("sql");
            let indices = |id: &str| -> Vec<usize> {
                sql_matches.and_then(|m| m.indices_of(id)).map(|i| i.collect()).unwrap_or_default()
            };
            let mut ordered: Vec<(usize, String, Source)> = Vec::new();
            for ((i, index), sql) in indices("execute").into_iter().enumerate().zip(execute) {
                ordered.push((index, format!("-e #{}", i + 1), Source::Text(sql)));
            }
            for (index, file) in indices("files").into_iter().zip(files) {
                ordered.push((index, file.display().to_string(), Source::File(file)));
            }
            ordered.sort_by_key(|(index, _, _)| *index);
            let mut scripts: Vec<(String, String)> = Vec::with_capacity(ordered.len());
            for (_, origin, source) in ordered {
                let text = match source {
                    Source::Text(text) => text,
                    Source::File(file) => std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?,
                };
                scripts.push((origin, text));
            }
            if scripts.is_empty() {
                if std::io::stdin().is_terminal() {
                    anyhow::bail!(
                        "give statements with -e or -f, or pipe them in (see `segstream sql --help`)"
                    );
                }
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading statements from standard input")?;
                scripts.push(("<stdin>".into(), text));
            }
            for (origin, text) in &scripts {
                if !run_script(&mut engine, origin, text).await {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

enum Source {
    Text(String),
    File(PathBuf),
}

async fn run_script(engine: &mut Engine, origin: &str, text: &str) -> bool {
    let statements = match segstream_sql::parse_statements(text) {
        Ok(s) => s,
        Err(e) => {
            report(origin, text, &e);
            return false;
        }
    };
    for statement in statements {
        match engine.execute_statement(&statement).await {
            Ok(output) => println!("{}\n", output.render()),
            Err(e) => {
                report(origin, text, &e.or_position(statement.position));
                return false;
            }
        }
    }
    true
}

/// Prints an error with the line it points at and a caret under the column.
fn report(origin: &str, text: &str, error: &Error) {
    eprintln!("error: {error}");
    if let Some(Position { line, column }) = error.position() {
        eprintln!("  --> {origin}:{line}:{column}");
        if let Some(source_line) = text.lines().nth((line as usize).saturating_sub(1)) {
            let gutter = line.to_string();
            eprintln!("{} |", " ".repeat(gutter.len()));
            eprintln!("{gutter} | {source_line}");
            eprintln!("{} | {}^", " ".repeat(gutter.len()), " ".repeat((column as usize).saturating_sub(1)));
        }
    }
}
