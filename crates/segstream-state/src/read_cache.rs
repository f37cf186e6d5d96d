//! Hot state in memory: the values of recently read and written keys of the families read
//! by key on every step and kept as bytes (`meta`; see [`ReadCache::FAMILIES`]), so a key
//! touched again soon is not searched for in RocksDB again (a memtable search or a block
//! read costs microseconds; a hash look-up here, tens of nanoseconds).
//!
//! Bounded: each family has a fixed share of the budget, and its entries live in two
//! generations. New and re-used entries go into the young one; when it passes half the
//! family's share, the old generation is dropped and the young one becomes old. A key read
//! or written within the last half share's worth of entries is therefore always in memory,
//! and memory never exceeds the budget (the byte count includes an estimate of each entry's
//! overhead). This is an approximate LRU with no
//! bookkeeping on a hit beyond moving an old entry to the young generation. Keys that
//! fell out are read back from RocksDB, in one MultiGet per operator and step.
//!
//! Entries are exact. Every successful write updates the keys it wrote; a range delete
//! or a failed write clears what it might have touched. A reader that found a key
//! missing reads RocksDB and then stores what it read only if no write happened in
//! between (the epoch), so a slow reader cannot put back a value a write replaced.

use std::collections::HashMap;

/// How many bytes of keys and values the cache holds at most, by default.
pub const DEFAULT_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// What an entry costs beyond its key and value bytes: the map slot, two vector headers
/// and the allocator's rounding, roughly.
const ENTRY_OVERHEAD: usize = 96;

/// One cached value: `None` records that the key is absent from the store.
type Value = Option<Vec<u8>>;

#[derive(Default)]
struct Generation {
    entries: HashMap<Vec<u8>, Value, crate::key_hash::KeyHash>,
    bytes: usize,
}

fn entry_bytes(key: &[u8], value: &Value) -> usize {
    cost(key.len(), value)
}

fn cost(key_len: usize, value: &Value) -> usize {
    key_len + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

/// The cache of one family.
#[derive(Default)]
struct FamilyCache {
    young: Generation,
    old: Generation,
}

/// The cache of every cached family, indexed by the family's position in
/// [`ReadCache::FAMILIES`].
pub(crate) struct ReadCache {
    families: Vec<FamilyCache>,
    /// Bytes one generation of each family may hold before it is retired.
    generation_budget: Vec<usize>,
    /// Incremented by every write: a reader compares it before and after its RocksDB read.
    epoch: u64,
    hits: u64,
    misses: u64,
}

impl ReadCache {
    /// The families cached, with their share of the budget in percent: what is read by
    /// key on every step and kept as bytes. Meta holds the change logs' sequence numbers
    /// and the clock. Operator state and members are not cached: their operators hold
    /// them as typed values (`StateTable`) and read the store only for a key they do not
    /// hold, which a copy here would rarely have (measured: 0.04% hits at 10M users, 0.7%
    /// with the 105 segments, while every miss filled the cache). Rows are read by scans
    /// (backfill, queries), change logs by position, timers by range: none by key again
    /// soon.
    pub(crate) const FAMILIES: [(&'static str, usize); 1] = [(crate::CF_META, 100)];

    pub(crate) fn new(budget_bytes: usize) -> Self {
        let families = Self::FAMILIES.iter().map(|_| FamilyCache::default()).collect();
        // Two generations per family share the family's part of the budget.
        let generation_budget =
            Self::FAMILIES.iter().map(|(_, percent)| budget_bytes / 100 * percent / 2).collect();
        Self { families, generation_budget, epoch: 0, hits: 0, misses: 0 }
    }

    pub(crate) fn family_index(family: &str) -> Option<usize> {
        Self::FAMILIES.iter().position(|(f, _)| *f == family)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The cached value of `key`: `Some(None)` when the key is known to be absent,
    /// `None` when the cache does not know.
    pub(crate) fn get(&mut self, family: usize, key: &[u8]) -> Option<Value> {
        let cache = &mut self.families[family];
        if let Some(value) = cache.young.entries.get(key) {
            self.hits += 1;
            return Some(value.clone());
        }
        match cache.old.entries.remove_entry(key) {
            Some((key, value)) => {
                self.hits += 1;
                cache.old.bytes -= entry_bytes(&key, &value);
                self.insert_young(family, key, value.clone());
                Some(value)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Stores what a reader found in RocksDB, unless a write happened since the reader
    /// took `epoch` (the value it read may already be replaced).
    pub(crate) fn fill(&mut self, family: usize, epoch: u64, key: Vec<u8>, value: Value) {
        if epoch == self.epoch {
            self.insert_young(family, key, value);
        }
    }

    /// A successful write of `key` (`None`: a deletion).
    pub(crate) fn written(&mut self, family: usize, key: Vec<u8>, value: Value) {
        let cache = &mut self.families[family];
        if let Some(old) = cache.old.entries.remove(&key) {
            cache.old.bytes -= entry_bytes(&key, &old);
        }
        self.insert_young(family, key, value);
    }

    /// Drops `key`, if held: its newest value is kept elsewhere (an operator's typed
    /// state), and a copy here would go stale.
    pub(crate) fn forget(&mut self, family: usize, key: &[u8]) {
        let cache = &mut self.families[family];
        for generation in [&mut cache.young, &mut cache.old] {
            if let Some((key, value)) = generation.entries.remove_entry(key) {
                generation.bytes -= entry_bytes(&key, &value);
            }
        }
    }

    /// Starts a write: readers that began before it must not fill what they read.
    pub(crate) fn begin_write(&mut self) {
        self.epoch += 1;
    }

    /// Forgets a family (after a range delete) or, with `None`, everything (after a
    /// failed write or a reopen, when what the store holds is not known exactly).
    pub(crate) fn clear(&mut self, family: Option<usize>) {
        self.epoch += 1;
        match family {
            Some(f) => self.families[f] = FamilyCache::default(),
            None => self.families.iter_mut().for_each(|f| *f = FamilyCache::default()),
        }
    }

    fn insert_young(&mut self, family: usize, key: Vec<u8>, value: Value) {
        let cache = &mut self.families[family];
        let key_len = key.len();
        let bytes = cost(key_len, &value);
        match cache.young.entries.insert(key, value) {
            Some(previous) => cache.young.bytes = cache.young.bytes - cost(key_len, &previous) + bytes,
            None => cache.young.bytes += bytes,
        }
        if cache.young.bytes > self.generation_budget[family] {
            cache.old = std::mem::take(&mut cache.young);
        }
    }

    /// Entries and bytes held, and hits and misses so far (for tests and reports).
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.families.iter().map(|f| f.young.entries.len() + f.old.entries.len()).sum(),
            bytes: self.families.iter().map(|f| f.young.bytes + f.old.bytes).sum(),
            hits: self.hits,
            misses: self.misses,
        }
    }
}

/// What the hot-state cache holds and how well it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}
