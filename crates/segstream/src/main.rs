//! The `segstream` command line.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use segstream_engine::{ClockMode, Engine, EngineOptions};

mod allocator;
mod demo;
mod fixtures;
mod ingest_file;
mod remote;
mod shell;
mod subscribe_cmd;

use remote::Remote;
use shell::Target;

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

    /// A running server to talk to (`host:port` or a URL) instead of the data directory.
    /// `serve` listens here.
    #[arg(long, global = true, env = "SEGSTREAM_ADDR", value_name = "ADDR")]
    addr: Option<String>,

    /// Bearer token: `serve` requires it of every call; clients send it.
    #[arg(long, global = true, env = "SEGSTREAM_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Clients: a CA certificate (PEM) to trust for a TLS server (implies https).
    #[arg(long, global = true, env = "SEGSTREAM_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run statements (from -e, -f, standard input, or an interactive shell) and print their results.
    #[command(after_help = "Examples:
  segstream sql                                    # interactive shell (history in ~/.segstream_history)
  segstream sql -e \"SHOW SEGMENTS\"
  segstream sql --addr 127.0.0.1:50051 -e \"SELECT * FROM recent_buyers\"
  segstream sql -f sql-examples/workload/schema.sql -f sql-examples/workload/segments.sql
  segstream sql --clock manual -e \"ADVANCE TIME BY INTERVAL '1 hour'\" -e \"SELECT NOW()\"
  echo \"EXPLAIN SEGMENT recent_buyers\" | segstream sql

Statements run in the order given; the first error stops the run and exits with status 1.
Without --addr they run against the data directory (no server may have it open).")]
    Sql {
        /// A statement (or several, separated by `;`). May be repeated.
        #[arg(short = 'e', long = "execute", value_name = "SQL")]
        execute: Vec<String>,

        /// A file of statements. May be repeated; -e and -f run in the order given.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        files: Vec<PathBuf>,
    },

    /// Serve the gRPC API (and Prometheus metrics) over the data directory.
    #[command(after_help = "Examples:
  segstream serve                                   # ./segstream-data, 127.0.0.1:50051, wall clock
  segstream serve --addr 0.0.0.0:50051 --token \"$TOKEN\" --tls-cert cert.pem --tls-key key.pem
  segstream --clock manual --data-dir /tmp/t serve --addr 127.0.0.1:0 --metrics-addr off

Prints `listening on ADDR` (and the metrics address) once ready; stops cleanly on Ctrl-C or SIGTERM.
The API: docs/grpc-api.md.")]
    Serve {
        /// Prometheus metrics address (`off` for none).
        #[arg(long, default_value = "127.0.0.1:9464", env = "SEGSTREAM_METRICS_ADDR", value_name = "ADDR")]
        metrics_addr: String,

        /// TLS certificate chain (PEM); with --tls-key, the server speaks only TLS.
        #[arg(long, requires = "tls_key", value_name = "FILE")]
        tls_cert: Option<PathBuf>,

        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert", value_name = "FILE")]
        tls_key: Option<PathBuf>,

        /// Largest request accepted, in MiB.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
        max_request_mib: u64,

        /// Wall clock: the longest a time-driven change (an exit at a window's end) waits
        /// after its instant, in ms; also the least time between two catch-ups, so changes
        /// due close together are applied in one step. The clock wakes when a change is due.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        timer_delay_ms: u64,

        /// Drop each segment's changes logged longer ago than this (by the engine clock),
        /// e.g. `7d`, `12h`, `30m`, `90s`. Unlimited if not given.
        #[arg(long, value_parser = parse_age, value_name = "AGE")]
        change_log_max_age: Option<std::time::Duration>,

        /// Keep at most this many of each segment's latest changes. Unlimited if not given.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
        change_log_max_changes: Option<u64>,

        /// How long an ingest's idempotency key is remembered (by the engine clock): a retry
        /// within it is applied once, e.g. `24h`, `7d`.
        #[arg(long, value_parser = parse_age, value_name = "AGE", default_value = "24h")]
        idempotency_window: std::time::Duration,

        /// Memory for hot operator state in front of RocksDB, in MiB: per-user state touched
        /// again within it is not read from disk. Colder state is read back when touched.
        #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
        state_cache_mib: u64,

        /// How often state held in memory is checkpointed to RocksDB, in ms (also at half
        /// the state cache, at FORGET KEY and at shutdown). Recovery after a crash replays
        /// the journal written since the last checkpoint.
        #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
        checkpoint_interval_ms: u64,
    },

    /// Load a file of rows (NDJSON, CSV or Parquet) into a stream or table.
    #[command(after_help = "Examples:
  segstream ingest --stream events events.ndjson
  segstream ingest --table profiles profiles.csv --addr 127.0.0.1:50051
  segstream ingest --stream events day1.parquet

