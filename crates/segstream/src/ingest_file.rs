//! `segstream ingest`: a file of rows (NDJSON, CSV or Parquet) into a stream or table,
//! in chunks, into the data directory or a running server, with a progress line and a
//! summary of the rows that were rejected and why. Returns how many were rejected.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::writer::StreamWriter;
use segstream_engine::{Engine, IngestRows};
use segstream_proto::v1 as pb;

use crate::remote::{describe, Client};

/// Rows per call: large enough to amortise a durable commit, small enough for a request.
const CHUNK_ROWS: usize = 10_000;

/// Rejected rows listed in the summary (the count is always exact).
const SHOWN_REJECTIONS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    Ndjson,
    Csv,
    Parquet,
}

impl FileFormat {
    /// From the file name: `.ndjson`/`.jsonl`/`.json`, `.csv`, `.parquet`.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "ndjson" | "jsonl" | "json" => Some(Self::Ndjson),
            "csv" => Some(Self::Csv),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// Where rows go.
pub enum Destination {
    Embedded(Box<Engine>),
    Remote(Client),
}

/// A chunk of rows read from the file, with where each row came from (for the summary).
enum Chunk {
    Json { rows: Vec<String>, lines: Vec<usize> },
    Arrow { batch: RecordBatch, first_row: usize },
}

/// One rejected row, as the summary names it.
struct Rejection {
    place: String,
    reason: String,
}

pub async fn run(
    destination: &mut Destination,
    relation: &str,
    path: &Path,
    format: Option<FileFormat>,
) -> anyhow::Result<u64> {
    let format = match format.or_else(|| FileFormat::from_path(path)) {
        Some(f) => f,
        None => bail!(
            "cannot tell the format of {} from its name; give --format ndjson, csv or parquet",
            path.display()
        ),
    };
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let mut progress = Progress::new(relation, size);
    // Retries of a chunk reuse its key, so a timeout cannot apply it twice.
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let mut accepted = 0u64;
    let mut rejections: Vec<Rejection> = Vec::new();
    let mut rejected = 0u64;
    let mut chunk_index = 0usize;
    let mut reader = ChunkReader::open(path, format)?;
    while let Some((chunk, position)) = reader.next_chunk()? {
        chunk_index += 1;
        let key = format!("segstream-ingest-{run_id}-{chunk_index}");
        let (ok, bad) = apply(destination, relation, &chunk, &key).await?;
        accepted += ok;
        rejected += bad.len() as u64;
        for (index, reason) in bad {
            if rejections.len() < SHOWN_REJECTIONS {
                rejections.push(Rejection { place: place_of(&chunk, index), reason });
            }
        }
        progress.update(position, accepted + rejected);
    }
    progress.finish();
    println!("ingested {accepted} row{} into {relation}", if accepted == 1 { "" } else { "s" });
    if rejected > 0 {
        println!("rejected {rejected} row{}:", if rejected == 1 { "" } else { "s" });
        for r in &rejections {
            println!("  {}: {}", r.place, r.reason);
        }
        if rejected as usize > rejections.len() {
            println!("  ... and {} more", rejected as usize - rejections.len());
        }
    }
    Ok(rejected)
}

/// Sends one chunk; returns rows accepted and the rejected rows' indexes in the chunk.
async fn apply(
    destination: &mut Destination,
    relation: &str,
    chunk: &Chunk,
    key: &str,
) -> anyhow::Result<(u64, Vec<(usize, String)>)> {
    match destination {
        Destination::Embedded(engine) => {
            let rows = match chunk {
                Chunk::Json { rows, .. } => IngestRows::JsonText(rows.clone()),
                Chunk::Arrow { batch, .. } => IngestRows::Arrow(batch.clone()),
            };
            let report = engine.ingest(relation, rows)?;
            let bad = report.rejected.into_iter().map(|r| (r.index, r.reason)).collect();
            Ok((report.accepted as u64, bad))
        }
        Destination::Remote(client) => {
            let payload = match chunk {
                Chunk::Json { rows, .. } => {
                    pb::ingest_request::Payload::Json(pb::JsonRows { rows: rows.clone() })
                }
                Chunk::Arrow { batch, .. } => pb::ingest_request::Payload::ArrowIpc(ipc_bytes(batch)?),
            };
            let request = pb::IngestRequest {
                relation: relation.to_string(),
                payload: Some(payload),
                idempotency_key: key.to_string(),
            };
            let mut attempt = 0;
            let response = loop {
                attempt += 1;
                match client.ingest(request.clone()).await {
                    Ok(response) => break response.into_inner(),
                    // Transient: the same key makes the retry safe.
                    Err(status)
                        if attempt < 4
                            && matches!(
                                status.code(),
                                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                            ) =>
                    {
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    }
                    Err(status) => bail!("{}", describe(&status)),
                }
            };
            Ok((
                response.accepted,
                response.rejected.into_iter().map(|r| (r.index as usize, r.reason)).collect(),
            ))
        }
    }
}

fn place_of(chunk: &Chunk, index: usize) -> String {
    match chunk {
        Chunk::Json { lines, .. } => format!("line {}", lines.get(index).copied().unwrap_or(0)),
        // The header is line 1 of a CSV file; Parquet rows are counted from 1.
        Chunk::Arrow { first_row, .. } => format!("row {}", first_row + index + 1),
    }
}

fn ipc_bytes(batch: &RecordBatch) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &batch.schema()).context("encoding Arrow IPC")?;
    writer.write(batch).context("encoding Arrow IPC")?;
    writer.finish().context("encoding Arrow IPC")?;
    drop(writer);
    Ok(out)
}

