//! The journal: every input that changes anything, one record per step, appended in
//! order and made durable before the step is acknowledged.
//!
//! ```text
//!  journal/00000000000000000001.journal   journal/00000000000000000412.journal
//!  | header | rec 1 | rec 2 | ... | 411 |   | header | rec 412 | rec 413 | ...   <- appends
//!  \___ covered by the checkpoint: deleted    \___ replayed after the checkpoint's marker
//! ```
//!
//! A record's position is its number in the whole journal, from 1. A file holds the
//! records from the position in its name on; a new file starts at each checkpoint
//! ([`Journal::roll`]), so the files a checkpoint covers can be deleted whole
//! ([`Journal::delete_covered`]).
//!
//! Framing: a file starts with `SEGJRNL1` and its first position (u64 LE); each record
//! is `length (u32 LE) | CRC-32 (u32 LE) | payload`, the CRC taken over the record's
//! position and its payload, so a record read at the wrong place never checks out.
//!
//! Group commit: [`Journal::append`] only queues the record in memory (the caller holds
//! the engine, so appends are in step order and cheap); [`Journal::sync_to`] writes what
//! is queued and syncs it, without holding the appenders. One caller syncs at a time,
//! and the callers that queued behind it are usually covered by its sync, so concurrent
//! calls share one `fdatasync`. What a crash (or power loss) can take is only what no
//! sync covered: records no call was acknowledged for.
//!
//! After a crash the last file may end in a torn record (a write cut short). Opening
//! finds it by its length or checksum and cuts it off. A bad record with good records
//! after it is not a torn write but damage to acknowledged data: opening refuses, naming
//! the file and offset, rather than silently dropping what was acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use segstream_types::{Error, Result};

const MAGIC: &[u8; 8] = b"SEGJRNL1";
const HEADER_BYTES: usize = 16;
const FRAME_BYTES: usize = 8;
/// No record is this large (a step's input is bounded by the gRPC message size); a
/// length beyond it is a torn or damaged frame, not an allocation to attempt.
const MAX_RECORD_BYTES: usize = 1 << 30;
const EXTENSION: &str = "journal";

/// An open journal. Clones are handles on the same journal: the engine appends through
/// one while a group-commit caller syncs through another.
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    appender: Mutex<Appender>,
    /// One writer of the file at a time (sync and roll), so bytes reach it in order.
    sync_lock: Mutex<()>,
    /// The last position a sync made durable.
    durable: AtomicU64,
    /// Syncs that reached the disk (for tests and metrics: group commit shares them).
    syncs: AtomicU64,
    /// Bytes written to the files (records and their frames).
    bytes: AtomicU64,
}

/// The largest write buffer kept for reuse (a bulk load's larger one is freed).
const MAX_SPARE_BYTES: usize = 4 << 20;

struct Appender {
    /// Encoded records not yet written to the file.
    pending: Vec<u8>,
    /// The buffer of the last write, emptied, to queue the next records in: appends
    /// reuse its capacity instead of growing a new buffer for every sync.
    spare: Vec<u8>,
    /// The position of the last record appended (0 before the first).
    last: u64,
    /// The file records are written to, and the first position it holds.
    file: Arc<File>,
    file_first: u64,
    /// Set after a write or sync failed: what is in the file is no longer known, so
    /// nothing more is accepted until the journal is reopened (as after a crash).
    failed: Option<String>,
}

/// What [`Journal::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalOpened {
    /// The position of the last good record (0 when the journal is empty).
    pub last: u64,
    /// Bytes of torn tail cut off the last file (a write a crash interrupted).
    pub cut_bytes: u64,
    pub files: usize,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::storage(format!("journal: cannot {what} {}: {e}", path.display()))
}

fn file_name(first: u64) -> String {
    format!("{first:020}.{EXTENSION}")
}

