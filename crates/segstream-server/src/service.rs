//! The `segstream.v1.Segstream` service: each call takes the engine for one step (or a
//! read) and translates; the semantics are the engine's.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::ipc::reader::StreamReader;
use segstream_engine::{ClockMode, IngestReport, IngestRows};
use segstream_proto::v1 as pb;
use segstream_proto::v1::segstream_server::Segstream;
use segstream_types::Timestamp;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{statement_result, status};
use crate::shared::Shared;
use crate::subscribe;

pub struct SegstreamService {
    shared: Arc<Shared>,
}

impl SegstreamService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Decodes a request's rows and ingests them; `offset` shifts rejected rows' indexes
    /// (IngestStream counts across messages).
    async fn ingest_one(
        &self,
        relation: &str,
        request: pb::IngestRequest,
        offset: u64,
    ) -> Result<pb::IngestResponse, Status> {
        if relation.is_empty() {
            return Err(Status::invalid_argument("name the stream or table to ingest into (`relation`)"));
        }
        let rows = match request.payload {
            Some(pb::ingest_request::Payload::Json(json)) => IngestRows::JsonText(json.rows),
            Some(pb::ingest_request::Payload::ArrowIpc(bytes)) => IngestRows::Arrow(arrow_batch(&bytes)?),
            None => return Err(Status::invalid_argument("give the rows as `json` or `arrow_ipc`")),
        };
        let key = Some(request.idempotency_key.as_str()).filter(|k| !k.is_empty());
        let report: IngestReport = {
            let mut step = self.shared.step().await;
            step.ingest_once(relation, rows, key).map_err(status)?
        };
        // Acknowledged only once durable (group commit: one sync for the callers waiting).
        self.shared.commit().await.map_err(status)?;
        let metrics = &self.shared.metrics;
        if report.duplicate {
            metrics.ingest_duplicates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            metrics.events_ingested.fetch_add(report.accepted as u64, std::sync::atomic::Ordering::Relaxed);
            metrics
                .rows_rejected
                .fetch_add(report.rejected.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let rejected = report
            .rejected
            .into_iter()
            .map(|r| pb::RejectedRow { index: r.index as u64 + offset, reason: r.reason })
            .collect();
        Ok(pb::IngestResponse { accepted: report.accepted as u64, rejected, duplicate: report.duplicate })
    }
}

/// An Arrow IPC stream as one record batch.
fn arrow_batch(bytes: &[u8]) -> Result<datafusion::arrow::array::RecordBatch, Status> {
    let bad = |e: &dyn std::fmt::Display| {
        Status::invalid_argument(format!("`arrow_ipc` is not an Arrow IPC stream: {e}"))
    };
    let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| bad(&e))?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
    concat_batches(&schema, &batches).map_err(|e| bad(&e))
}

type ChangeStream = ReceiverStream<Result<pb::SubscribeResponse, Status>>;