/// Reads a file in chunks of [`CHUNK_ROWS`], reporting how far into the file it is.
enum ChunkReader {
    Json {
        lines: std::io::Lines<BufReader<CountingFile>>,
        line: usize,
        position: Arc<std::sync::atomic::AtomicU64>,
    },
    Csv {
        reader: Box<datafusion::arrow::csv::Reader<BufReader<CountingFile>>>,
        rows: usize,
        position: Arc<std::sync::atomic::AtomicU64>,
    },
    Parquet {
        reader: Box<parquet::arrow::arrow_reader::ParquetRecordBatchReader>,
        rows: usize,
        total: u64,
        size: u64,
    },
}

impl ChunkReader {
    fn open(path: &Path, format: FileFormat) -> anyhow::Result<Self> {
        let open = || File::open(path).with_context(|| format!("opening {}", path.display()));
        Ok(match format {
            FileFormat::Ndjson => {
                let (file, position) = CountingFile::new(open()?);
                Self::Json { lines: BufReader::new(file).lines(), line: 0, position }
            }
            FileFormat::Csv => {
                // Every column is read as text and converted by the engine against the
                // declared schema, so a bad value rejects its row, not the file.
                let (inferred, _) = Format::default()
                    .with_header(true)
                    .infer_schema(BufReader::new(open()?), Some(100))
                    .with_context(|| format!("reading the header of {}", path.display()))?;
                let text: Vec<Field> =
                    inferred.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect();
                let (file, position) = CountingFile::new(open()?);
                let reader = datafusion::arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(text)))
                    .with_header(true)
                    .with_batch_size(CHUNK_ROWS)
                    .build(BufReader::new(file))
                    .with_context(|| format!("reading {}", path.display()))?;
                Self::Csv { reader: Box::new(reader), rows: 0, position }
            }
            FileFormat::Parquet => {
                let file = open()?;
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .with_context(|| format!("{} is not a Parquet file", path.display()))?;
                let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
                let reader = builder
                    .with_batch_size(CHUNK_ROWS)
                    .build()
                    .with_context(|| format!("reading {}", path.display()))?;
                Self::Parquet { reader: Box::new(reader), rows: 0, total, size }
            }
        })
    }

    /// The next chunk and the byte position reached (for progress), or `None` at the end.
    fn next_chunk(&mut self) -> anyhow::Result<Option<(Chunk, u64)>> {
        use std::sync::atomic::Ordering;
        match self {
            Self::Json { lines, line, position } => {
                let mut rows = Vec::new();
                let mut numbers = Vec::new();
                while rows.len() < CHUNK_ROWS {
                    let Some(text) = lines.next() else { break };
                    *line += 1;
                    let text = text.with_context(|| format!("reading line {line}"))?;
                    if text.trim().is_empty() {
                        continue;
                    }
                    rows.push(text);
                    numbers.push(*line);
                }
                if rows.is_empty() {
                    return Ok(None);
                }
                Ok(Some((Chunk::Json { rows, lines: numbers }, position.load(Ordering::Relaxed))))
            }
            Self::Csv { reader, rows, position } => match reader.next() {
                None => Ok(None),
                Some(batch) => {
                    let batch = batch.with_context(|| format!("reading the CSV after row {rows}"))?;
                    let first_row = *rows;
                    *rows += batch.num_rows();
                    Ok(Some((Chunk::Arrow { batch, first_row }, position.load(Ordering::Relaxed))))
                }
            },
            Self::Parquet { reader, rows, total, size } => match reader.next() {
                None => Ok(None),
                Some(batch) => {
                    let batch =
                        batch.with_context(|| format!("reading the Parquet file after row {rows}"))?;
                    let first_row = *rows;
                    *rows += batch.num_rows();
                    let position = (*size * (*rows as u64)).checked_div(*total).unwrap_or(*size);
                    Ok(Some((Chunk::Arrow { batch, first_row }, position)))
                }
            },
        }
    }
}

/// A file that counts the bytes read from it, for the progress line.
struct CountingFile {
    file: File,
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl CountingFile {
    fn new(file: File) -> (Self, Arc<std::sync::atomic::AtomicU64>) {
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        (Self { file, read: Arc::clone(&read) }, read)
    }
}

impl std::io::Read for CountingFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A progress bar on standard error when it is a terminal; nothing otherwise.
struct Progress {
    relation: String,
    size: u64,
    shown: bool,
    enabled: bool,
    last: Instant,
    started: Instant,
}

impl Progress {
    fn new(relation: &str, size: u64) -> Self {
        let now = Instant::now();
        Self {
            relation: relation.to_string(),
            size,
            shown: false,
            enabled: std::io::stderr().is_terminal(),
            last: now,
            started: now,
        }
    }

    fn update(&mut self, position: u64, rows: u64) {
        if !self.enabled || (self.shown && self.last.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        let fraction = if self.size == 0 { 1.0 } else { (position as f64 / self.size as f64).min(1.0) };
        let width = 30;
        let filled = (fraction * width as f64) as usize;
        let rate = rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r{} [{}{}] {:>3.0}%  {rows} rows  {rate:.0} rows/s ",
            self.relation,
            "#".repeat(filled),
            "-".repeat(width - filled),
            fraction * 100.0
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&mut self) {
        if self.shown {
            eprint!("\r{}\r", " ".repeat(80));
            let _ = std::io::stderr().flush();
        }
    }
}
