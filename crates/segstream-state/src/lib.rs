//! The state store: one RocksDB database per data directory, with a column family per
//! kind of state, memcomparable keys and atomic, synced write batches.
//!
//! Column families:
//!
//! | family    | key                                  | value                      |
//! |-----------|--------------------------------------|----------------------------|
//! | `catalog` | definition id (u64, big-endian)      | the `CREATE` statement     |
//! | `meta`    | a name (`clock`, `next_id`, ...)     | a value                    |
//! | `rows`    | relation id (u64 BE) + row key       | the row ([`codec`])        |
//! | `state`   | segment id + node id + operator key  | operator state             |
//! | `timers`  | instant + segment id + node id + row | the timer's summed weight  |
//! | `members` | segment log id + member key          | weight and member row      |
//! | `changes` | segment log id + seq (u64 BE)        | one change record          |
//!
//! Every step's changes go into one [`StoreBatch`], written atomically, so a step is
//! either applied whole or not at all. By default each write syncs the WAL, so an
//! acknowledged statement survives a crash; a server with many concurrent callers turns
//! that off ([`Store::set_sync_writes`]) and makes a group of writes durable with one
//! [`WalSyncer::sync`] before acknowledging any of them (group commit).
//!
//! Durability version 2 (not yet used by the engine): with
//! [`Store::hold_writes_in_memory`], batches stay in memory (`dirty.rs`) until
//! [`Store::checkpoint`] writes them to RocksDB together, and the [`journal`] is what makes
//! a step durable.

pub mod codec;
mod dirty;
pub mod journal;
mod key_hash;
pub use key_hash::{KeyHash, KeyHasher};
mod read_cache;

use dirty::{Dirty, DirtyState};
pub use journal::{Journal, JournalOpened};
use read_cache::ReadCache;
pub use read_cache::{CacheStats, DEFAULT_CACHE_BYTES};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use segstream_types::{Error, Result};

pub const CF_CATALOG: &str = "catalog";
pub const CF_META: &str = "meta";
pub const CF_ROWS: &str = "rows";
pub const CF_STATE: &str = "state";
pub const CF_TIMERS: &str = "timers";
pub const CF_MEMBERS: &str = "members";
pub const CF_CHANGES: &str = "changes";
/// What a write batch adds to each put beyond its key and value: the record's type, the
/// family and the two lengths (varints), with room to spare.
const BATCH_RECORD_OVERHEAD: usize = 16;

/// Every column family, in the order [`CheckpointStats::by_family`] counts them.
pub const FAMILIES: [&str; 7] = [CF_CATALOG, CF_META, CF_ROWS, CF_STATE, CF_TIMERS, CF_MEMBERS, CF_CHANGES];
/// The families read and written by key on hot paths (`meta`, `state`, `members`, as
/// indices into [`FAMILIES`]): held in hash maps until a checkpoint (see [`dirty`]).
const HASHED_FAMILIES: [usize; 3] = [1, 3, 5];

/// An open data directory. A clone is another handle on the same database (RocksDB is
/// safe to read from many threads): readers that must not wait for the writer use one.
///
/// After a failed write or sync (a full disk, an I/O error), RocksDB refuses every later
/// write until the database is reopened. The next write therefore reopens it first, as a
/// restart would (replaying the write-ahead log, so nothing written before is lost); while
/// that is not possible (the disk is still full), the database is open read-only, so reads
/// go on, and writes fail with the reason. All handles share the one database, so a
/// reopen serves every clone.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
    /// Sync the WAL on every write (the default); off for group commit.
    sync_writes: bool,
}

struct Handle {
    db: RwLock<Option<DB>>,
    path: PathBuf,
    /// Batches written successfully through any handle on this database.
    writes: AtomicU64,
    /// Batches written to RocksDB by [`Store::write`] (not held in memory), checkpoints
    /// not included.
    direct_writes: AtomicU64,
    /// A write or sync failed: reopen before writing again.
    failed: AtomicBool,
    /// When a reopen was last tried, and why it failed: retried at most every
    /// [`REOPEN_INTERVAL`].
    last_reopen: Mutex<Option<(Instant, String)>>,
    /// Recently read and written keys of the families kept as bytes and read by key on
    /// every step (see [`read_cache`]).
    cache: Mutex<ReadCache>,
    /// While recording ([`Store::record_writes`]): every batch written, serialized.
    recorded: Mutex<Option<Vec<Vec<u8>>>>,
    /// Writes held in memory until [`Store::checkpoint`] (see [`dirty`]), when
    /// [`Store::hold_writes_in_memory`] turned that on; otherwise every batch goes
    /// straight to RocksDB.
    in_memory: AtomicBool,
    dirty: RwLock<DirtyState>,
}

/// How often a store whose write failed tries to reopen for writing.
const REOPEN_INTERVAL: Duration = Duration::from_millis(500);

/// Makes every write so far durable, without holding the store: a group commit's one
/// sync runs while other callers keep writing.
#[derive(Clone)]
pub struct WalSyncer {
    handle: Arc<Handle>,
}

impl WalSyncer {
    /// Syncs the write-ahead log: every write that returned before this call is durable
    /// when it returns.
    pub fn sync(&self) -> Result<()> {
        let result = self.handle.with_db(|db| db.flush_wal(true).map_err(storage));
        if result.is_err() {
            self.handle.failed.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// One key's write in a family: `(family, key, value)`, `None` for a deletion.
pub type StateWrite = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// The most write-ahead log kept before memtables are flushed to free it.
pub const MAX_TOTAL_WAL_BYTES: u64 = 64 * 1024 * 1024;

fn storage(e: rocksdb::Error) -> Error {
    Error::storage(e.into_string())
}

/// Read options for an iterator that stops before `upper` (excluded). Without the bound
/// a seek into a range with no live key walks every deleted key after it (join
/// arrangements and timers leave many) until it finds a live one, however far away.
fn bounded(upper: Option<Vec<u8>>) -> rocksdb::ReadOptions {
    let mut options = rocksdb::ReadOptions::default();
    if let Some(upper) = upper {
        options.set_iterate_upper_bound(upper);
    }
    options
}

fn family<'d>(db: &'d DB, name: &str) -> Result<&'d rocksdb::ColumnFamily> {
    db.cf_handle(name).ok_or_else(|| Error::internal(format!("column family {name} is missing")))
}

/// A family's position in [`FAMILIES`].
fn family_index(name: &str) -> Result<usize> {
    FAMILIES
        .iter()
        .position(|f| *f == name)
        .ok_or_else(|| Error::internal(format!("no column family {name}")))
}

fn db_options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Bounds what a restart replays. A WAL file is kept until every column family
    // with data in it has flushed, and the small families (meta, catalog) written on
    // each step would otherwise almost never fill a memtable, so the WAL, and the
    // time to reopen, would grow with history (238 MiB after 2M events). Past this
    // size RocksDB flushes whichever families hold the oldest file.
    options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    // Checkpoints are written without the WAL and then flushed (see `Store::checkpoint`):
    // the flush of every family must be one atomic step, or a crash in its middle could
    // keep the new marker in `meta` without the state it marks.
    options.set_atomic_flush(true);
    options
}