fn crc(position: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&position.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn encode_record(position: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(position, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("sync the directory", dir, e))
}

/// The journal files in `dir` with the first position each holds, in order.
fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
        let path = entry.map_err(|e| io("list", dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
            continue;
        }
        let first = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok());
        match first {
            Some(first) => files.push((first, path)),
            None => {
                return Err(Error::storage(format!(
                    "journal: {} is not a journal file name (expected <first position>.{EXTENSION})",
                    path.display()
                )))
            }
        }
    }
    files.sort();
    Ok(files)
}

/// One file's records, parsed: each record's payload range, and where parsing stopped.
struct Parsed {
    records: Vec<std::ops::Range<usize>>,
    /// The byte offset after the last good record.
    good_end: usize,
    /// Why parsing stopped before the end of the file, if it did.
    bad: Option<String>,
}

fn parse(bytes: &[u8], first: u64) -> Parsed {
    let mut records = Vec::new();
    let mut at = HEADER_BYTES;
    let mut bad = None;
    while at < bytes.len() {
        let position = first + records.len() as u64;
        if bytes.len() - at < FRAME_BYTES {
            bad = Some("a record's frame is cut short".to_string());
            break;
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let start = at + FRAME_BYTES;
        if len > MAX_RECORD_BYTES || bytes.len() - start < len {
            bad = Some(format!("record {position} is cut short"));
            break;
        }
        if crc(position, &bytes[start..start + len]) != sum {
            bad = Some(format!("record {position} fails its checksum"));
            break;
        }
        records.push(start..start + len);
        at = start + len;
    }
    Parsed { records, good_end: at.min(bytes.len()), bad }
}

/// Whether a bad stretch at the end of the last file can only be a torn write: nothing
/// after it parses as a record. A crash interrupts at most the writes after the last
/// sync; those reach the file in order, so a torn record is the last thing in it
/// (possibly followed by zeros some file systems leave when they extend a file).
fn is_torn_tail(bytes: &[u8], good_end: usize, next_position: u64) -> bool {
    if bytes[good_end..].iter().all(|b| *b == 0) {
        return true;
    }
    // Damage, not a tear, if a good record follows the bad one anywhere after it.
    let mut at = good_end + 1;
    while at + FRAME_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let start = at + FRAME_BYTES;
        // The first good record after the bad one would be the next position.
        if len > 0 && len <= bytes.len() - start && crc(next_position + 1, &bytes[start..start + len]) == sum
        {
            return false;
        }
        at += 1;
    }
    true
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| io("read", path, e))?;
    Ok(bytes)
}

fn header_first(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= HEADER_BYTES && &bytes[..8] == MAGIC)
        .then(|| u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")))
}

