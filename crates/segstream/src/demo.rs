//! `segstream demo`: the product working, in one command.
//!
//! Starts the embedded engine on the wall clock, creates the reference workload's stream,
//! table and seven segments (the files in `sql-examples/workload/`, built into the binary),
//! loads every user's profile, then streams generated events at a steady rate, stamped
//! with the wall clock. Once a second it reads each segment's change log, exactly as a
//! subscriber would, and shows member counts and the latest entries and exits.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use segstream_engine::{ChangeKind, ChangeRecord, ClockMode, Engine, EngineOptions, IngestRows};
use segstream_workload::{profiles, EventGenerator, WorkloadConfig};

const SCHEMA_SQL: &str = include_str!("../../../sql-examples/workload/schema.sql");

/// How the demo runs.
pub struct DemoOptions {
    /// Events per second.
    pub rate: u64,
    pub users: usize,
    /// Stop after this long (otherwise at Ctrl-C).
    pub duration: Option<Duration>,
    /// The data directory stays after the demo (it was asked for); otherwise it is a
    /// temporary one, removed at exit.
    pub keep_data: bool,
    /// The segments created in a new data directory: `(name, CREATE SEGMENT ...)`.
    pub segments: Vec<(String, String)>,
}

/// Segments shown one per line; beyond this many, the rest are summed on one line.
const SHOWN: usize = 7;

/// Per segment: who is in, and how many entered and left since the demo started.
#[derive(Default)]
struct SegmentView {
    members: i64,
    entered: u64,
    exited: u64,
    updated: u64,
    next_seq: u64,
}

