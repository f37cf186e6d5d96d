//! Prometheus metrics, kept as atomics and written in the text exposition format on
//! `GET /metrics` by a small HTTP/1.1 responder (no framework: one endpoint, one page).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds of the step latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

/// Per segment: members now, and changes since the server started.
#[derive(Debug, Default, Clone)]
pub struct SegmentCounts {
    pub members: u64,
    pub entered: u64,
    pub exited: u64,
    pub updated: u64,
}

#[derive(Default)]
pub struct Metrics {
    pub events_ingested: AtomicU64,
    pub rows_rejected: AtomicU64,
    pub ingest_duplicates: AtomicU64,
    pub subscribers: AtomicU64,
    /// Journal syncs (group commits) and the steps they made durable.
    pub journal_syncs: AtomicU64,
    pub steps_committed: AtomicU64,
    /// What the engine's checkpoints and recovery have done (`Engine::checkpoint_totals`),
    /// copied after every step.
    pub checkpoints: Mutex<segstream_engine::CheckpointTotals>,
    pub segments: Mutex<BTreeMap<String, SegmentCounts>>,
    /// Per subscriber id: changes logged but not yet sent to it.
    pub subscriber_lag: Mutex<BTreeMap<u64, u64>>,
    step_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    step_count: AtomicU64,
    step_sum_nanos: AtomicU64,
}

impl Metrics {
    /// Records how long one processing step (a statement, an ingest, a clock tick that
    /// fired timers) held the engine.
    pub fn observe_step(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.step_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.step_count.fetch_add(1, Ordering::Relaxed);
        self.step_sum_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"));
        };
        counter(
            &mut out,
            "segstream_events_ingested_total",
            "Rows accepted by Ingest and IngestStream.",
            self.events_ingested.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "segstream_rows_rejected_total",
            "Rows rejected by Ingest and IngestStream.",
            self.rows_rejected.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "segstream_ingest_duplicates_total",
            "Ingest calls whose idempotency key had been applied already.",
            self.ingest_duplicates.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "segstream_journal_syncs_total",
            "Journal syncs (each a group commit).",
            self.journal_syncs.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "segstream_steps_committed_total",
            "Steps made durable by the journal syncs (steps per sync = the group size).",
            self.steps_committed.load(Ordering::Relaxed),
        );
        let checkpoints = self.checkpoints.lock().map(|c| *c).unwrap_or_default();
        counter(
            &mut out,
            "segstream_checkpoints_total",
            "Checkpoints: state held in memory written to RocksDB.",
            checkpoints.checkpoints,
        );
        counter(
            &mut out,
            "segstream_checkpoint_bytes_total",
            "Bytes of keys and values the checkpoints wrote.",
            checkpoints.bytes,
        );
        counter(
            &mut out,
            "segstream_journal_records_replayed_total",
            "Journal records replayed at start (what the last checkpoint did not cover).",
            checkpoints.replayed,
        );
        let segments = self.segments.lock().map(|s| s.clone()).unwrap_or_default();
        out.push_str("# HELP segstream_segment_members Members of a segment now (Total Qualified).\n# TYPE segstream_segment_members gauge\n");
        for (name, c) in &segments {
            out.push_str(&format!("segstream_segment_members{{segment=\"{name}\"}} {}\n", c.members));
        }
        out.push_str("# HELP segstream_segment_changes_total Membership changes logged since the server started (New Audience Updated).\n# TYPE segstream_segment_changes_total counter\n");
        for (name, c) in &segments {
            for (kind, v) in [("entered", c.entered), ("exited", c.exited), ("updated", c.updated)] {
                out.push_str(&format!(
                    "segstream_segment_changes_total{{segment=\"{name}\",kind=\"{kind}\"}} {v}\n"
                ));
            }
        }
        out.push_str(
            "# HELP segstream_subscribers Open Subscribe streams.\n# TYPE segstream_subscribers gauge\n",
        );
        out.push_str(&format!("segstream_subscribers {}\n", self.subscribers.load(Ordering::Relaxed)));
        let lag = self.subscriber_lag.lock().map(|l| l.values().copied().max().unwrap_or(0)).unwrap_or(0);
        out.push_str("# HELP segstream_subscriber_lag_changes Changes logged but not yet sent to the most lagging subscriber.\n# TYPE segstream_subscriber_lag_changes gauge\n");
        out.push_str(&format!("segstream_subscriber_lag_changes {lag}\n"));
        out.push_str("# HELP segstream_step_seconds How long a processing step held the engine.\n# TYPE segstream_step_seconds histogram\n");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.step_buckets) {
            out.push_str(&format!(
                "segstream_step_seconds_bucket{{le=\"{bound}\"}} {}\n",
                bucket.load(Ordering::Relaxed)
            ));
        }
        let count = self.step_count.load(Ordering::Relaxed);
        out.push_str(&format!("segstream_step_seconds_bucket{{le=\"+Inf\"}} {count}\n"));
        out.push_str(&format!(
            "segstream_step_seconds_sum {}\nsegstream_step_seconds_count {count}\n",
            self.step_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
        ));
        out
    }
}

/// Answers `GET /metrics` on `listener` until the task is dropped.
pub async fn serve_metrics(listener: TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { continue };
        let metrics = std::sync::Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            // Read the request head (bounded: a scrape's request is small).
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let head = String::from_utf8_lossy(&request);
            let (status, content_type, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", "text/plain; version=0.0.4", metrics.render())
            } else {
                ("404 Not Found", "text/plain", "segstream serves metrics at /metrics\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