#[tonic::async_trait]
impl Segstream for SegstreamService {
    async fn execute(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResponse>, Status> {
        let sql = request.into_inner().sql;
        let statements = segstream_sql::parse_statements(&sql).map_err(status)?;
        if statements.is_empty() {
            return Err(Status::invalid_argument("no statement to run"));
        }
        let mut results = Vec::with_capacity(statements.len());
        let mut failure = None;
        let mut step = self.shared.step().await;
        for statement in &statements {
            match step.execute_statement(statement).await {
                Ok(output) => results.push(statement_result(output)?),
                Err(e) => {
                    failure = Some(status(e.or_position(statement.position)));
                    break;
                }
            }
        }
        let wrote = step.wrote();
        drop(step);
        // The statements before a failure were applied: durable before anyone is told.
        // Statements that only read need no sync of their own: one that fails (a full
        // disk) does not fail them, so queries go on while writes cannot.
        if let Err(e) = self.shared.commit().await {
            if wrote {
                return Err(status(e));
            }
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        let notices = self.shared.notices.lock().map(|mut n| std::mem::take(&mut *n)).unwrap_or_default();
        Ok(Response::new(pb::ExecuteResponse { results, notices }))
    }

    async fn ingest(
        &self,
        request: Request<pb::IngestRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let request = request.into_inner();
        let relation = request.relation.clone();
        Ok(Response::new(self.ingest_one(&relation, request, 0).await?))
    }

    async fn ingest_stream(
        &self,
        request: Request<Streaming<pb::IngestRequest>>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let mut stream = request.into_inner();
        let mut relation = String::new();
        let mut total = pb::IngestResponse::default();
        let mut offset = 0u64;
        while let Some(message) = stream.message().await? {
            if !message.relation.is_empty() {
                relation = message.relation.clone();
            }
            let rows = match &message.payload {
                Some(pb::ingest_request::Payload::Json(j)) => j.rows.len() as u64,
                _ => 0,
            };
            let response = self.ingest_one(&relation, message, offset).await?;
            let counted = if rows > 0 { rows } else { response.accepted + response.rejected.len() as u64 };
            offset += counted;
            total.accepted += response.accepted;
            total.rejected.extend(response.rejected);
            total.duplicate |= response.duplicate;
        }
        Ok(Response::new(total))
    }

    type SubscribeStream = ChangeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        let every = match request.progress_interval_ms {
            0 => Duration::from_secs(1),
            ms => Duration::from_millis(u64::from(ms).max(10)),
        };
        let (tx, rx) = mpsc::channel(64);
        let shared = Arc::clone(&self.shared);
        let id = shared.subscriber_id();
        // A bad request (unknown segment, resume beyond the log) fails the call itself.
        let positions = subscribe::positions(&shared, &*shared.read().await, &request)?;
        let snapshot = matches!(request.start, Some(pb::subscribe_request::Start::Snapshot(_)));
        tokio::spawn(async move {
            let positions = if snapshot {
                match subscribe::snapshot(&shared, &request, &tx).await {
                    Ok(positions) => positions,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            } else {
                positions
            };
            subscribe::follow(shared, id, positions, every, tx).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn is_member(
        &self,
        request: Request<pb::IsMemberRequest>,
    ) -> Result<Response<pb::IsMemberResponse>, Status> {
        let request = request.into_inner();
        let engine = self.shared.read().await;
        let member = engine.member(&request.segment, &request.key).map_err(status)?;
        Ok(Response::new(match member {
            Some(m) => pb::IsMemberResponse { member: true, attributes_json: m.attributes },
            None => pb::IsMemberResponse { member: false, attributes_json: String::new() },
        }))
    }

    async fn get_memberships(
        &self,
        request: Request<pb::GetMembershipsRequest>,
    ) -> Result<Response<pb::GetMembershipsResponse>, Status> {
        let key = request.into_inner().key;
        let segments = self.shared.read().await.memberships_of(&key).map_err(status)?;
        Ok(Response::new(pb::GetMembershipsResponse { segments }))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let request = request.into_inner();
        let size = match request.page_size {
            0 => 1000,
            n => n.min(10_000) as usize,
        };
        let token = if request.page_token.is_empty() {
            None
        } else {
            Some(
                decode_token(&request.page_token)
                    .ok_or_else(|| Status::invalid_argument("`page_token` is not one this server gave"))?,
            )
        };
        let (members, next) = self
            .shared
            .read()
            .await
            .members_page(&request.segment, token.as_deref(), size)
            .map_err(status)?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members
                .into_iter()
                .map(|m| pb::SnapshotMember {
                    segment: request.segment.clone(),
                    key: m.key,
                    attributes_json: m.attributes,
                })
                .collect(),
            next_page_token: next.map(|t| encode_token(&t)).unwrap_or_default(),
        }))
    }

    async fn count_members(
        &self,
        request: Request<pb::CountMembersRequest>,
    ) -> Result<Response<pb::CountMembersResponse>, Status> {
        let segment = request.into_inner().segment;
        let count = self.shared.read().await.member_count(&segment).map_err(status)?;
        Ok(Response::new(pb::CountMembersResponse { count }))
    }

    async fn advance_clock(
        &self,
        request: Request<pb::AdvanceClockRequest>,
    ) -> Result<Response<pb::AdvanceClockResponse>, Status> {
        use pb::advance_clock_request::Target;
        let target = request.into_inner().target;
        let mut step = self.shared.step().await;
        if step.clock_mode() != ClockMode::Manual {
            return Err(Status::failed_precondition(
                "the clock is the wall clock: only a manual clock (--clock manual) is advanced",
            ));
        }
        let now = step.now().nanos();
        let to = match target {
            Some(Target::ToUnixNanos(t)) => t,
            Some(Target::ByNanos(d)) if d >= 0 => now.saturating_add(d),
            Some(Target::ByNanos(_)) => {
                return Err(Status::invalid_argument(
                    "`by_nanos` must not be negative: the clock never moves back",
                ))
            }
            None => return Err(Status::invalid_argument("give `to_unix_nanos` or `by_nanos`")),
        };
        step.advance_clock(Timestamp(to)).map_err(status)?;
        let clock = step.now().nanos();
        drop(step);
        self.shared.commit().await.map_err(status)?;
        Ok(Response::new(pb::AdvanceClockResponse { clock_unix_nanos: clock }))
    }
}

fn encode_token(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let bytes = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(decode_token(&encode_token(&bytes)), Some(bytes));
        assert_eq!(decode_token("abc"), None);
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("é1"), None);
    }
}
