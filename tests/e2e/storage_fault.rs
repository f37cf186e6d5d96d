//! A full disk under the real server: the data directory on a 16 MiB tmpfs, filled up
//! while events are ingested. The failing calls get a clear storage error (UNAVAILABLE,
//! "No space left on device"), no acknowledged event is lost, the server keeps serving
//! reads, and once space returns, ingest works again without a restart. A SIGKILL and
//! restart then shows every acknowledged event applied exactly once.
//!
//! Mounting a tmpfs needs root: the test mounts directly as root, else through `sudo -n` (as
//! `scripts/setup.sh` installs packages); without either it fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use segstream_proto::v1 as pb;
use segstream_proto::v1::segstream_client::SegstreamClient;
use tonic::transport::Channel;

use crate::grpc::{execute, json_rows, Server};

/// A tmpfs of `size`, unmounted (and its mount point removed) when dropped.
struct SmallDisk {
    mount_point: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let parent = tempfile::tempdir().expect("tempdir");
        let mount_point = parent.path().join("disk");
        std::fs::create_dir(&mount_point).expect("mount point");
        let options = format!("size={size}");
        let args = ["-t", "tmpfs", "-o", options.as_str(), "segstream-test"];
        let output = privileged("mount").args(args).arg(&mount_point).output().expect("runs mount");
        assert!(
            output.status.success(),
            "this test mounts a {size} tmpfs and needs root (or sudo without a password) to: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk { mount_point, _parent: parent }
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = privileged("umount").arg("-l").arg(&self.mount_point).status();
    }
}

/// `program` as root: directly when the test runs as root, else through `sudo -n`, as
/// `scripts/setup.sh` installs packages.
fn privileged(program: &str) -> Command {
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if is_root {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", program]);
        sudo
    }
}

/// Fills the disk but for about `leave` bytes, with a file that can be deleted to give
/// the space back.
fn fill(disk: &Path, leave: u64) -> PathBuf {
    let filler = disk.join("filler");
    let free = {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(disk).output().expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .expect("free")
    };
    let size = free.saturating_sub(leave);
    // Written in pieces until the disk refuses: a tmpfs rounds to pages.
    let mut file = std::fs::File::create(&filler).expect("creates the filler");
    let mut left = size;
    while left > 0 {
        let piece = left.min(1 << 20);
        if std::io::Write::write_all(&mut file, &vec![0u8; piece as usize]).is_err() {
            break;
        }
        left -= piece;
    }
    filler
}

fn event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event_id": format!("e{i:06}-{}", "x".repeat(200)),
        "user_id": format!("u{}", i % 50),
        "event_type": "purchase",
        "product_id": "sku",
        "amount": 1.0,
        "ts": "2026-04-01 10:00:00"
    })
}

async fn ingest_one(
    client: &mut SegstreamClient<Channel>,
    i: usize,
) -> Result<pb::IngestResponse, tonic::Status> {
    let rows: Vec<_> = (i * 20..i * 20 + 20).map(event).collect();
    let request = pb::IngestRequest {
        relation: "events".into(),
        payload: json_rows(&rows),
        idempotency_key: format!("batch-{i}"),
    };
    client.ingest(request).await.map(|r| r.into_inner())
}

async fn count(client: &mut SegstreamClient<Channel>, sql: &str) -> u64 {
    let response = execute(client, sql).await;
    let Some(pb::statement_result::Result::Rows(set)) = &response.results[0].result else { panic!("rows") };
    segstream_proto::display::value_text(&set.rows[0].values[0]).parse().expect("a count")
}

#[tokio::test]
async fn a_full_disk_fails_ingest_clearly_and_loses_nothing_acknowledged() {
    let disk = SmallDisk::mount("16m");
    let data = disk.path().join("data");
    let server = Server::start(&data, &[]);
    let mut client = server.client().await;
    let schema =
        std::fs::read_to_string(crate::support::repo_root().join("sql-examples/workload/schema.sql"))
            .expect("schema");
    execute(&mut client, &schema).await;
    execute(
        &mut client,
        "CREATE SEGMENT buyers AS SELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id",
    )
    .await;
    execute(&mut client, "ADVANCE TIME TO TIMESTAMP '2026-04-01 10:00:00'").await;

    let filler = fill(disk.path(), 3 << 20);
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for i in 0..2_000 {
        match ingest_one(&mut client, i).await {
            Ok(response) => {
                assert_eq!(response.accepted, 20);
                acknowledged.push(i);
            }
            Err(status) => {
                refusal = Some((i, status));
                break;
            }
        }
    }
    let (failed, status) = refusal.expect("the disk filled up");
    eprintln!("batch {failed} refused after {} acknowledged: {status:?}", acknowledged.len());
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("storage error"), "{}", status.message());
    assert!(status.message().to_lowercase().contains("space"), "{}", status.message());
    // Reads go on while writes cannot.
    let before = count(&mut client, "SELECT COUNT(*) FROM events").await;
    assert!(before >= acknowledged.len() as u64 * 20, "{before} events for {} batches", acknowledged.len());
    let members = count(&mut client, "SELECT COUNT(*) FROM buyers").await;
    assert_eq!(members, 50, "every user is a member");

    // Space returns: ingest works again, without a restart.
    std::fs::remove_file(&filler).expect("frees the space");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = failed;
    loop {
        match ingest_one(&mut client, next).await {
            Ok(_) => break,
            Err(status) if Instant::now() < deadline => {
                eprintln!("still refused: {}", status.message());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(status) => panic!("ingest did not recover once space returned: {status:?}"),
        }
    }
    acknowledged.push(next);
    for _ in 0..5 {
        next += 1;
        ingest_one(&mut client, next).await.expect("ingests after recovery");
        acknowledged.push(next);
    }

    // A crash now: every acknowledged batch is there, exactly once (a retried batch is
    // applied once by its idempotency key).
    server.kill();
    let server = Server::start(&data, &[]);
    let mut client = server.client().await;
    let events = count(&mut client, "SELECT COUNT(*) FROM events").await;
    let distinct = count(&mut client, "SELECT COUNT(DISTINCT event_id) FROM events").await;
    assert_eq!(events, distinct, "no event twice");
    for i in &acknowledged {
        let id = format!("e{:06}-{}", i * 20, "x".repeat(200));
        let n = count(&mut client, &format!("SELECT COUNT(*) FROM events WHERE event_id = '{id}'")).await;
        assert_eq!(n, 1, "acknowledged batch {i} is lost");
    }
    let total: u64 = count(&mut client, "SELECT SUM(n) FROM buyers").await;
    assert_eq!(total, events, "the segment counted every stored event once");
}