/// Creates a file holding the records from `first` on, durably (its name in the
/// directory included).
fn create_file(dir: &Path, first: u64) -> Result<File> {
    let path = dir.join(file_name(first));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| io("create", &path, e))?;
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&first.to_le_bytes());
    file.write_all(&header).and_then(|_| file.sync_all()).map_err(|e| io("write", &path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Checks every file in `dir` (created if missing), cuts a torn tail off the last one,
/// and returns the appender that goes on after the last good record (a new file after
/// `after` when there is none).
fn scan(dir: &Path, after: u64) -> Result<(Appender, JournalOpened)> {
    std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let mut files = list_files(dir)?;
    let mut opened = JournalOpened { last: after, ..JournalOpened::default() };
    // A last file too short to hold its header was being created when the process
    // stopped: it holds nothing.
    if let Some((_, path)) = files.last() {
        if header_first(&read_file(path)?).is_none() {
            let len = std::fs::metadata(path).map_err(|e| io("read", path, e))?.len();
            if len < HEADER_BYTES as u64 {
                std::fs::remove_file(path).map_err(|e| io("remove", path, e))?;
                files.pop();
            }
        }
    }
    let mut expected: Option<u64> = None;
    for (i, (first, path)) in files.iter().enumerate() {
        let bytes = read_file(path)?;
        if header_first(&bytes) != Some(*first) {
            return Err(Error::storage(format!(
                "journal: {} does not start with a journal header for position {first}",
                path.display()
            )));
        }
        if let Some(expected) = expected {
            if *first != expected {
                return Err(Error::storage(format!(
                    "journal: {} starts at record {first}, but the file before it ends at record {}: \
                     records are missing",
                    path.display(),
                    expected - 1
                )));
            }
        }
        let parsed = parse(&bytes, *first);
        let next = first + parsed.records.len() as u64;
        if let Some(why) = parsed.bad {
            let last_file = i + 1 == files.len();
            if !last_file || !is_torn_tail(&bytes, parsed.good_end, next) {
                return Err(Error::storage(format!(
                    "journal: {} is damaged at byte {}: {why}, and acknowledged records follow it; \
                     restore the data directory from a backup",
                    path.display(),
                    parsed.good_end
                )));
            }
            let file = OpenOptions::new().write(true).open(path).map_err(|e| io("open", path, e))?;
            file.set_len(parsed.good_end as u64)
                .and_then(|_| file.sync_all())
                .map_err(|e| io("cut the torn tail of", path, e))?;
            opened.cut_bytes = (bytes.len() - parsed.good_end) as u64;
        }
        expected = Some(next);
        opened.last = next - 1;
    }
    opened.files = files.len();
    let (file, file_first) = match files.last() {
        Some((first, path)) => {
            let file = OpenOptions::new().append(true).open(path).map_err(|e| io("open", path, e))?;
            (file, *first)
        }
        None => (create_file(dir, after + 1)?, after + 1),
    };
    if files.is_empty() {
        opened.files = 1;
    }
    let appender = Appender {
        pending: Vec::new(),
        spare: Vec::new(),
        last: opened.last,
        file: Arc::new(file),
        file_first,
        failed: None,
    };
    Ok((appender, opened))
}

impl Journal {
    /// Opens the journal in `dir` (created if missing), checks every record and cuts a
    /// torn tail off the last file. Appends go on after the last good record.
    pub fn open(dir: &Path) -> Result<(Self, JournalOpened)> {
        Self::open_after(dir, 0)
    }

    /// [`Journal::open`]; a journal with no file yet starts after position `after` (the
    /// position a checkpoint of its state is at), so positions never repeat.
    pub fn open_after(dir: &Path, after: u64) -> Result<(Self, JournalOpened)> {
        let (appender, opened) = scan(dir, after)?;
        let journal = Self {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                appender: Mutex::new(appender),
                sync_lock: Mutex::new(()),
                durable: AtomicU64::new(opened.last),
                syncs: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
            }),
        };
        Ok((journal, opened))
    }

    /// Why appends are refused, if a write or sync failed: the journal must then be
    /// [reopened](Journal::reopen), as after a crash, before it takes records again.
    pub fn failed(&self) -> Option<String> {
        self.appender().ok().and_then(|a| a.failed.clone())
    }

    /// Reads the files again as [`Journal::open`] does (cutting what a failed write left
    /// half written) and takes appends again after the last good record; every handle
    /// sees it. Records queued and never written are dropped: their callers were told
    /// of the failure. The caller rebuilds its state from the records, as at open.
    pub fn reopen(&self) -> Result<JournalOpened> {
        let _writer = self.sync_lock()?;
        let mut appender = self.appender()?;
        let after = appender.file_first.saturating_sub(1);
        let (fresh, opened) = scan(&self.shared.dir, after)?;
        *appender = fresh;
        self.shared.durable.store(opened.last, Ordering::Release);
        Ok(opened)
    }

    fn appender(&self) -> Result<MutexGuard<'_, Appender>> {
        self.shared.appender.lock().map_err(|_| Error::internal("the journal's lock is poisoned"))
    }

    fn sync_lock(&self) -> Result<MutexGuard<'_, ()>> {
        self.shared.sync_lock.lock().map_err(|_| Error::internal("the journal's lock is poisoned"))
    }

    /// Queues a record and returns its position. Nothing is durable until a
    /// [`Journal::sync_to`] covers the position.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(Error::invalid_input(format!(
                "a journal record of {} bytes is larger than the limit of {MAX_RECORD_BYTES}",
                payload.len()
            )));
        }
        let mut appender = self.appender()?;
        if let Some(why) = &appender.failed {
            return Err(Error::storage(format!("journal: writes are refused after a failed write: {why}")));
        }
        let position = appender.last + 1;
        encode_record(position, payload, &mut appender.pending);
        appender.last = position;
        Ok(position)
    }

    /// The position of the last record appended.
    pub fn last(&self) -> Result<u64> {
        Ok(self.appender()?.last)
    }

    /// The last position a sync made durable.
    pub fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// How many syncs reached the disk since the journal opened.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Bytes written to the journal's files since it opened.
    pub fn bytes_written(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Makes every record up to `position` durable. Returns at once if a sync already
    /// covered it; otherwise writes everything queued so far and syncs it, so callers
    /// waiting behind this one usually find their record covered.
    pub fn sync_to(&self, position: u64) -> Result<()> {
        if self.durable() >= position {
            return Ok(());
        }
        let _writer = self.sync_lock()?;
        if self.durable() >= position {
            return Ok(());
        }
        self.write_pending()
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<()> {
        let last = self.last()?;
        self.sync_to(last)
    }

    /// Writes and syncs what is queued. The caller holds the sync lock.
    fn write_pending(&self) -> Result<()> {
        let (bytes, last, file, first) = {
            let mut appender = self.appender()?;
            if let Some(why) = &appender.failed {
                return Err(Error::storage(format!(
                    "journal: writes are refused after a failed write: {why}"
                )));
            }
            let spare = std::mem::take(&mut appender.spare);
            (
                std::mem::replace(&mut appender.pending, spare),
                appender.last,
                Arc::clone(&appender.file),
                appender.file_first,
            )
        };
        if !bytes.is_empty() {
            let path = self.shared.dir.join(file_name(first));
            let written = (&*file).write_all(&bytes).and_then(|_| file.sync_data());
            if let Err(e) = written {
                let error = io("write", &path, e);
                if let Ok(mut appender) = self.appender() {
                    appender.failed = Some(error.to_string());
                }
                return Err(error);
            }
            self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            self.shared.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        if bytes.capacity() <= MAX_SPARE_BYTES {
            if let Ok(mut appender) = self.appender() {
                let mut bytes = bytes;
                bytes.clear();
                appender.spare = bytes;
            }
        }
        self.shared.durable.fetch_max(last, Ordering::AcqRel);
        Ok(())
    }

    /// Makes everything appended durable and starts a new file for the records after
    /// it: a checkpoint does this, so that the files it covers hold nothing after it.
    pub fn roll(&self) -> Result<()> {
        let _writer = self.sync_lock()?;
        self.write_pending()?;
        let mut appender = self.appender()?;
        if appender.last + 1 == appender.file_first {
            return Ok(()); // the current file is still empty
        }
        let first = appender.last + 1;
        let file = create_file(&self.shared.dir, first)?;
        appender.file = Arc::new(file);
        appender.file_first = first;
        Ok(())
    }

    /// Deletes the files whose every record is at or before `position` (a checkpoint
    /// holds their effects). The file being appended to is never deleted. Returns how
    /// many files went.
    pub fn delete_covered(&self, position: u64) -> Result<usize> {
        let _writer = self.sync_lock()?;
        let current = self.appender()?.file_first;
        let files = list_files(&self.shared.dir)?;
        let mut deleted = 0;
        for (i, (first, path)) in files.iter().enumerate() {
            let next_first = files.get(i + 1).map(|(f, _)| *f);
            match next_first {
                Some(next) if *first < current && next - 1 <= position => {
                    std::fs::remove_file(path).map_err(|e| io("remove", path, e))?;
                    deleted += 1;
                }
                _ => {}
            }
        }
        if deleted > 0 {
            sync_dir(&self.shared.dir)?;
        }
        Ok(deleted)
    }

    /// Calls `each` with every durable record after `position`, in order (recovery
    /// replays them). Records only queued in this process are not read.
    pub fn replay_after(&self, position: u64, mut each: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<u64> {
        let durable = self.durable();
        let mut replayed = 0;
        for (first, path) in list_files(&self.shared.dir)? {
            let bytes = read_file(&path)?;
            let parsed = parse(&bytes, first);
            for (i, range) in parsed.records.into_iter().enumerate() {
                let at = first + i as u64;
                if at <= position || at > durable {
                    continue;
                }
                each(at, &bytes[range])?;
                replayed += 1;
            }
        }
        Ok(replayed)
    }

    /// The journal's files, with the first position each holds.
    pub fn files(&self) -> Result<Vec<(u64, PathBuf)>> {
        list_files(&self.shared.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(journal: &Journal, after: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        journal
            .replay_after(after, |at, payload| {
                out.push((at, payload.to_vec()));
                Ok(())
            })
            .expect("replay");
        out
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("record number {i}").repeat(1 + (i as usize % 3)).into_bytes()
    }

    #[test]
    fn records_come_back_in_order_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, opened) = Journal::open(dir.path()).unwrap();
        assert_eq!(opened.last, 0);
        for i in 1..=5 {
            assert_eq!(journal.append(&payload(i)).unwrap(), i);
        }
        journal.sync().unwrap();
        drop(journal);
        let (journal, opened) = Journal::open(dir.path()).unwrap();
        assert_eq!((opened.last, opened.cut_bytes), (5, 0));
        assert_eq!(records(&journal, 2), (3..=5).map(|i| (i, payload(i))).collect::<Vec<_>>());
        assert_eq!(journal.append(b"next").unwrap(), 6);
    }

    #[test]
    fn what_no_sync_covered_is_lost_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        journal.append(b"one").unwrap();
        journal.append(b"two").unwrap();
        journal.sync_to(2).unwrap();
        journal.append(b"three").unwrap(); // queued, never synced: the process dies
        drop(journal);
        let (journal, opened) = Journal::open(dir.path()).unwrap();
        assert_eq!(opened.last, 2);
        assert_eq!(records(&journal, 0).len(), 2);
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_possible_length() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        for i in 1..=3 {
            journal.append(&payload(i)).unwrap();
        }
        journal.sync().unwrap();
        let path = journal.files().unwrap()[0].1.clone();
        let good = std::fs::read(&path).unwrap();
        drop(journal);
        // A fourth record whose write stopped after `n` of its bytes.
        let mut fourth = Vec::new();
        encode_record(4, &payload(4), &mut fourth);
        for n in 1..fourth.len() {
            let mut bytes = good.clone();
            bytes.extend_from_slice(&fourth[..n]);
            std::fs::write(&path, &bytes).unwrap();
            let (journal, opened) = Journal::open(dir.path()).unwrap();
            assert_eq!((opened.last, opened.cut_bytes), (3, n as u64), "torn after {n} bytes");
            assert_eq!(std::fs::read(&path).unwrap(), good);
            // Appends go on where the good records end.
            assert_eq!(journal.append(&payload(4)).unwrap(), 4);
        }
        // Zeros a file system left when extending the file are a tear too.
        let mut bytes = good.clone();
        bytes.extend_from_slice(&[0; 100]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Journal::open(dir.path()).unwrap().1.last, 3);
    }

    #[test]
    fn damage_before_good_records_is_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        for i in 1..=4 {
            journal.append(&payload(i)).unwrap();
        }
        journal.sync().unwrap();
        let path = journal.files().unwrap()[0].1.clone();
        drop(journal);
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip a byte inside the second record's payload.
        let second = HEADER_BYTES + FRAME_BYTES + payload(1).len() + FRAME_BYTES + 2;
        bytes[second] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let error = Journal::open(dir.path()).err().expect("refused").to_string();
        assert!(
            error.contains("record 2 fails its checksum") && error.contains("acknowledged records follow"),
            "{error}"
        );
        // The file was left as it was, for whoever restores it.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_checkpoint_rolls_the_file_and_deletes_what_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        for i in 1..=3 {
            journal.append(&payload(i)).unwrap();
        }
        journal.roll().unwrap(); // a checkpoint at 3
        assert_eq!(journal.durable(), 3);
        for i in 4..=6 {
            journal.append(&payload(i)).unwrap();
        }
        journal.roll().unwrap(); // a checkpoint at 6
        journal.append(&payload(7)).unwrap();
        journal.sync().unwrap();
        let firsts: Vec<u64> = journal.files().unwrap().iter().map(|(f, _)| *f).collect();
        assert_eq!(firsts, vec![1, 4, 7]);
        assert_eq!(journal.delete_covered(5).unwrap(), 1, "only the file of 1..=3 is wholly covered");
        assert_eq!(journal.delete_covered(6).unwrap(), 1);
        assert_eq!(journal.delete_covered(100).unwrap(), 0, "the file being appended to stays");
        drop(journal);
        let (journal, opened) = Journal::open(dir.path()).unwrap();
        assert_eq!(opened.last, 7);
        assert_eq!(records(&journal, 6), vec![(7, payload(7))]);
        // Rolling an empty file is a no-op.
        journal.roll().unwrap();
        journal.roll().unwrap();
        assert_eq!(journal.files().unwrap().len(), 2);
    }

    #[test]
    fn a_missing_file_between_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        for i in 1..=6 {
            journal.append(&payload(i)).unwrap();
            if i % 2 == 0 {
                journal.roll().unwrap();
            }
        }
        let files = journal.files().unwrap();
        drop(journal);
        std::fs::remove_file(&files[1].1).unwrap();
        let error = Journal::open(dir.path()).err().expect("refused").to_string();
        assert!(error.contains("records are missing"), "{error}");
    }

    #[test]
    fn concurrent_callers_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let at = journal.append(format!("{t}/{i}").as_bytes()).unwrap();
                        journal.sync_to(at).unwrap();
                        assert!(journal.durable() >= at);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(journal.durable(), 400);
        assert!(journal.syncs() <= 400);
        drop(journal);
        let (journal, opened) = Journal::open(dir.path()).unwrap();
        assert_eq!(opened.last, 400);
        let mut seen: Vec<String> =
            records(&journal, 0).into_iter().map(|(_, p)| String::from_utf8(p).unwrap()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 400);
    }

    /// A journal whose files are gone (all covered by a checkpoint at 40) starts after
    /// that position, so positions never repeat.
    #[test]
    fn an_empty_journal_starts_after_the_checkpoint_it_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, opened) = Journal::open_after(dir.path(), 40).expect("opens");
        assert_eq!(opened.last, 40);
        assert_eq!(journal.append(b"next").expect("appends"), 41);
        journal.sync().expect("syncs");
        drop(journal);
        let (journal, opened) = Journal::open_after(dir.path(), 0).expect("reopens");
        assert_eq!(opened.last, 41, "the file names where it starts");
        assert_eq!(records(&journal, 40), vec![(41, b"next".to_vec())]);
    }

    /// After a write cut short (what a full disk leaves), `reopen` cuts the half-written
    /// record, takes appends again after the last good one, and every handle sees it.
    #[test]
    fn reopen_cuts_a_half_written_record_and_takes_appends_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) = Journal::open(dir.path()).expect("opens");
        let other = journal.clone();
        for i in 1..=3 {
            journal.append(&payload(i)).expect("appends");
        }
        journal.sync().expect("syncs");
        // Half of a fourth record reached the file.
        let (_, path) = journal.files().expect("files").pop().expect("a file");
        let mut half = Vec::new();
        encode_record(4, &payload(4), &mut half);
        half.truncate(half.len() / 2);
        OpenOptions::new().append(true).open(&path).expect("opens").write_all(&half).expect("writes");
        let opened = other.reopen().expect("reopens");
        assert_eq!(opened.last, 3);
        assert_eq!(opened.cut_bytes, half.len() as u64);
        assert_eq!(journal.append(&payload(4)).expect("appends"), 4);
        journal.sync().expect("syncs");
        let positions: Vec<u64> = records(&other, 0).into_iter().map(|(at, _)| at).collect();
        assert_eq!(positions, vec![1, 2, 3, 4]);
        assert!(journal.failed().is_none());
    }
}