/// Runs until Ctrl-C or the duration; `data_dir` must be new or a previous demo's.
pub async fn run(data_dir: &Path, options: DemoOptions) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let mut engine = Engine::open(EngineOptions::new(data_dir).with_clock(ClockMode::Wall))
        .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    let fresh = engine.catalog().get("events").is_none();
    if fresh {
        engine.execute(SCHEMA_SQL).await.context("creating the workload's stream and table")?;
        for (name, sql) in &options.segments {
            engine.execute(sql).await.with_context(|| format!("creating the workload's segment {name}"))?;
        }
    }
    let segments: Vec<String> =
        engine.catalog().list(segstream_sql::ObjectKind::Segment).map(|r| r.name.clone()).collect();

    let start = engine.now().nanos();
    let mut config = WorkloadConfig::new(options.users, 1, 1);
    config.start = start;
    config.step = (1_000_000_000 / options.rate.max(1)) as i64;
    config.seed = start as u64;
    if fresh {
        for from in (0..options.users).step_by(10_000) {
            let batch = profiles(&config, from, from + 10_000);
            engine.ingest("profiles", IngestRows::Arrow(batch)).context("loading profiles")?;
        }
    }
    let mut generator = EventGenerator::new(config);
    let mut views: BTreeMap<String, SegmentView> =
        segments.iter().map(|s| (s.clone(), SegmentView::default())).collect();
    if !fresh {
        // A previous demo's data: count its members, show only what happens from now on.
        for (name, view) in views.iter_mut() {
            view.members = engine.members(name).await?.num_rows() as i64;
            view.next_seq = engine.changes_from(name, 0)?.last().map_or(0, |c| c.seq);
        }
    }
    let mut latest: VecDeque<ChangeRecord> = VecDeque::new();
    let terminal = std::io::stdout().is_terminal();
    let began = Instant::now();
    let (mut ingested, mut rejected) = (0u64, 0u64);
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut next_frame = began;
    loop {
        ticker.tick().await;
        let stopping = stop.load(Ordering::SeqCst) || options.duration.is_some_and(|d| began.elapsed() >= d);
        // Events due by now, stamped on the wall clock (1% of them a few minutes late).
        let due = (began.elapsed().as_nanos() as u64 * options.rate / 1_000_000_000)
            .saturating_sub(generator.generated());
        if due > 0 {
            let batch = generator.next_batch(due as usize);
            let report = engine.ingest("events", IngestRows::Arrow(batch)).context("ingesting events")?;
            ingested += report.accepted as u64;
            rejected += report.rejected.len() as u64;
        } else {
            engine.catch_up_with_wall_clock()?;
        }
        if Instant::now() < next_frame && !stopping {
            continue;
        }
        next_frame += Duration::from_secs(1);
        for (name, view) in views.iter_mut() {
            for change in engine.changes_from(name, view.next_seq + 1)? {
                view.next_seq = change.seq;
                match change.kind {
                    ChangeKind::Entered => {
                        view.members += 1;
                        view.entered += 1;
                    }
                    ChangeKind::Exited => {
                        view.members -= 1;
                        view.exited += 1;
                    }
                    ChangeKind::Updated => view.updated += 1,
                    ChangeKind::Redacted => {}
                }
                latest.push_back(change);
                if latest.len() > 12 {
                    latest.pop_front();
                }
            }
        }
        let frame = render(&views, &latest, &engine, ingested, rejected, &options, data_dir, began.elapsed());
        let mut out = std::io::stdout().lock();
        if terminal {
            // Home and clear, then the frame: the table updates in place.
            write!(out, "\x1b[H\x1b[2J{frame}")?;
        } else if stopping {
            write!(out, "{frame}")?;
        } else {
            let counts: Vec<String> = views.iter().map(|(n, v)| format!("{n}={}", v.members)).collect();
            writeln!(out, "{}s events={ingested} {}", began.elapsed().as_secs(), counts.join(" "))?;
        }
        out.flush()?;
        if stopping {
            return Ok(());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    views: &BTreeMap<String, SegmentView>,
    latest: &VecDeque<ChangeRecord>,
    engine: &Engine,
    ingested: u64,
    rejected: u64,
    options: &DemoOptions,
    data_dir: &Path,
    elapsed: Duration,
) -> String {
    let mut s = format!(
        "segstream demo: {} users, {} events/s, clock {} UTC (Ctrl-C to stop)\n",
        options.users,
        options.rate,
        engine.now()
    );
    let data = if options.keep_data {
        format!("data in {}", data_dir.display())
    } else {
        "data in a temporary directory, removed at exit".to_string()
    };
    s.push_str(&format!(
        "{ingested} events ingested ({rejected} rejected) in {}s; {data}\n\n",
        elapsed.as_secs()
    ));
    s.push_str(&format!(
        "{:<20} {:>8} {:>8} {:>8} {:>8}\n",
        "segment", "members", "entered", "exited", "updated"
    ));
    // The seven as written first (variant 0), then the variants summed.
    let (shown, rest): (Vec<_>, Vec<_>) = views
        .iter()
        .partition(|(name, _)| views.len() <= SHOWN || !name.contains(|c: char| c.is_ascii_digit()));
    for (name, v) in shown {
        s.push_str(&format!(
            "{name:<20} {:>8} {:>8} {:>8} {:>8}\n",
            v.members, v.entered, v.exited, v.updated
        ));
    }
    if !rest.is_empty() {
        let sum = |f: fn(&SegmentView) -> i64| rest.iter().map(|(_, v)| f(v)).sum::<i64>();
        s.push_str(&format!(
            "{:<20} {:>8} {:>8} {:>8} {:>8}\n",
            format!("+{} variants", rest.len()),
            sum(|v| v.members),
            sum(|v| v.entered as i64),
            sum(|v| v.exited as i64),
            sum(|v| v.updated as i64)
        ));
    }
    s.push_str("\nlatest changes\n");
    if latest.is_empty() {
        s.push_str("  (none yet: cart_abandoners needs 5 minutes, pricing_hot two pricing views)\n");
    }
    for c in latest.iter().rev() {
        s.push_str(&format!("  {}  {:<20} {:<8} {}\n", c.at, c.segment, c.kind.as_str(), c.key));
    }
    s
}