/// A column family's options. Every family compresses with LZ4 and has a Bloom filter
/// per table file, so a point read of an absent key (a new group, a new timer) skips the
/// files that cannot hold it. The families read by key on every step also have a Bloom
/// filter over their memtable, which answers "absent" without searching the skip list.
fn family_options(name: &str) -> Options {
    let mut options = Options::default();
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    options.set_block_based_table_factory(&table);
    if [CF_STATE, CF_TIMERS, CF_MEMBERS].contains(&name) {
        options.set_memtable_prefix_bloom_ratio(0.05);
        options.set_memtable_whole_key_filtering(true);
    }
    options
}

fn family_descriptors() -> impl Iterator<Item = ColumnFamilyDescriptor> {
    FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, family_options(name)))
}

fn open_db(path: &Path) -> Result<DB> {
    let families = family_descriptors();
    DB::open_cf_descriptors(&db_options(), path, families).map_err(|e| {
        Error::storage(format!("cannot open data directory {}: {}", path.display(), e.into_string()))
    })
}

impl Handle {
    fn cache(&self) -> Result<std::sync::MutexGuard<'_, ReadCache>> {
        self.cache.lock().map_err(|_| Error::internal("the store's cache lock is poisoned"))
    }

    fn dirty(&self) -> Result<std::sync::RwLockReadGuard<'_, DirtyState>> {
        self.dirty.read().map_err(|_| Error::internal("the store's lock is poisoned"))
    }

    fn dirty_mut(&self) -> Result<std::sync::RwLockWriteGuard<'_, DirtyState>> {
        self.dirty.write().map_err(|_| Error::internal("the store's lock is poisoned"))
    }

    fn in_memory(&self) -> bool {
        self.in_memory.load(Ordering::Acquire)
    }

    fn with_db<T>(&self, f: impl FnOnce(&DB) -> Result<T>) -> Result<T> {
        let guard = self.db.read().map_err(|_| Error::internal("the store's lock is poisoned"))?;
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(Error::storage(format!(
                "the data directory {} is closed after a storage error and could not be reopened yet",
                self.path.display()
            ))),
        }
    }

    /// Reopens the database for writing, if a write or sync failed since it was opened.
    /// On failure the database stays open read-only and the reason is returned.
    fn recover(&self) -> Result<()> {
        if !self.failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut last =
            self.last_reopen.lock().map_err(|_| Error::internal("the store's lock is poisoned"))?;
        if let Some((at, reason)) = last.as_ref() {
            if at.elapsed() < REOPEN_INTERVAL {
                return Err(Error::storage(reason.clone()));
            }
        }
        let mut db = self.db.write().map_err(|_| Error::internal("the store's lock is poisoned"))?;
        // What the failed write left in the store is what the reopened store says.
        self.cache()?.clear(None);
        // Close first: RocksDB allows one open handle per directory.
        *db = None;
        match open_db(&self.path) {
            Ok(reopened) => {
                *db = Some(reopened);
                self.failed.store(false, Ordering::Relaxed);
                *last = None;
                Ok(())
            }
            Err(e) => {
                *db =
                    DB::open_cf_descriptors_read_only(&db_options(), &self.path, family_descriptors(), false)
                        .ok();
                let reason = format!("writes are refused until the data directory can be reopened: {e}");
                *last = Some((Instant::now(), reason.clone()));
                Err(Error::storage(reason))
            }
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::storage(format!("cannot create data directory {}: {e}", path.display())))?;
        let db = open_db(path)?;
        let handle = Handle {
            db: RwLock::new(Some(db)),
            path: path.to_path_buf(),
            writes: AtomicU64::new(0),
            direct_writes: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            last_reopen: Mutex::new(None),
            cache: Mutex::new(ReadCache::new(DEFAULT_CACHE_BYTES)),
            recorded: Mutex::new(None),
            in_memory: AtomicBool::new(false),
            dirty: RwLock::new(DirtyState::new(FAMILIES.len()).hashing(&HASHED_FAMILIES)),
        };
        Ok(Self { handle: Arc::new(handle), sync_writes: true })
    }

    /// With `false`, writes are atomic but not synced one by one: the caller makes them
    /// durable with [`Store::wal_syncer`] before acknowledging them.
    pub fn set_sync_writes(&mut self, sync: bool) {
        self.sync_writes = sync;
    }

    /// Starts keeping a serialized copy of every batch written from now on, for
    /// [`Store::take_recorded_writes`]. The throughput bench uses it to measure what
    /// the storage alone costs: the same batches written again into an empty store,
    /// with no operator work around them.
    pub fn record_writes(&self) -> Result<()> {
        *self.recorded()? = Some(Vec::new());
        Ok(())
    }

    /// Stops recording and returns the batches written since [`Store::record_writes`],
    /// in order (empty if recording was never started).
    pub fn take_recorded_writes(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.recorded()?.take().unwrap_or_default())
    }

    /// Writes one batch recorded by [`Store::take_recorded_writes`] (of a store with the
    /// same column families), as [`Store::write`] would: atomically, synced when the
    /// store syncs writes. The hot-state cache is not told: the batch is opaque here.
    pub fn write_recorded(&self, batch: &[u8]) -> Result<()> {
        self.handle.recover()?;
        let mut options = WriteOptions::default();
        options.set_sync(self.sync_writes);
        self.with_db(|db| db.write_opt(WriteBatch::from_data(batch), &options).map_err(storage))
    }

    /// `batch` (recorded by [`Store::record_writes`]) without the writes `keep` refuses,
    /// given a write's family and whether it is a delete: the benchmark's way to price
    /// one family's writes, by leaving them out. Ids are read as for
    /// [`count_recorded_writes`]; a write to an unknown id is an error. Range deletions
    /// are left out too (RocksDB's batch iterator does not show them; the engine writes
    /// them only to drop a segment or a stream's history, not per event).
    pub fn filter_recorded(&self, batch: &[u8], keep: &dyn Fn(&str, bool) -> bool) -> Result<Vec<u8>> {
        struct Filter<'a> {
            db: &'a DB,
            out: WriteBatch,
            keep: &'a dyn Fn(&str, bool) -> bool,
            unknown: Option<u32>,
        }
        impl<'a> Filter<'a> {
            fn kept(&mut self, cf_id: u32, delete: bool) -> Option<&'a rocksdb::ColumnFamily> {
                let name = match cf_id {
                    0 => Some("default"),
                    i => FAMILIES.get(i as usize - 1).copied(),
                };
                let db = self.db;
                let Some(handle) = name.and_then(|name| db.cf_handle(name)) else {
                    self.unknown = Some(cf_id);
                    return None;
                };
                name.filter(|name| (self.keep)(name, delete)).map(|_| handle)
            }
        }
        impl rocksdb::WriteBatchIteratorCf for Filter<'_> {
            fn put_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
                if let Some(cf) = self.kept(cf_id, false) {
                    self.out.put_cf(cf, key, value);
                }
            }
            fn delete_cf(&mut self, cf_id: u32, key: &[u8]) {
                if let Some(cf) = self.kept(cf_id, true) {
                    self.out.delete_cf(cf, key);
                }
            }
            fn merge_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
                self.put_cf(cf_id, key, value);
            }
        }
        self.with_db(|db| {
            let mut filter = Filter { db, out: WriteBatch::default(), keep, unknown: None };
            WriteBatch::from_data(batch).iterate_cf(&mut filter);
            match filter.unknown {
                Some(id) => {
                    Err(Error::internal(format!("a recorded write names column family #{id}, unknown here")))
                }
                None => Ok(filter.out.data().to_vec()),
            }
        })
    }

    fn recorded(&self) -> Result<std::sync::MutexGuard<'_, Option<Vec<Vec<u8>>>>> {
        self.handle.recorded.lock().map_err(|_| Error::internal("the store's recording lock is poisoned"))
    }

    pub fn wal_syncer(&self) -> WalSyncer {
        WalSyncer { handle: Arc::clone(&self.handle) }
    }

    fn with_db<T>(&self, f: impl FnOnce(&DB) -> Result<T>) -> Result<T> {
        self.handle.with_db(f)
    }

    /// Limits the hot-state cache to `bytes` (keys, values and an estimate of overhead);
    /// what it held is dropped.
    pub fn set_cache_bytes(&self, bytes: usize) -> Result<()> {
        *self.handle.cache()? = ReadCache::new(bytes);
        Ok(())
    }

    /// What the hot-state cache holds, and its hits and misses since the store opened.
    pub fn cache_stats(&self) -> Result<CacheStats> {
        Ok(self.handle.cache()?.stats())
    }

    pub fn get(&self, family_name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.handle.in_memory() {
            match self.handle.dirty()?.get(family_index(family_name)?, key) {
                Dirty::Value(value) => return Ok(Some(value.to_vec())),
                Dirty::Deleted => return Ok(None),
                Dirty::Clean => {}
            }
        }
        let Some(cached) = ReadCache::family_index(family_name) else {
            return self.with_db(|db| db.get_cf(family(db, family_name)?, key).map_err(storage));
        };
        let epoch = {
            let mut cache = self.handle.cache()?;
            if let Some(value) = cache.get(cached, key) {
                return Ok(value);
            }
            cache.epoch()
        };
        let value = self.with_db(|db| db.get_cf(family(db, family_name)?, key).map_err(storage))?;
        self.handle.cache()?.fill(cached, epoch, key.to_vec(), value.clone());
        Ok(value)
    }

    /// Every key and value whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, family: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_range(family, prefix, prefix)
    }

    /// Keys and values from `start` on, while the key starts with `prefix`.
    pub fn scan_range(&self, family: &str, start: &[u8], prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_range_limit(family, start, prefix, usize::MAX)
    }

    /// At most `limit` keys and values from `start` on, while the key starts with
    /// `prefix`: a page of a scan, so a reader's memory does not grow with what it reads.
    pub fn scan_range_limit(
        &self,
        family_name: &str,
        start: &[u8],
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = self.scan_between(family_name, start, codec::prefix_end(prefix).as_deref(), limit)?;
        // A start before the prefix: the scan stops at the first key outside it.
        if let Some(outside) = out.iter().position(|(key, _)| !key.starts_with(prefix)) {
            out.truncate(outside);
        }
        Ok(out)
    }

    /// At most `limit` keys and values from `start` (included) to `end` (excluded, or
    /// the end of the family when `None`), with one iterator.
    pub fn scan_between(
        &self,
        family_name: &str,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with_db(|db| {
            let mut out = Vec::new();
            let iter = db.iterator_cf_opt(
                family(db, family_name)?,
                bounded(end.map(<[u8]>::to_vec)),
                IteratorMode::From(start, Direction::Forward),
            );
            if self.handle.in_memory() {
                let stored =
                    iter.map(|item| item.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(storage));
                let dirty = self.handle.dirty()?;
                return dirty.merge_scan(family_index(family_name)?, start, end, limit, stored);
            }
            for item in iter {
                if out.len() >= limit {
                    break;
                }
                let (key, value) = item.map_err(storage)?;
                if end.is_some_and(|end| *key >= *end) {
                    break;
                }
                out.push((key.into_vec(), value.into_vec()));
            }
            Ok(out)
        })
    }

    /// The stored definitions, in the order they were given ids.
    pub fn catalog_entries(&self) -> Result<Vec<(u64, String)>> {
        self.scan_prefix(CF_CATALOG, &[])?
            .into_iter()
            .map(|(key, value)| {
                let id = key
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::storage("corrupt catalog key: not 8 bytes"))?;
                let text = String::from_utf8(value)
                    .map_err(|_| Error::storage("corrupt catalog entry: not UTF-8"))?;
                Ok((id, text))
            })
            .collect()
    }

    pub fn meta_u64(&self, name: &str) -> Result<Option<u64>> {
        self.get(CF_META, name.as_bytes())?
            .map(|v| {
                v.try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::storage(format!("corrupt meta {name}")))
            })
            .transpose()
    }

    /// The first key and value at or after `from`, if any.
    pub fn first_from(&self, family_name: &str, from: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.handle.in_memory() {
            return Ok(self.scan_between(family_name, from, None, 1)?.pop());
        }
        self.with_db(|db| {
            let mut iter =
                db.iterator_cf(family(db, family_name)?, IteratorMode::From(from, Direction::Forward));
            match iter.next() {
                Some(item) => {
                    let (key, value) = item.map_err(storage)?;
                    Ok(Some((key.into_vec(), value.into_vec())))
                }
                None => Ok(None),
            }
        })
    }

    /// The values of many keys in one call (RocksDB MultiGet).
    /// Keys in the hot-state cache are answered from memory; the rest with one MultiGet.
    pub fn multi_get(&self, family_name: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        if self.handle.in_memory() {
            // What changed since the checkpoint is answered here; the rest below.
            let f = family_index(family_name)?;
            let (mut out, clean) = {
                let dirty = self.handle.dirty()?;
                let mut out = Vec::with_capacity(keys.len());
                let mut clean = Vec::new();
                for (i, key) in keys.iter().enumerate() {
                    match dirty.get(f, key) {
                        Dirty::Value(value) => out.push(Some(value.to_vec())),
                        Dirty::Deleted => out.push(None),
                        Dirty::Clean => {
                            out.push(None);
                            clean.push(i);
                        }
                    }
                }
                (out, clean)
            };
            if !clean.is_empty() {
                let clean_keys: Vec<Vec<u8>> = clean.iter().map(|&i| keys[i].clone()).collect();
                for (i, value) in clean.into_iter().zip(self.stored_multi_get(family_name, &clean_keys)?) {
                    out[i] = value;
                }
            }
            return Ok(out);
        }
        self.stored_multi_get(family_name, keys)
    }

    /// [`Store::multi_get`] of what RocksDB (and the read cache in front of it) holds.
    fn stored_multi_get(&self, family_name: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let read = |keys: &mut dyn Iterator<Item = &Vec<u8>>| {
            self.with_db(|db| {
                let cf = family(db, family_name)?;
                db.multi_get_cf(keys.map(|k| (cf, k.as_slice())))
                    .into_iter()
                    .map(|r| r.map_err(storage))
                    .collect::<Result<Vec<_>>>()
            })
        };
        let Some(cached) = ReadCache::family_index(family_name) else {
            return read(&mut keys.iter());
        };
        let (mut out, epoch) = {
            let mut cache = self.handle.cache()?;
            let out: Vec<Option<Option<Vec<u8>>>> = keys.iter().map(|k| cache.get(cached, k)).collect();
            (out, cache.epoch())
        };
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let fetched = read(&mut missing.iter().map(|&i| &keys[i]))?;
            let mut cache = self.handle.cache()?;
            for (&i, value) in missing.iter().zip(fetched) {
                cache.fill(cached, epoch, keys[i].clone(), value.clone());
                out[i] = Some(value);
            }
        }
        Ok(out.into_iter().map(Option::flatten).collect())
    }

    /// How many keys a family holds, counted exactly by a scan (for reports and tests,
    /// not for a hot path).
    pub fn count_keys(&self, family_name: &str) -> Result<u64> {
        if self.handle.in_memory() {
            return Ok(self.scan_between(family_name, &[], None, usize::MAX)?.len() as u64);
        }
        self.with_db(|db| {
            let mut n = 0;
            for item in db.iterator_cf(family(db, family_name)?, IteratorMode::Start) {
                item.map_err(storage)?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// Flushes every family's memtable and compacts all of its files, so deleted keys
    /// and overwritten values no longer take space (RocksDB does this by itself over
    /// time; this does it now, e.g. before measuring the disk).
    pub fn compact(&self) -> Result<()> {
        let mut options = rocksdb::CompactOptions::default();
        // Rewrite the last level too: it is where deleted rows wait for their tombstones.
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.with_db(|db| {
            for name in FAMILIES {
                let cf = family(db, name)?;
                db.flush_cf(cf).map_err(storage)?;
                db.compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &options);
            }
            Ok(())
        })
    }

    /// The column families, in a fixed order.
    pub fn families() -> &'static [&'static str] {
        &FAMILIES
    }

    pub fn meta_i64(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.meta_u64(name)?.map(|v| v as i64))
    }

    /// Applies a batch atomically. Held in memory ([`Store::hold_writes_in_memory`]),
    /// it is in memory only, until the next [`Store::checkpoint`]. Otherwise it goes to
    /// RocksDB and (unless turned off for group commit) the write-ahead log is synced
    /// before returning; after a failed write or sync the database is reopened first
    /// (see [`Store`]); a batch that fails is not applied.
    pub fn write(&self, batch: StoreBatch) -> Result<()> {
        let StoreBatch { ops, .. } = batch;
        if let Some(recorded) = self.recorded()?.as_mut() {
            recorded.push(self.with_db(|db| write_batch(db, &ops))?.data().to_vec());
        }
        if self.handle.in_memory() {
            let mut dirty = self.handle.dirty_mut()?;
            for op in ops {
                match op {
                    BatchOp::Put(f, key, value) => dirty.write(f, key, Some(value), false),
                    BatchOp::Delete(f, key) => dirty.write(f, key, None, false),
                    BatchOp::PutAbsent(f, key, value) => dirty.write(f, key, Some(value), true),
                    BatchOp::DeleteAbsent(f, key) => dirty.write(f, key, None, true),
                    BatchOp::DeleteRange(f, start, end) => dirty.delete_range(f, &start, &end),
                }
            }
            self.handle.writes.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.handle.recover()?;
        let mut options = WriteOptions::default();
        options.set_sync(self.sync_writes);
        let inner = self.with_db(|db| write_batch(db, &ops))?;
        // Readers that start before the write completes must not fill the cache with
        // what they read (it may be the value this write replaces).
        self.handle.cache()?.begin_write();
        let result = self.with_db(|db| db.write_opt(inner, &options).map_err(storage));
        let mut cache = self.handle.cache()?;
        match result {
            Ok(()) => {
                self.handle.writes.fetch_add(1, Ordering::Relaxed);
                self.handle.direct_writes.fetch_add(1, Ordering::Relaxed);
                cache.begin_write();
                for op in ops {
                    match op {
                        BatchOp::Put(f, key, value) | BatchOp::PutAbsent(f, key, value) => {
                            if let Some(c) = ReadCache::family_index(FAMILIES[f]) {
                                cache.written(c, key, Some(value));
                            }
                        }
                        BatchOp::Delete(f, key) | BatchOp::DeleteAbsent(f, key) => {
                            if let Some(c) = ReadCache::family_index(FAMILIES[f]) {
                                cache.written(c, key, None);
                            }
                        }
                        BatchOp::DeleteRange(f, ..) => {
                            if let Some(c) = ReadCache::family_index(FAMILIES[f]) {
                                cache.clear(Some(c));
                            }
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.handle.failed.store(true, Ordering::Relaxed);
                cache.clear(None);
                Err(e)
            }
        }
    }

    /// From now on, [`Store::write`] holds batches in memory (read back by every read)
    /// until [`Store::checkpoint`] writes them to RocksDB: the journal, not the store,
    /// makes a step durable.
    pub fn hold_writes_in_memory(&self) {
        self.handle.in_memory.store(true, Ordering::Release);
    }

    /// Drops every write held in memory since the last checkpoint (and the read cache):
    /// the store reads as the checkpoint again. After a failed journal write, the engine
    /// rebuilds from there, as a restart would.
    pub fn discard_unwritten(&self) -> Result<()> {
        self.handle.dirty_mut()?.clear();
        self.handle.cache()?.clear(None);
        Ok(())
    }

    /// Bytes of state written since the last checkpoint and held in memory.
    pub fn unwritten_bytes(&self) -> Result<usize> {
        Ok(self.handle.dirty()?.bytes())
    }

    /// Writes everything held in memory to RocksDB in one batch, flushed to table files, with `marker`
    /// (puts into `meta`, e.g. the journal position the state corresponds to), so the
    /// state on disk moves from one checkpoint to the next atomically: after a crash it
    /// is the last checkpoint, whole.
    ///
    /// `operator_state` is what operators hold in memory as typed values and changed
    /// since the last checkpoint (`None`: deleted), written after the held changes so
    /// that it wins over them. It goes to RocksDB only: the read cache forgets those keys
    /// rather than keep a second copy of what the operators hold.
    pub fn checkpoint(
        &self,
        marker: &[(&[u8], &[u8])],
        operator_state: &[StateWrite],
    ) -> Result<CheckpointStats> {
        self.handle.recover()?;
        let mut stats = CheckpointStats::default();
        let mut cleared = Vec::new();
        let batch = {
            let dirty = self.handle.dirty()?;
            // The batch's buffer sized once: grown by doubling, it copied a checkpoint's
            // hundred-odd MiB over again on the way up.
            let capacity = dirty.bytes()
                + operator_state
                    .iter()
                    .map(|(_, key, value)| {
                        key.len() + value.as_ref().map_or(0, Vec::len) + BATCH_RECORD_OVERHEAD
                    })
                    .sum::<usize>();
            self.with_db(|db| {
                let mut batch = WriteBatch::with_capacity_bytes(capacity);
                for dirty::FamilyChanges { family: f, ranges, entries } in dirty.changes() {
                    let cf = family(db, FAMILIES[f])?;
                    // Ranges first: an entry written after a range was deleted survives it.
                    for (start, end) in ranges {
                        batch.delete_range_cf(cf, start, end);
                        stats.entries += 1;
                        stats.by_family[f] += 1;
                        cleared.push(f);
                    }
                    for (key, value) in entries {
                        let bytes = (key.len() + value.as_ref().map_or(0, Vec::len)) as u64;
                        stats.entries += 1;
                        stats.by_family[f] += 1;
                        stats.bytes += bytes;
                        stats.bytes_by_family[f] += bytes;
                        match value {
                            Some(value) => batch.put_cf(cf, key, value),
                            None => batch.delete_cf(cf, key),
                        }
                    }
                }
                for (name, key, value) in operator_state {
                    let cf = family(db, name)?;
                    let bytes = (key.len() + value.as_ref().map_or(0, Vec::len)) as u64;
                    stats.entries += 1;
                    if let Some(f) = FAMILIES.iter().position(|n| n == name) {
                        stats.by_family[f] += 1;
                        stats.bytes_by_family[f] += bytes;
                    }
                    stats.bytes += bytes;
                    match value {
                        Some(value) => batch.put_cf(cf, key, value),
                        None => batch.delete_cf(cf, key),
                    }
                }
                let meta = family(db, CF_META)?;
                for (key, value) in marker {
                    batch.put_cf(meta, key, value);
                }
                Ok(batch)
            })?
        };
        // Without RocksDB's WAL, then flushed: the checkpoint is durable once it is in
        // table files, and a reopen has no log of it to replay (a checkpoint's batch is
        // tens of MiB; replaying it cost seconds at open). Until the flush completes, a
        // crash leaves the previous checkpoint, whole (the flush is atomic across
        // families).
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        self.handle.cache()?.begin_write();
        let result = self.with_db(|db| {
            db.write_opt(batch, &options).map_err(storage)?;
            let families = FAMILIES.iter().map(|f| family(db, f)).collect::<Result<Vec<_>>>()?;
            let mut flush = rocksdb::FlushOptions::default();
            flush.set_wait(true);
            db.flush_cfs_opt(&families, &flush).map_err(storage)
        });
        if let Err(e) = result {
            self.handle.failed.store(true, Ordering::Relaxed);
            self.handle.cache()?.clear(None);
            return Err(e);
        }
        // RocksDB has it all now: what was held in memory moves to the read cache (so hot
        // entries stay hot), then is dropped. In that order, a reader always finds the
        // newest value in one of the two.
        let mut dirty = self.handle.dirty_mut()?;
        let mut cache = self.handle.cache()?;
        cache.begin_write();
        for dirty::FamilyChanges { family: f, entries, .. } in dirty.changes() {
            if let Some(c) = ReadCache::family_index(FAMILIES[f]) {
                if cleared.contains(&f) {
                    cache.clear(Some(c));
                }
                for (key, value) in entries {
                    cache.written(c, key.clone(), value.clone());
                }
            }
        }
        for (name, key, _) in operator_state {
            if let Some(c) = ReadCache::family_index(name) {
                cache.forget(c, key);
            }
        }
        for (key, value) in marker {
            if let Some(c) = ReadCache::family_index(CF_META) {
                cache.written(c, key.to_vec(), Some(value.to_vec()));
            }
        }
        dirty.clear();
        Ok(stats)
    }

    /// How many batches have been written successfully since the store was opened: a
    /// caller compares two readings to know whether anything was written in between
    /// (and so whether there is anything to sync).
    pub fn writes(&self) -> u64 {
        self.handle.writes.load(Ordering::Relaxed)
    }

    /// How many batches [`Store::write`] has written to RocksDB itself (not held in
    /// memory) since the store was opened; checkpoints are not counted. Once writes are
    /// held in memory, steps add none.
    pub fn direct_writes(&self) -> u64 {
        self.handle.direct_writes.load(Ordering::Relaxed)
    }

    pub fn batch(&self) -> StoreBatch<'_> {
        StoreBatch { store: self, ops: Vec::new() }
    }
}

/// What recorded batches (see [`Store::record_writes`]) hold for one column family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyWrites {
    pub family: String,
    pub puts: u64,
    pub deletes: u64,
    /// Key bytes of the puts and deletes together.
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// Puts and point deletes per column family in recorded batches (range deletions are
/// not counted), in the order of [`FAMILIES`]. A batch names a family by its id, the
/// order in which the store created it: this reads ids as a store created by this
/// version numbers them (the default family 0, then [`FAMILIES`] in order).
pub fn count_recorded_writes(batches: &[Vec<u8>]) -> Vec<FamilyWrites> {
    struct Counter(Vec<FamilyWrites>);
    impl Counter {
        fn slot(&mut self, cf_id: u32) -> &mut FamilyWrites {
            let i = cf_id as usize;
            if self.0.len() <= i {
                self.0.resize_with(i + 1, FamilyWrites::default);
            }
            let slot = &mut self.0[i];
            if slot.family.is_empty() {
                slot.family = match i {
                    0 => "default".to_string(),
                    i => FAMILIES.get(i - 1).map_or_else(|| format!("family #{i}"), |f| f.to_string()),
                };
            }
            slot
        }
    }
    impl rocksdb::WriteBatchIteratorCf for Counter {
        fn put_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
            let slot = self.slot(cf_id);
            slot.puts += 1;
            slot.key_bytes += key.len() as u64;
            slot.value_bytes += value.len() as u64;
        }
        fn delete_cf(&mut self, cf_id: u32, key: &[u8]) {
            let slot = self.slot(cf_id);
            slot.deletes += 1;
            slot.key_bytes += key.len() as u64;
        }
        fn merge_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
            self.put_cf(cf_id, key, value);
        }
    }
    let mut counter = Counter(Vec::new());
    for batch in batches {
        WriteBatch::from_data(batch).iterate_cf(&mut counter);
    }
    counter.0.into_iter().filter(|f| f.puts + f.deletes > 0).collect()
}

/// One write of a [`StoreBatch`]; a family is named by its position in [`FAMILIES`].
enum BatchOp {
    Put(usize, Vec<u8>, Vec<u8>),
    /// A put or deletion of a key the step found absent from the store (held writes and
    /// RocksDB) before writing it: see [`StoreBatch::write_family`].
    PutAbsent(usize, Vec<u8>, Vec<u8>),
    DeleteAbsent(usize, Vec<u8>),
    Delete(usize, Vec<u8>),
    /// Every key from the first (included) to the second (excluded).
    DeleteRange(usize, Vec<u8>, Vec<u8>),
}

/// The changes of one step, applied together by [`Store::write`].
pub struct StoreBatch<'a> {
    store: &'a Store,
    ops: Vec<BatchOp>,
}