Columns are matched by name and converted to the declared types; a row that does not fit is
rejected (the summary names its line or row and why) and the others are loaded. Without --addr
the rows go into the data directory.")]
    Ingest {
        /// The stream to load into.
        #[arg(long, value_name = "NAME", conflicts_with = "table", required_unless_present = "table")]
        stream: Option<String>,

        /// The table to load into (rows upsert by key).
        #[arg(long, value_name = "NAME")]
        table: Option<String>,

        /// The format, when the file name does not say (.ndjson/.jsonl/.json, .csv, .parquet).
        #[arg(long, value_enum)]
        format: Option<ingest_file::FileFormat>,

        /// The file of rows.
        file: PathBuf,
    },

    /// Print a segment's membership changes as they happen (needs a running server).
    #[command(after_help = "Examples:
  segstream subscribe recent_buyers --snapshot        # current members, then live changes
  segstream subscribe recent_buyers --from 120        # every change from #120 on (resume)
  segstream subscribe recent_buyers cart_abandoners --json --count 10

Each change prints as `SEGMENT  #SEQ  KIND  KEY  AT  ATTRIBUTES`; sequence numbers grow by 1 per
segment, so a client that remembers the last one it applied resumes with --from LAST+1.")]
    Subscribe {
        /// Segments to follow.
        #[arg(required = true, value_name = "SEGMENT")]
        segments: Vec<String>,

        /// Start with the current members, then a marker, then live changes.
        #[arg(long, conflicts_with = "from")]
        snapshot: bool,

        /// Start at this sequence number (inclusive) in each segment.
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,

        /// Exit after this many changes.
        #[arg(long, value_name = "N")]
        count: Option<u64>,

        /// One JSON object per line.
        #[arg(long)]
        json: bool,
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
  segstream demo --segments many       # the 105 segments of the many-segment workload

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

        /// Which segments: the workload's seven, or the 105 of the many-segment workload
        /// (the seven in 15 variants; shown as the seven and the variants summed).
        #[arg(long, value_enum, default_value_t = DemoSegments::Seven)]
        segments: DemoSegments,
    },
}

