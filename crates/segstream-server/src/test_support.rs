//! What the server's unit tests share: a fresh data directory with one stream and one
//! segment over it, behind [`Shared`].

use std::sync::Arc;

use segstream_engine::{ClockMode, Engine, EngineOptions, IngestRows};

use crate::shared::Shared;

/// A manual-clock, group-commit server state over `dir` with a `clicks` stream and the
/// `clicked` segment (every user who clicked), created and made durable.
pub async fn clicked(dir: &std::path::Path) -> Arc<Shared> {
    let options = EngineOptions::new(dir).with_clock(ClockMode::Manual).with_group_commit(true);
    let shared = Shared::new(Engine::open(options).expect("opens"));
    {
        let mut step = shared.step().await;
        step.execute(
            "CREATE STREAM clicks (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL) \
             WITH (event_time = 'ts', key = 'user_id');
             CREATE SEGMENT clicked AS SELECT DISTINCT user_id FROM clicks;",
        )
        .await
        .expect("creates");
    }
    shared.commit().await.expect("commits");
    shared
}

/// One click by `user`: an `entered` change in `clicked` the first time.
pub fn click(user: &str) -> IngestRows {
    IngestRows::Json(vec![serde_json::json!({"user_id": user, "ts": "1970-01-01 00:00:00"})])
}
