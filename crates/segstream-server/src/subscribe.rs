//! One subscription: a task that reads the durable change log at the subscriber's pace.
//!
//! It reads a page of changes with the engine held, lets go, and sends them into a small
//! bounded channel; when the client is slow the send waits, so the server's memory does
//! not grow with the client's lag (the log is on disk). When it has caught up it waits for
//! the next step, sending a Progress message with the clock every interval.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use segstream_engine::{ChangeLogReader, Engine};
use segstream_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

use crate::convert::{change, status};
use crate::shared::Shared;

/// Changes read per page.
const PAGE: usize = 256;
/// Members read per page of a snapshot.
const SNAPSHOT_PAGE: usize = 1024;

pub type Sender = mpsc::Sender<Result<pb::SubscribeResponse, Status>>;

fn event(event: pb::subscribe_response::Event) -> Result<pb::SubscribeResponse, Status> {
    Ok(pb::SubscribeResponse { event: Some(event) })
}

/// Checks the request against the log and returns each segment's starting position:
/// the last sequence number the subscriber already has.
pub fn positions(
    shared: &Shared,
    engine: &Engine,
    request: &pb::SubscribeRequest,
) -> Result<BTreeMap<String, u64>, Status> {
    use pb::subscribe_request::Start;
    if request.segments.is_empty() {
        return Err(Status::invalid_argument("name at least one segment to subscribe to"));
    }
    let mut positions = BTreeMap::new();
    for segment in &request.segments {
        let last = engine.last_seq(segment).map_err(status)?;
        let position = match &request.start {
            // From the durable end: a change written but not yet synced is still to come.
            None | Some(Start::Now(_)) => shared.durable_position(segment).min(last),
            Some(Start::Snapshot(_)) => last,
            Some(Start::Resume(resume)) => {
                let after = resume.after_seq.get(segment).copied().unwrap_or(0);
                if after > last {
                    return Err(Status::out_of_range(format!(
                        "segment `{segment}` has logged {last} changes, so it cannot resume after {after}: \
                         is this the server the client was subscribed to?"
                    )));
                }
                let first = engine.first_kept_seq(segment).map_err(status)?;
                if after + 1 < first {
                    return Err(dropped(segment, after, first));
                }
                after
            }
        };
        positions.insert(segment.clone(), position);
    }
    Ok(positions)
}

/// A resume point the change-log retention has already dropped: the client must start
/// again from a snapshot (FAILED_PRECONDITION: retrying the same request cannot work).
fn dropped(segment: &str, after: u64, first: u64) -> Status {
    Status::failed_precondition(format!(
        "segment `{segment}`'s change log no longer holds the changes after {after}: the change-log \
         retention keeps them from {first} on. Subscribe again with a snapshot (start: snapshot), \
         then follow from the sequence number it ends at"
    ))
}

/// A followed segment was dropped (or dropped and created again): its log is gone.
fn segment_dropped(segment: &str) -> Status {
    Status::not_found(format!("segment `{segment}` was dropped"))
}