/// The segments `segstream demo` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DemoSegments {
    Seven,
    Many,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    allocator::configure();
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
    let remote = match (&cli.command, &cli.addr) {
        (Command::Serve { .. }, _) | (_, None) => None,
        (_, Some(addr)) => {
            Some(Remote { addr: addr.clone(), token: cli.token.clone(), ca_cert: cli.ca_cert.clone() })
        }
    };
    match cli.command {
        Command::Test { paths, complete } => fixtures::run(&paths, complete).await,
        Command::Demo { rate, users, duration, segments } => {
            // Unless a data directory was asked for, the demo leaves nothing behind.
            let keep_data = matches!(
                matches.value_source("data_dir"),
                Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
            );
            let options = demo::DemoOptions {
                rate,
                users: users as usize,
                duration: duration.map(std::time::Duration::from_secs),
                keep_data,
                segments: match segments {
                    DemoSegments::Seven => segstream_workload::segments::seven(),
                    DemoSegments::Many => segstream_workload::segments::many(),
                },
            };
            if keep_data {
                demo::run(&cli.data_dir, options).await?;
            } else {
                let dir = tempfile::Builder::new().prefix("segstream-demo").tempdir()?;
                demo::run(dir.path(), options).await?;
            }
            Ok(true)
        }
        Command::Sql { execute, files } => {
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
            let interactive = scripts.is_empty() && std::io::stdin().is_terminal();
            if scripts.is_empty() && !interactive {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading statements from standard input")?;
                scripts.push(("<stdin>".into(), text));
            }
            let (mut target, described) = match remote {
                Some(remote) => (Target::Remote(remote.connect().await?), format!("server {}", remote.addr)),
                None => (
                    Target::Embedded(Box::new(open_engine(options, &cli.data_dir)?)),
                    format!("data directory {}, {} clock", cli.data_dir.display(), cli.clock),
                ),
            };
            if interactive {
                shell::interactive(&mut target, &described).await?;
                return Ok(true);
            }
            for (origin, text) in &scripts {
                if !target.run_script(origin, text).await {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Command::Serve {
            metrics_addr,
            tls_cert,
            tls_key,
            max_request_mib,
            timer_delay_ms,
            change_log_max_age,
            change_log_max_changes,
            idempotency_window,
            state_cache_mib,
            checkpoint_interval_ms,
        } => {
            let mut config = segstream_server::ServerConfig::new(&cli.data_dir);
            config.clock = cli.clock;
            if let Some(addr) = &cli.addr {
                config.addr = resolve(addr).with_context(|| format!("--addr {addr}"))?;
            }
            config.metrics_addr = match metrics_addr.as_str() {
                "off" | "none" | "" => None,
                addr => Some(resolve(addr).with_context(|| format!("--metrics-addr {addr}"))?),
            };
            config.token = cli.token.clone().filter(|t| !t.is_empty());
            config.tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(segstream_server::TlsFiles { cert, key }),
                _ => None,
            };
            config.max_request_bytes = (max_request_mib * 1024 * 1024) as usize;
            config.timer_delay = std::time::Duration::from_millis(timer_delay_ms);
            config.change_log_retention = segstream_engine::ChangeLogRetention {
                max_age: change_log_max_age,
                max_changes: change_log_max_changes,
            };
            config.idempotency_window = idempotency_window;
            config.state_cache_bytes = (state_cache_mib * 1024 * 1024) as usize;
            config.checkpoint_interval = std::time::Duration::from_millis(checkpoint_interval_ms);
            let secured = config.token.is_some();
            let tls = config.tls.is_some();
            segstream_server::serve(config, shutdown_signal(), |listening| {
                println!(
                    "listening on {}{}{}",
                    listening.grpc,
                    if tls { " (TLS)" } else { "" },
                    if secured { ", bearer token required" } else { "" }
                );
                if let Some(metrics) = listening.metrics {
                    println!("metrics on http://{metrics}/metrics");
                }
                println!("data directory {}, {} clock", cli.data_dir.display(), cli.clock);
            })
            .await
            .with_context(|| format!("serving the data directory {}", cli.data_dir.display()))?;
            println!("stopped");
            Ok(true)
        }
        Command::Ingest { stream, table, format, file } => {
            let relation = stream.or(table).context("name the stream (--stream) or table (--table)")?;
            let mut destination = match remote {
                Some(remote) => ingest_file::Destination::Remote(remote.connect().await?),
                None => ingest_file::Destination::Embedded(Box::new(open_engine(options, &cli.data_dir)?)),
            };
            let rejected = ingest_file::run(&mut destination, &relation, &file, format).await?;
            Ok(rejected == 0)
        }
        Command::Subscribe { segments, snapshot, from, count, json } => {
            let Some(remote) = remote else {
                anyhow::bail!(
                    "subscribe follows a running server: start `segstream serve` and give its address with --addr \
                     (or SEGSTREAM_ADDR)"
                );
            };
            let start = match (snapshot, from) {
                (true, _) => subscribe_cmd::Start::Snapshot,
                (false, Some(seq)) => subscribe_cmd::Start::From(seq),
                (false, None) => subscribe_cmd::Start::Now,
            };
            let mut client = remote.connect().await?;
            subscribe_cmd::run(&mut client, subscribe_cmd::Options { segments, start, count, json }).await?;
            Ok(true)
        }
    }
}

fn open_engine(options: EngineOptions, data_dir: &std::path::Path) -> anyhow::Result<Engine> {
    let mut engine = Engine::open(options)
        .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    engine.on_backfill_progress(|p| {
        if p.total > 100_000 {
            eprintln!("backfill {}: {} rows of {} from {}", p.segment, p.rows, p.total, p.relation);
        }
    });
    Ok(engine)
}

/// `host:port` to a socket address (`localhost` allowed).
fn resolve(addr: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()?.next().with_context(|| format!("{addr} names no address"))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

enum Source {
    Text(String),
    File(PathBuf),
}

/// An age such as `7d`, `12h`, `30m` or `90s`: a whole number and one unit.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not an age: write a whole number and a unit, e.g. 7d, 12h, 30m, 90s")
    })?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => {
            return Err(format!("`{other}` is not a unit of age: use s, m, h or d (e.g. 7d, 12h, 30m, 90s)"));
        }
    };
    if number == 0 {
        return Err("the age must be more than 0".into());
    }
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long an age"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_age;

    #[test]
    fn ages_are_a_number_and_a_unit() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_age("7 weeks").expect_err("no weeks").contains("not a unit of age"));
        assert!(parse_age("d").expect_err("no number").contains("not an age"));
        assert!(parse_age("0h").expect_err("zero").contains("more than 0"));
        assert!(parse_age("99999999999999999d").is_err());
    }
}
