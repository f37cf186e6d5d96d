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
//! Every statement's changes go into one [`StoreBatch`], written atomically, so a
//! statement is either applied whole or not at all. By default each write syncs the WAL,
//! so an acknowledged statement survives a crash; a server with many concurrent callers
//! turns that off ([`Store::set_sync_writes`]) and makes a group of writes durable with one
//! [`WalSyncer::sync`] before acknowledging any of them (group commit).

pub mod codec;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use segstream_types::{Error, Result};

pub const CF_CATALOG: &str = "catalog";
pub const CF_META: &str = "meta";
pub const CF_ROWS: &str = "rows";
pub const CF_STATE: &str = "state";
pub const CF_TIMERS: &str = "timers";
pub const CF_MEMBERS: &str = "members";
pub const CF_CHANGES: &str = "changes";
const FAMILIES: [&str; 7] = [CF_CATALOG, CF_META, CF_ROWS, CF_STATE, CF_TIMERS, CF_MEMBERS, CF_CHANGES];

/// An open data directory. A clone is another handle on the same database (RocksDB is
/// safe to read from many threads): readers that must not wait for the writer use one.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    /// Sync the WAL on every write (the default); off for group commit.
    sync_writes: bool,
}

/// Makes every write so far durable, without holding the store: a group commit's one
/// sync runs while other callers keep writing.
#[derive(Clone)]
pub struct WalSyncer {
    db: Arc<DB>,
}

impl WalSyncer {
    /// Syncs the write-ahead log: every write that returned before this call is durable
    /// when it returns.
    pub fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(storage)
    }
}

/// The most write-ahead log kept before memtables are flushed to free it.
pub const MAX_TOTAL_WAL_BYTES: u64 = 64 * 1024 * 1024;

fn storage(e: rocksdb::Error) -> Error {
    Error::storage(e.into_string())
}

impl Store {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::storage(format!("cannot create data directory {}: {e}", path.display())))?;
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
        let families = FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, families).map_err(|e| {
            Error::storage(format!("cannot open data directory {}: {}", path.display(), e.into_string()))
        })?;
        Ok(Self { db: Arc::new(db), sync_writes: true })
    }

    /// With `false`, writes are atomic but not synced one by one: the caller makes them
    /// durable with [`Store::wal_syncer`] before acknowledging them.
    pub fn set_sync_writes(&mut self, sync: bool) {
        self.sync_writes = sync;
    }

    pub fn wal_syncer(&self) -> WalSyncer {
        WalSyncer { db: Arc::clone(&self.db) }
    }

    fn family(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| Error::internal(format!("column family {name} is missing")))
    }

    pub fn get(&self, family: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.family(family)?, key).map_err(storage)
    }

    /// Every key and value whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, family: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_range(family, prefix, prefix)
    }

    /// Keys and values from `start` on, while the key starts with `prefix`.
    pub fn scan_range(&self, family: &str, start: &[u8], prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(self.family(family)?, IteratorMode::From(start, Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(storage)?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    /// At most `limit` keys and values from `start` on, while the key starts with
    /// `prefix`: a page of a scan, so a reader's memory does not grow with what it reads.
    pub fn scan_range_limit(
        &self,
        family: &str,
        start: &[u8],
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(self.family(family)?, IteratorMode::From(start, Direction::Forward));
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(storage)?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
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
    pub fn first_from(&self, family: &str, from: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut iter =
            self.db.iterator_cf(self.family(family)?, IteratorMode::From(from, Direction::Forward));
        match iter.next() {
            Some(item) => {
                let (key, value) = item.map_err(storage)?;
                Ok(Some((key.into_vec(), value.into_vec())))
            }
            None => Ok(None),
        }
    }

    /// The values of many keys in one call (RocksDB MultiGet).
    pub fn multi_get(&self, family: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let cf = self.family(family)?;
        self.db
            .multi_get_cf(keys.iter().map(|k| (cf, k.as_slice())))
            .into_iter()
            .map(|r| r.map_err(storage))
            .collect()
    }

    /// How many keys a family holds, counted exactly by a scan (for reports and tests,
    /// not for a hot path).
    pub fn count_keys(&self, family: &str) -> Result<u64> {
        let mut n = 0;
        for item in self.db.iterator_cf(self.family(family)?, IteratorMode::Start) {
            item.map_err(storage)?;
            n += 1;
        }
        Ok(n)
    }

    /// Flushes every family's memtable and compacts all of its files, so deleted keys
    /// and overwritten values no longer take space (RocksDB does this by itself over
    /// time; this does it now, e.g. before measuring the disk).
    pub fn compact(&self) -> Result<()> {
        let mut options = rocksdb::CompactOptions::default();
        // Rewrite the last level too: it is where deleted rows wait for their tombstones.
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for name in FAMILIES {
            let cf = self.family(name)?;
            self.db.flush_cf(cf).map_err(storage)?;
            self.db.compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &options);
        }
        Ok(())
    }

    /// The column families, in a fixed order.
    pub fn families() -> &'static [&'static str] {
        &FAMILIES
    }

    pub fn meta_i64(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.meta_u64(name)?.map(|v| v as i64))
    }

    /// Applies a batch atomically and (unless turned off for group commit) syncs the
    /// write-ahead log before returning.
    pub fn write(&self, batch: StoreBatch) -> Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync_writes);
        self.db.write_opt(batch.inner, &options).map_err(storage)
    }

    pub fn batch(&self) -> StoreBatch<'_> {
        StoreBatch { store: self, inner: WriteBatch::default() }
    }
}

/// The changes of one statement, applied together by [`Store::write`].
pub struct StoreBatch<'a> {
    store: &'a Store,
    inner: WriteBatch,
}

impl StoreBatch<'_> {
    pub fn put(&mut self, family: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put_cf(self.store.family(family)?, key, value);
        Ok(())
    }

    pub fn delete(&mut self, family: &str, key: &[u8]) -> Result<()> {
        self.inner.delete_cf(self.store.family(family)?, key);
        Ok(())
    }

    /// Deletes every key from `start` (included) to `end` (excluded).
    pub fn delete_range(&mut self, family: &str, start: &[u8], end: &[u8]) -> Result<()> {
        self.inner.delete_range_cf(self.store.family(family)?, start, end);
        Ok(())
    }

    /// Deletes every key that starts with `prefix`.
    pub fn delete_prefix(&mut self, family: &str, prefix: &[u8]) -> Result<()> {
        let end = codec::prefix_end(prefix);
        let cf = self.store.family(family)?;
        match end {
            Some(end) => self.inner.delete_range_cf(cf, prefix, end.as_slice()),
            None => {
                for (key, _) in self.store.scan_prefix(family, prefix)? {
                    self.inner.delete_cf(cf, key);
                }
            }
        }
        Ok(())
    }

    pub fn put_u64(&mut self, family: &str, key: &[u8], value: u64) -> Result<()> {
        self.put(family, key, &value.to_be_bytes())
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
