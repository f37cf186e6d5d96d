//! `segstream subscribe`: a segment's membership changes, printed as they arrive from a
//! running server (optionally after a snapshot of the current members).

use std::collections::HashMap;
use std::io::Write;

use anyhow::bail;
use segstream_proto::display::timestamp_text;
use segstream_proto::v1 as pb;

use crate::remote::{describe, Client};

/// Where the subscription starts.
pub enum Start {
    /// Current members first, a marker, then live changes.
    Snapshot,
    /// Every change from this sequence number on (inclusive), in each segment.
    From(u64),
    /// Only changes made from now on.
    Now,
}

pub struct Options {
    pub segments: Vec<String>,
    pub start: Start,
    /// Stop after this many changes (snapshot members do not count; 0 with a snapshot
    /// stops at its end).
    pub count: Option<u64>,
    /// One JSON object per line instead of columns.
    pub json: bool,
}

pub async fn run(client: &mut Client, options: Options) -> anyhow::Result<()> {
    use pb::subscribe_request::Start as S;
    let snapshot = matches!(options.start, Start::Snapshot);
    if options.count == Some(0) && !snapshot {
        return Ok(());
    }
    let start = match options.start {
        Start::Snapshot => S::Snapshot(pb::Snapshot {}),
        Start::Now => S::Now(pb::Now {}),
        Start::From(seq) => S::Resume(pb::Resume {
            after_seq: options.segments.iter().map(|s| (s.clone(), seq.saturating_sub(1))).collect(),
        }),
    };
    let request = pb::SubscribeRequest {
        segments: options.segments.clone(),
        start: Some(start),
        progress_interval_ms: 1000,
    };
    let mut stream = match client.subscribe(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => bail!("{}", describe(&status)),
    };
    let mut changes = 0u64;
    let stdout = std::io::stdout();
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => bail!("the server ended the subscription"),
            Err(status) => bail!("{}", describe(&status)),
        };
        let mut out = stdout.lock();
        use pb::subscribe_response::Event;
        // With --count, stop after that many changes (after the snapshot, if any).
        let mut may_stop = false;
        match message.event {
            Some(Event::Change(change)) => {
                changes += 1;
                may_stop = true;
                if options.json {
                    writeln!(out, "{}", change_json(&change))?;
                } else {
                    writeln!(out, "{}", change_line(&change))?;
                }
            }
            Some(Event::Member(member)) => {
                if options.json {
                    let json = serde_json::json!({
                        "segment": member.segment, "member": member.key,
                        "attributes": attributes(&member.attributes_json),
                    });
                    writeln!(out, "{json}")?;
                } else {
                    writeln!(out, "{}  member  {}  {}", member.segment, member.key, member.attributes_json)?;
                }
            }
            Some(Event::SnapshotEnd(end)) => {
                may_stop = true;
                if options.json {
                    writeln!(out, "{}", serde_json::json!({ "snapshot_end": sorted(&end.seq) }))?;
                } else {
                    writeln!(out, "-- snapshot complete at {}; live changes follow", positions(&end.seq))?;
                }
            }
            // Progress says the client is up to date; it has nothing to print.
            Some(Event::Progress(_)) | None => {}
        }
        out.flush()?;
        if may_stop && options.count.is_some_and(|n| changes >= n) {
            return Ok(());
        }
    }
}

/// `recent_buyers  #3  exited  ann  2026-04-01T13:00:00  {}`
pub fn change_line(change: &pb::Change) -> String {
    let mut line = format!(
        "{}  #{}  {}  {}  {}  {}",
        change.segment,
        change.seq,
        kind_name(change.kind),
        change.key,
        timestamp_text(change.at_unix_nanos),
        change.attributes_json
    );
    if !change.reason.is_empty() {
        line.push_str(&format!("  ({})", change.reason));
    }
    line
}

fn change_json(change: &pb::Change) -> serde_json::Value {
    let mut json = serde_json::json!({
        "segment": change.segment,
        "seq": change.seq,
        "kind": kind_name(change.kind),
        "key": change.key,
        "at": timestamp_text(change.at_unix_nanos),
        "attributes": attributes(&change.attributes_json),
    });
    if !change.reason.is_empty() {
        json["reason"] = change.reason.clone().into();
    }
    json
}

fn kind_name(kind: i32) -> &'static str {
    match pb::ChangeKind::try_from(kind) {
        Ok(pb::ChangeKind::Entered) => "entered",
        Ok(pb::ChangeKind::Exited) => "exited",
        Ok(pb::ChangeKind::Updated) => "updated",
        Ok(pb::ChangeKind::Redacted) => "redacted",
        _ => "unknown",
    }
}

fn attributes(json: &str) -> serde_json::Value {
    serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
}

fn sorted(map: &HashMap<String, u64>) -> std::collections::BTreeMap<String, u64> {
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

fn positions(map: &HashMap<String, u64>) -> String {
    sorted(map).iter().map(|(segment, seq)| format!("{segment} #{seq}")).collect::<Vec<_>>().join(", ")
}