/// Sends the segments' current members and the SnapshotEnd marker, and returns the
/// positions the snapshot stands at. Members and positions are read with the engine
/// held, so they agree exactly; they are sent after it is let go.
pub async fn snapshot(
    shared: &Shared,
    request: &pb::SubscribeRequest,
    tx: &Sender,
) -> Result<BTreeMap<String, u64>, Status> {
    let left = || Status::cancelled("the subscriber left");
    // Members and positions of durable state only (everything written is synced first).
    let engine = shared.read_durable().await.map_err(status)?;
    let positions = positions(shared, &engine, request)?;
    let mut members = Vec::new();
    for segment in &request.segments {
        let mut token: Option<Vec<u8>> = None;
        loop {
            let (page, next) =
                engine.members_page(segment, token.as_deref(), SNAPSHOT_PAGE).map_err(status)?;
            members.extend(page.into_iter().map(|m| pb::SnapshotMember {
                segment: segment.clone(),
                key: m.key,
                attributes_json: m.attributes,
            }));
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    drop(engine);
    for member in members {
        tx.send(event(pb::subscribe_response::Event::Member(member))).await.map_err(|_| left())?;
    }
    let end = pb::SnapshotEnd { seq: positions.clone().into_iter().collect() };
    tx.send(event(pb::subscribe_response::Event::SnapshotEnd(end))).await.map_err(|_| left())?;
    Ok(positions)
}

/// Sends every change after `positions`, then follows the log until the subscriber
/// leaves or a segment is dropped.
pub async fn follow(
    shared: Arc<Shared>,
    id: u64,
    mut positions: BTreeMap<String, u64>,
    progress_every: Duration,
    tx: Sender,
) {
    let mut version = shared.watch_log();
    shared.metrics.subscribers.fetch_add(1, Ordering::Relaxed);
    let result = follow_inner(&shared, id, &mut positions, progress_every, &tx, &mut version).await;
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
    shared.metrics.subscribers.fetch_sub(1, Ordering::Relaxed);
    if let Ok(mut lag) = shared.metrics.subscriber_lag.lock() {
        lag.remove(&id);
    }
}

async fn follow_inner(
    shared: &Shared,
    id: u64,
    positions: &mut BTreeMap<String, u64>,
    progress_every: Duration,
    tx: &Sender,
    version: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<(), Status> {
    let left = || Status::cancelled("the subscriber left");
    // Log pages are read without the engine, so a subscriber never queues behind steps.
    let readers: BTreeMap<String, ChangeLogReader> = {
        let engine = shared.read().await;
        positions
            .keys()
            .map(|segment| Ok((segment.clone(), engine.change_log_reader(segment).map_err(status)?)))
            .collect::<Result<_, Status>>()?
    };
    loop {
        // Seen before reading, so a sync during the read wakes the wait below.
        version.borrow_and_update();
        loop {
            let mut sent = false;
            let mut lag = 0;
            for (segment, position) in positions.iter_mut() {
                // Only what the last sync made durable: never a change a crash could undo.
                let durable = shared.durable_position(segment);
                lag += shared.written_position(segment).saturating_sub(*position);
                if durable <= *position {
                    continue;
                }
                let want = PAGE.min((durable - *position) as usize);
                let page = readers[segment.as_str()].page(*position + 1, want).map_err(status)?;
                // Retention dropped changes this subscriber had not read yet: a gap must
                // never pass as the next change.
                if page.first().is_none_or(|r| r.seq != *position + 1) {
                    // Unless the segment itself was dropped (and perhaps created again
                    // under its name): then this log is gone, not trimmed.
                    if !readers[segment.as_str()].is_current(&*shared.read().await) {
                        return Err(segment_dropped(segment));
                    }
                    let first = page.first().map_or(durable + 1, |r| r.seq);
                    return Err(dropped(segment, *position, first));
                }
                for record in page.iter().filter(|r| r.seq <= durable) {
                    tx.send(event(pb::subscribe_response::Event::Change(change(record))))
                        .await
                        .map_err(|_| left())?;
                    *position = record.seq;
                    sent = true;
                }
            }
            if let Ok(mut l) = shared.metrics.subscriber_lag.lock() {
                l.insert(id, lag);
            }
            if !sent {
                break;
            }
        }
        tokio::select! {
            changed = version.changed() => {
                if changed.is_err() {
                    return Err(Status::unavailable("the server is shutting down"));
                }
            }
            _ = tokio::time::sleep(progress_every) => {
                let engine = shared.read().await;
                // A segment dropped (or dropped and created again) ends the subscription.
                if let Some((segment, _)) = readers.iter().find(|(_, r)| !r.is_current(&engine)) {
                    return Err(segment_dropped(segment));
                }
                let clock = engine.now().nanos();
                drop(engine);
                let progress = pb::Progress { clock_unix_nanos: clock, seq: positions.clone().into_iter().collect() };
                tx.send(event(pb::subscribe_response::Event::Progress(progress))).await.map_err(|_| left())?;
            }
            _ = tx.closed() => return Err(left()),
        }
    }
}

#[cfg(test)]
mod tests {
    use segstream_engine::ChangeLogRetention;

    use super::*;
    use crate::test_support::{click, clicked};

    /// A subscriber that had read change 1 when retention dropped 1-3 gets
    /// FAILED_PRECONDITION on its stream, not change 4 as if it were the next one.
    #[tokio::test]
    async fn a_subscriber_behind_a_trim_is_told_to_resnapshot_not_given_a_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = clicked(dir.path()).await;
        {
            let mut step = shared.step().await;
            for user in ["a", "b", "c", "d", "e"] {
                step.ingest("clicks", click(user)).expect("ingests");
            }
            let keep_two = ChangeLogRetention { max_changes: Some(2), ..Default::default() };
            assert_eq!(step.trim_change_logs(&keep_two).expect("trims"), 3);
        }
        shared.commit().await.expect("commits");

        let (tx, mut rx) = mpsc::channel(8);
        let positions: BTreeMap<String, u64> = [("clicked".to_string(), 1)].into_iter().collect();
        tokio::spawn(follow(Arc::clone(&shared), 1, positions, Duration::from_secs(60), tx));
        match rx.recv().await.expect("a message") {
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition);
                assert!(status.message().contains("after 1"), "{}", status.message());
                assert!(status.message().contains("from 4 on"), "{}", status.message());
            }
            Ok(message) => panic!("expected the resnapshot error, got {message:?}"),
        }
    }

    /// A segment dropped and created again under its name, whose new log passes the
    /// subscriber's position, ends the subscription as dropped (NOT_FOUND), not as a trim.
    #[tokio::test]
    async fn a_segment_dropped_and_created_again_is_not_taken_for_a_trim() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = clicked(dir.path()).await;
        {
            let mut step = shared.step().await;
            step.ingest("clicks", click("a")).expect("ingests");
            step.ingest("clicks", click("b")).expect("ingests");
        }
        shared.commit().await.expect("commits");

        let (tx, mut rx) = mpsc::channel(8);
        let positions: BTreeMap<String, u64> = [("clicked".to_string(), 2)].into_iter().collect();
        tokio::spawn(follow(Arc::clone(&shared), 1, positions, Duration::from_secs(60), tx));
        tokio::task::yield_now().await;
        {
            let mut step = shared.step().await;
            step.execute(
                "DROP SEGMENT clicked; CREATE SEGMENT clicked AS SELECT DISTINCT user_id FROM clicks;",
            )
            .await
            .expect("drops and creates");
            step.ingest("clicks", click("c")).expect("ingests");
            assert_eq!(step.last_seq("clicked").expect("position"), 3, "the new log passes 2");
        }
        shared.commit().await.expect("commits");
        match rx.recv().await.expect("a message") {
            Err(status) => assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}"),
            Ok(message) => panic!("expected the dropped-segment error, got {message:?}"),
        }
    }
}