impl StoreBatch<'_> {
    pub fn put(&mut self, family_name: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.ops.push(BatchOp::Put(family_index(family_name)?, key.to_vec(), value.to_vec()));
        Ok(())
    }

    pub fn delete(&mut self, family_name: &str, key: &[u8]) -> Result<()> {
        self.ops.push(BatchOp::Delete(family_index(family_name)?, key.to_vec()));
        Ok(())
    }

    /// Puts (`Some`) and deletes (`None`) in one family, with one look-up of the family.
    pub fn write_family(
        &mut self,
        family_name: &str,
        writes: impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<()> {
        let f = family_index(family_name)?;
        self.ops.extend(writes.map(|(key, value)| match value {
            Some(value) => BatchOp::Put(f, key, value),
            None => BatchOp::Delete(f, key),
        }));
        Ok(())
    }

    /// [`StoreBatch::write_family`], each write marked with whether the step found its
    /// key absent from the store (held writes and RocksDB) before writing it: a key
    /// RocksDB does not hold needs no deletion at the next checkpoint (`dirty.rs`).
    pub fn write_family_marked(
        &mut self,
        family_name: &str,
        writes: impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>, bool)>,
    ) -> Result<()> {
        let f = family_index(family_name)?;
        self.ops.extend(writes.map(|(key, value, absent)| match (value, absent) {
            (Some(value), false) => BatchOp::Put(f, key, value),
            (Some(value), true) => BatchOp::PutAbsent(f, key, value),
            (None, false) => BatchOp::Delete(f, key),
            (None, true) => BatchOp::DeleteAbsent(f, key),
        }));
        Ok(())
    }

    /// Deletes every key from `start` (included) to `end` (excluded).
    pub fn delete_range(&mut self, family_name: &str, start: &[u8], end: &[u8]) -> Result<()> {
        self.ops.push(BatchOp::DeleteRange(family_index(family_name)?, start.to_vec(), end.to_vec()));
        Ok(())
    }

    /// Deletes every key that starts with `prefix`.
    pub fn delete_prefix(&mut self, family_name: &str, prefix: &[u8]) -> Result<()> {
        match codec::prefix_end(prefix) {
            Some(end) => self.delete_range(family_name, prefix, &end),
            None => {
                for (key, _) in self.store.scan_prefix(family_name, prefix)? {
                    self.delete(family_name, &key)?;
                }
                Ok(())
            }
        }
    }

    pub fn put_u64(&mut self, family: &str, key: &[u8], value: u64) -> Result<()> {
        self.put(family, key, &value.to_be_bytes())
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The RocksDB batch of `ops`.
fn write_batch(db: &DB, ops: &[BatchOp]) -> Result<WriteBatch> {
    let families = FAMILIES.iter().map(|name| family(db, name)).collect::<Result<Vec<_>>>()?;
    let mut batch = WriteBatch::default();
    for op in ops {
        match op {
            BatchOp::Put(f, key, value) | BatchOp::PutAbsent(f, key, value) => {
                batch.put_cf(families[*f], key, value)
            }
            BatchOp::DeleteAbsent(f, key) => batch.delete_cf(families[*f], key),
            BatchOp::Delete(f, key) => batch.delete_cf(families[*f], key),
            BatchOp::DeleteRange(f, start, end) => batch.delete_range_cf(families[*f], start, end),
        }
    }
    Ok(batch)
}

/// What a checkpoint wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Keys written or deleted, and ranges deleted.
    pub entries: u64,
    /// Of them, per family (in [`FAMILIES`] order): where a checkpoint's volume comes from.
    pub by_family: [u64; FAMILIES.len()],
    /// Bytes of keys and values written.
    pub bytes: u64,
    /// Of them, per family.
    pub bytes_by_family: [u64; FAMILIES.len()],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_state_is_served_from_memory_exactly_and_within_its_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let put = |key: &[u8], value: Option<&[u8]>| {
            let mut batch = store.batch();
            match value {
                Some(v) => batch.put(CF_META, key, v).unwrap(),
                None => batch.delete(CF_META, key).unwrap(),
            }
            store.write(batch).unwrap();
        };
        // A written key is read back from memory, and so is a key known to be absent.
        put(b"k1", Some(b"one"));
        let before = store.cache_stats().unwrap();
        assert_eq!(store.get(CF_META, b"k1").unwrap(), Some(b"one".to_vec()));
        assert_eq!(store.get(CF_META, b"nope").unwrap(), None);
        assert_eq!(store.get(CF_META, b"nope").unwrap(), None);
        let after = store.cache_stats().unwrap();
        assert_eq!((after.hits - before.hits, after.misses - before.misses), (2, 1));
        // Overwrites, deletions and range deletes are seen at once.
        put(b"k1", Some(b"uno"));
        assert_eq!(
            store.multi_get(CF_META, &[b"k1".to_vec(), b"nope".to_vec()]).unwrap(),
            vec![Some(b"uno".to_vec()), None]
        );
        put(b"k1", None);
        assert_eq!(store.get(CF_META, b"k1").unwrap(), None);
        put(b"k2", Some(b"two"));
        let mut batch = store.batch();
        batch.delete_prefix(CF_META, b"k").unwrap();
        store.write(batch).unwrap();
        assert_eq!(store.get(CF_META, b"k2").unwrap(), None);

        // Far more keys than the budget holds: memory stays bounded, every value is
        // still right (read back from RocksDB), and recent keys are hits.
        store.set_cache_bytes(64 * 1024).unwrap();
        let key = |i: u32| format!("user{i:06}").into_bytes();
        for chunk in (0..20_000u32).collect::<Vec<_>>().chunks(1000) {
            let mut batch = store.batch();
            batch
                .write_family(CF_META, chunk.iter().map(|&i| (key(i), Some(i.to_le_bytes().to_vec()))))
                .unwrap();
            store.write(batch).unwrap();
        }
        assert!(store.cache_stats().unwrap().bytes <= 64 * 1024, "{:?}", store.cache_stats());
        let keys: Vec<Vec<u8>> = (0..20_000).step_by(97).map(key).collect();
        let values = store.multi_get(CF_META, &keys).unwrap();
        for (i, value) in (0..20_000u32).step_by(97).zip(values) {
            assert_eq!(value, Some(i.to_le_bytes().to_vec()));
        }
        let before = store.cache_stats().unwrap();
        assert_eq!(store.get(CF_META, &key(19_999)).unwrap(), Some(19_999u32.to_le_bytes().to_vec()));
        assert_eq!(store.cache_stats().unwrap().hits, before.hits + 1);
        assert!(store.cache_stats().unwrap().bytes <= 64 * 1024);
    }

    #[test]
    fn writes_held_in_memory_are_read_back_and_reach_rocksdb_at_a_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let mut batch = store.batch();
            batch.put(CF_STATE, b"k1", b"on disk").unwrap();
            batch.put(CF_STATE, b"k2", b"on disk").unwrap();
            batch.put(CF_ROWS, b"r1", b"on disk").unwrap();
            store.write(batch).unwrap();
            assert_eq!(store.get(CF_STATE, b"k1").unwrap(), Some(b"on disk".to_vec())); // cached
            store.hold_writes_in_memory();
            let mut batch = store.batch();
            batch.put(CF_STATE, b"k1", b"in memory").unwrap();
            batch.delete(CF_STATE, b"k2").unwrap();
            batch.put(CF_STATE, b"k3", b"in memory").unwrap();
            batch.delete_prefix(CF_ROWS, b"r").unwrap();
            batch.put(CF_ROWS, b"r2", b"in memory").unwrap();
            store.write(batch).unwrap();
            assert!(store.unwritten_bytes().unwrap() > 0);
            // Every kind of read sees the writes, over what RocksDB and the cache hold.
            assert_eq!(store.get(CF_STATE, b"k1").unwrap(), Some(b"in memory".to_vec()));
            assert_eq!(store.get(CF_STATE, b"k2").unwrap(), None);
            assert_eq!(
                store
                    .multi_get(CF_STATE, &[b"k1".to_vec(), b"k2".to_vec(), b"k3".to_vec(), b"k4".to_vec()])
                    .unwrap(),
                vec![Some(b"in memory".to_vec()), None, Some(b"in memory".to_vec()), None]
            );
            let keys = |family| {
                store.scan_prefix(family, b"").unwrap().into_iter().map(|(k, _)| k).collect::<Vec<_>>()
            };
            assert_eq!(keys(CF_STATE), vec![b"k1".to_vec(), b"k3".to_vec()]);
            assert_eq!(keys(CF_ROWS), vec![b"r2".to_vec()]);
            assert_eq!(store.first_from(CF_STATE, b"k2").unwrap().map(|(k, _)| k), Some(b"k3".to_vec()));
            assert_eq!(store.count_keys(CF_STATE).unwrap(), 2);
        }
        // Not checkpointed: RocksDB still holds the state before them.
        {
            let store = Store::open(dir.path()).expect("reopen");
            assert_eq!(store.get(CF_STATE, b"k1").unwrap(), Some(b"on disk".to_vec()));
            assert_eq!(store.get(CF_STATE, b"k3").unwrap(), None);
            store.hold_writes_in_memory();
            let mut batch = store.batch();
            batch.put(CF_STATE, b"k1", b"checkpointed").unwrap();
            batch.delete_prefix(CF_ROWS, b"r").unwrap();
            batch.put(CF_ROWS, b"r2", b"checkpointed").unwrap();
            store.write(batch).unwrap();
            let stats = store.checkpoint(&[(b"journal_position", &7u64.to_be_bytes())], &[]).unwrap();
            assert_eq!(stats.entries, 3);
            assert_eq!(store.unwritten_bytes().unwrap(), 0);
            assert_eq!(store.get(CF_STATE, b"k1").unwrap(), Some(b"checkpointed".to_vec()));
            assert_eq!(store.meta_u64("journal_position").unwrap(), Some(7));
            let mut batch = store.batch();
            batch.put(CF_STATE, b"k1", b"after").unwrap();
            store.write(batch).unwrap();
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.get(CF_STATE, b"k1").unwrap(), Some(b"checkpointed".to_vec()));
        assert_eq!(
            store.scan_prefix(CF_ROWS, b"").unwrap(),
            vec![(b"r2".to_vec(), b"checkpointed".to_vec())]
        );
        assert_eq!(store.meta_u64("journal_position").unwrap(), Some(7));
    }

    #[test]
    fn batches_are_atomic_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let mut batch = store.batch();
            batch.put(CF_CATALOG, &1u64.to_be_bytes(), b"CREATE STREAM e (id TEXT, ts TIMESTAMP)").unwrap();
            batch.put_u64(CF_META, b"clock", 42).unwrap();
            batch.put(CF_ROWS, b"\x00\x01a", b"x").unwrap();
            batch.put(CF_ROWS, b"\x00\x01b", b"y").unwrap();
            batch.put(CF_ROWS, b"\x00\x02a", b"z").unwrap();
            store.write(batch).expect("write");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.catalog_entries().unwrap(),
            vec![(1, "CREATE STREAM e (id TEXT, ts TIMESTAMP)".to_string())]
        );
        assert_eq!(store.meta_u64("clock").unwrap(), Some(42));
        assert_eq!(store.scan_prefix(CF_ROWS, b"\x00\x01").unwrap().len(), 2);
        let mut batch = store.batch();
        batch.delete_prefix(CF_ROWS, b"\x00\x01").unwrap();
        store.write(batch).unwrap();
        assert!(store.scan_prefix(CF_ROWS, b"\x00\x01").unwrap().is_empty());
        assert_eq!(store.scan_prefix(CF_ROWS, b"\x00\x02").unwrap().len(), 1);
    }

    #[test]
    fn recorded_batches_written_again_give_the_same_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut before = store.batch();
        before.put(CF_STATE, b"early", b"not recorded").unwrap();
        store.write(before).unwrap();
        store.record_writes().unwrap();
        let mut first = store.batch();
        first.put(CF_STATE, b"a", b"1").unwrap();
        first.put(CF_TIMERS, b"t", b"row").unwrap();
        store.write(first).unwrap();
        let mut second = store.batch();
        second.delete(CF_TIMERS, b"t").unwrap();
        second.put(CF_STATE, b"b", b"2").unwrap();
        second.delete_prefix(CF_ROWS, b"x").unwrap();
        store.write(second).unwrap();
        let recorded = store.take_recorded_writes().unwrap();
        assert_eq!(recorded.len(), 2);
        let counts: Vec<(String, u64, u64)> =
            count_recorded_writes(&recorded).into_iter().map(|f| (f.family, f.puts, f.deletes)).collect();
        assert_eq!(counts, vec![(CF_STATE.to_string(), 2, 0), (CF_TIMERS.to_string(), 1, 1)]);
        // Recording stopped with the take.
        let mut after = store.batch();
        after.put(CF_STATE, b"late", b"not recorded").unwrap();
        store.write(after).unwrap();
        assert!(store.take_recorded_writes().unwrap().is_empty());

        let copy_dir = tempfile::tempdir().expect("tempdir");
        let copy = Store::open(copy_dir.path()).expect("open copy");
        for batch in &recorded {
            copy.write_recorded(batch).unwrap();
        }
        assert_eq!(
            copy.scan_prefix(CF_STATE, b"").unwrap(),
            vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec()),]
        );
        assert!(copy.scan_prefix(CF_TIMERS, b"").unwrap().is_empty());
        // A damaged batch is an error, not a crash.
        assert!(copy.write_recorded(b"\x01\x02").is_err());

        // Filtered: the timers' deletes left out, then the whole state family.
        let without = |keep: &dyn Fn(&str, bool) -> bool| {
            let dir = tempfile::tempdir().expect("tempdir");
            let copy = Store::open(dir.path()).expect("open copy");
            for batch in &recorded {
                copy.write_recorded(&copy.filter_recorded(batch, keep).unwrap()).unwrap();
            }
            (copy.scan_prefix(CF_STATE, b"").unwrap().len(), copy.scan_prefix(CF_TIMERS, b"").unwrap().len())
        };
        assert_eq!(without(&|f, delete| !(f == CF_TIMERS && delete)), (2, 1));
        assert_eq!(without(&|f, _| f != CF_STATE), (0, 0));
        let kept: Vec<(String, u64, u64)> = count_recorded_writes(
            &recorded
                .iter()
                .map(|b| store.filter_recorded(b, &|f, _| f != CF_STATE).unwrap())
                .collect::<Vec<_>>(),
        )
        .into_iter()
        .map(|f| (f.family, f.puts, f.deletes))
        .collect();
        assert_eq!(kept, vec![(CF_TIMERS.to_string(), 1, 1)]);
    }
}
