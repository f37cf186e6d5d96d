//! State changed since the last checkpoint, held in memory in front of RocksDB.
//!
//! With the journal making each step durable, a step's writes need not reach RocksDB
//! one by one: they land here, and a checkpoint moves all of them to RocksDB in one
//! sorted batch. A read asks here first: a key written since the checkpoint, or deleted
//! (by key or by a range), is answered from memory; any other key is what RocksDB holds.
//!
//! ```text
//!   read ──> DirtyState (changed since the checkpoint) ──> read cache ──> RocksDB
//!   step ──> DirtyState                 checkpoint: DirtyState ──one batch──> RocksDB
//! ```
//!
//! The families scanned in key order on hot paths (timers, change logs, rows) are kept
//! sorted (a `BTreeMap`), because scans read them merged with RocksDB's sorted iterator.
//! The families read and written by key (operator state, members, meta) are hashed: a
//! step reads and writes them once or more per row, and a hash look-up costs a fraction
//! of a tree walk over a million keys. A scan of a hashed family (rare: a DDL step, a
//! member listing) sorts what falls in its range.
//!
//! A key written first by a step that found it absent everywhere ([`DirtyState::absent`])
//! is not in RocksDB: deleting it again before the checkpoint just forgets it, so a timer
//! set and fired, or a member that entered and left, between two checkpoints never
//! reaches RocksDB, not even as a deletion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use segstream_types::Result;

use crate::key_hash::KeyHash;

/// A value written since the checkpoint: `None` is a deletion.
pub(crate) type Value = Option<Vec<u8>>;

/// What this layer says about a key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Dirty<'a> {
    /// Written since the checkpoint.
    Value(&'a [u8]),
    /// Deleted since the checkpoint, by key or by a range.
    Deleted,
    /// Not changed since the checkpoint: RocksDB has it.
    Clean,
}

/// One family's changes since the checkpoint: the ranges deleted, in order, and the
/// entries written or deleted (in key order for an ordered family).
pub(crate) struct FamilyChanges<'a> {
    pub(crate) family: usize,
    pub(crate) ranges: &'a [(Vec<u8>, Vec<u8>)],
    pub(crate) entries: Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Value)> + 'a>,
}

/// One family's entries.
#[derive(Clone)]
enum Entries {
    Ordered(BTreeMap<Vec<u8>, Value>),
    Hashed(HashMap<Vec<u8>, Value, KeyHash>),
}

impl Entries {
    fn get(&self, key: &[u8]) -> Option<&Value> {
        match self {
            Self::Ordered(map) => map.get(key),
            Self::Hashed(map) => map.get(key),
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Value> {
        match self {
            Self::Ordered(map) => map.remove(key),
            Self::Hashed(map) => map.remove(key),
        }
    }

    fn insert(&mut self, key: Vec<u8>, value: Value) -> Option<Value> {
        match self {
            Self::Ordered(map) => map.insert(key, value),
            Self::Hashed(map) => map.insert(key, value),
        }
    }

    /// The entries from `start` (included) to `upper`, in key order.
    fn range<'a>(
        &'a self,
        start: &'a [u8],
        upper: Bound<&'a [u8]>,
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Value)> + 'a> {
        match self {
            Self::Ordered(map) => Box::new(map.range::<[u8], _>((Bound::Included(start), upper))),
            Self::Hashed(map) => {
                let below = |key: &[u8]| match upper {
                    Bound::Excluded(end) => key < end,
                    Bound::Included(end) => key <= end,
                    Bound::Unbounded => true,
                };
                let mut inside: Vec<_> =
                    map.iter().filter(|(k, _)| k.as_slice() >= start && below(k)).collect();
                inside.sort_unstable_by(|a, b| a.0.cmp(b.0));
                Box::new(inside.into_iter())
            }
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&Vec<u8>, &Value)> + '_> {
        match self {
            Self::Ordered(map) => Box::new(map.iter()),
            Self::Hashed(map) => Box::new(map.iter()),
        }
    }

    fn clear(&mut self) {
        match self {
            Self::Ordered(map) => map.clear(),
            Self::Hashed(map) => map.clear(),
        }
    }
}

/// What a changed entry costs beyond its bytes: the tree slot and two vector headers.
const ENTRY_OVERHEAD: usize = 80;

/// The entries of every family changed since the last checkpoint.
pub(crate) struct DirtyState {
    families: Vec<Entries>,
    /// Ranges deleted since the checkpoint, `[start, end)`, per family. An entry written
    /// after a range was deleted is in `families`, which is asked first.
    ranges: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Per family, keys RocksDB did not hold at the last checkpoint (see the module
    /// documentation).
    absent: Vec<HashSet<Vec<u8>, KeyHash>>,
    bytes: usize,
}

fn cost(key: &[u8], value: &Value) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

impl DirtyState {
    /// Every family ordered.
    pub(crate) fn new(families: usize) -> Self {
        Self {
            families: vec![Entries::Ordered(BTreeMap::new()); families],
            ranges: vec![Vec::new(); families],
            absent: (0..families).map(|_| HashSet::with_hasher(KeyHash::default())).collect(),
            bytes: 0,
        }
    }

    /// The same, with the families in `hashed` kept in hash maps (read and written by key;
    /// scanned rarely).
    pub(crate) fn hashing(mut self, hashed: &[usize]) -> Self {
        for &family in hashed {
            self.families[family] = Entries::Hashed(HashMap::with_hasher(KeyHash::default()));
        }
        self
    }

    pub(crate) fn get(&self, family: usize, key: &[u8]) -> Dirty<'_> {
        match self.families[family].get(key) {
            Some(Some(value)) => Dirty::Value(value),
            Some(None) => Dirty::Deleted,
            None if self.in_deleted_range(family, key) => Dirty::Deleted,
            None => Dirty::Clean,
        }
    }

    fn in_deleted_range(&self, family: usize, key: &[u8]) -> bool {
        self.ranges[family].iter().any(|(start, end)| key >= start.as_slice() && key < end.as_slice())
    }

    /// Records a write (`None`: a deletion). `absent`: the step found the key absent
    /// from this layer and RocksDB before writing it; if this layer has no entry for it
    /// either, RocksDB does not hold it (an entry here, even a deletion, may stand for a
    /// key RocksDB holds).
    pub(crate) fn write(&mut self, family: usize, key: Vec<u8>, value: Value, absent: bool) {
        if value.is_none()
            && (self.absent[family].contains(&key) || absent && self.families[family].get(&key).is_none())
        {
            // Not in RocksDB: no deletion to write, the entry just goes. A range deleted
            // since, if the key is in one, is written by itself.
            if let Some(previous) = self.families[family].remove(&key) {
                self.bytes -= cost(&key, &previous);
            }
            return;
        }
        let key_len = key.len();
        self.bytes += cost(&key, &value);
        let absent_key = absent.then(|| key.clone());
        match self.families[family].insert(key, value) {
            Some(previous) => self.bytes -= key_len + previous.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD,
            None => {
                if let Some(key) = absent_key {
                    self.absent[family].insert(key);
                }
            }
        }
    }

    /// Records the deletion of every key in `[start, end)`.
    pub(crate) fn delete_range(&mut self, family: usize, start: &[u8], end: &[u8]) {
        if start >= end {
            return;
        }
        let bytes = &mut self.bytes;
        match &mut self.families[family] {
            Entries::Ordered(map) => {
                let inside: Vec<Vec<u8>> = map
                    .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in inside {
                    if let Some(value) = map.remove(&key) {
                        *bytes -= cost(&key, &value);
                    }
                }
            }
            Entries::Hashed(map) => map.retain(|key, value| {
                let inside = key.as_slice() >= start && key.as_slice() < end;
                if inside {
                    *bytes -= cost(key, value);
                }
                !inside
            }),
        }
        self.bytes += start.len() + end.len() + ENTRY_OVERHEAD;
        self.ranges[family].push((start.to_vec(), end.to_vec()));
    }

    /// Bytes held (keys, values and an estimate of overhead): a checkpoint comes early
    /// when this nears the state budget.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keys and values from `start` (included) to `end` (excluded; `None`: the end of
    /// the family), at most `limit`: `stored` (RocksDB's sorted scan of the same range)
    /// with this layer's changes applied.
    pub(crate) fn merge_scan(
        &self,
        family: usize,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        stored: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut changed = self.families[family].range(start, upper).peekable();
        let mut stored = stored.peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let stored_key = match stored.peek() {
                Some(Ok((key, _))) => Some(key.as_slice()),
                Some(Err(_)) => return Err(stored.next().and_then(Result::err).expect("an error")),
                None => None,
            };
            let take_changed = match (changed.peek(), stored_key) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((changed_key, _)), Some(stored_key)) => changed_key.as_slice() <= stored_key,
            };
            if take_changed {
                let (key, value) = changed.next().expect("peeked");
                // The changed entry replaces a stored one with the same key.
                if stored_key == Some(key.as_slice()) {
                    stored.next();
                }
                if let Some(value) = value {
                    out.push((key.clone(), value.clone()));
                }
            } else {
                let (key, value) = stored.next().expect("peeked")?;
                if !self.in_deleted_range(family, &key) {
                    out.push((key, value));
                }
            }
        }
        Ok(out)
    }

    /// Everything changed, per family, for a checkpoint to write (the ranges first).
    pub(crate) fn changes(&self) -> impl Iterator<Item = FamilyChanges<'_>> {
        self.families.iter().enumerate().map(|(family, entries)| FamilyChanges {
            family,
            ranges: self.ranges[family].as_slice(),
            entries: entries.iter(),
        })
    }

    /// Forgets everything: a checkpoint wrote it to RocksDB.
    pub(crate) fn clear(&mut self) {
        self.families.iter_mut().for_each(Entries::clear);
        self.ranges.iter_mut().for_each(Vec::clear);
        self.absent.iter_mut().for_each(HashSet::clear);
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(
        dirty: &DirtyState,
        stored: &[(&str, &str)],
        start: &str,
        end: Option<&str>,
        limit: usize,
    ) -> Vec<String> {
        let stored = stored.iter().map(|(k, v)| Ok((k.as_bytes().to_vec(), v.as_bytes().to_vec())));
        let stored: Vec<_> = stored
            .filter(|r: &Result<(Vec<u8>, Vec<u8>)>| {
                let key = &r.as_ref().unwrap().0;
                key.as_slice() >= start.as_bytes() && end.is_none_or(|e| key.as_slice() < e.as_bytes())
            })
            .collect();
        dirty
            .merge_scan(0, start.as_bytes(), end.map(str::as_bytes), limit, stored.into_iter())
            .unwrap()
            .into_iter()
            .map(|(k, v)| format!("{}={}", String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    /// Both kinds of family, ordered and hashed, behave the same.
    fn both() -> [DirtyState; 2] {
        [DirtyState::new(2), DirtyState::new(2).hashing(&[0])]
    }

    #[test]
    fn reads_see_writes_deletions_and_ranges_in_order() {
        for dirty in both() {
            reads_see_writes_deletions_and_ranges(dirty);
        }
    }

    fn reads_see_writes_deletions_and_ranges(mut dirty: DirtyState) {
        assert_eq!(dirty.get(0, b"a"), Dirty::Clean);
        dirty.write(0, b"a".to_vec(), Some(b"1".to_vec()), false);
        dirty.write(0, b"b".to_vec(), None, false);
        assert_eq!(dirty.get(0, b"a"), Dirty::Value(b"1"));
        assert_eq!(dirty.get(0, b"b"), Dirty::Deleted);
        // A range deleted, then a key in it written again: the write wins.
        dirty.delete_range(0, b"a", b"c");
        assert_eq!(dirty.get(0, b"a"), Dirty::Deleted);
        assert_eq!(dirty.get(0, b"bz"), Dirty::Deleted);
        assert_eq!(dirty.get(0, b"c"), Dirty::Clean);
        dirty.write(0, b"b".to_vec(), Some(b"2".to_vec()), false);
        assert_eq!(dirty.get(0, b"b"), Dirty::Value(b"2"));
        assert!(dirty.bytes() > 0);
        dirty.clear();
        assert_eq!((dirty.bytes(), dirty.get(0, b"a")), (0, Dirty::Clean));
    }

    #[test]
    fn scans_merge_changes_over_what_is_stored() {
        for dirty in both() {
            scans_merge_changes(dirty);
        }
    }

    fn scans_merge_changes(mut dirty: DirtyState) {
        let stored = [("a", "s"), ("b", "s"), ("c", "s"), ("d", "s"), ("f", "s")];
        assert_eq!(scan(&dirty, &stored, "b", Some("e"), 10), ["b=s", "c=s", "d=s"]);
        dirty.write(0, b"b".to_vec(), Some(b"new".to_vec()), false); // replaces a stored key
        dirty.write(0, b"bb".to_vec(), Some(b"new".to_vec()), false); // between stored keys
        dirty.write(0, b"c".to_vec(), None, false); // deletes a stored key
        dirty.write(0, b"e".to_vec(), Some(b"new".to_vec()), false); // at the excluded end
        assert_eq!(scan(&dirty, &stored, "b", Some("e"), 10), ["b=new", "bb=new", "d=s"]);
        assert_eq!(scan(&dirty, &stored, "", None, 10), ["a=s", "b=new", "bb=new", "d=s", "e=new", "f=s"]);
        // The limit counts what the reader gets, not what was skipped.
        assert_eq!(scan(&dirty, &stored, "b", None, 3), ["b=new", "bb=new", "d=s"]);
        dirty.delete_range(0, b"d", b"g");
        dirty.write(0, b"e".to_vec(), Some(b"again".to_vec()), false);
        assert_eq!(scan(&dirty, &stored, "", None, 10), ["a=s", "b=new", "bb=new", "e=again"]);
    }

    #[test]
    fn a_key_absent_from_rocksdb_leaves_no_deletion_behind() {
        for dirty in both() {
            absent_keys(dirty);
        }
    }

    fn absent_keys(mut dirty: DirtyState) {
        let changed = |d: &DirtyState| -> Vec<(Vec<u8>, Value)> {
            d.changes()
                .filter(|c| c.family == 0)
                .flat_map(|c| c.entries.map(|(k, v)| (k.clone(), v.clone())))
                .collect()
        };
        // Put after being found absent, then deleted: nothing to write, and reads say absent.
        dirty.write(0, b"t".to_vec(), Some(b"1".to_vec()), true);
        dirty.write(0, b"t".to_vec(), Some(b"2".to_vec()), false);
        dirty.write(0, b"t".to_vec(), None, false);
        assert_eq!(dirty.get(0, b"t"), Dirty::Clean);
        assert!(changed(&dirty).is_empty());
        // A key already changed here is not taken as absent from RocksDB (it may be a
        // deletion of a stored key).
        dirty.write(0, b"s".to_vec(), None, false);
        dirty.write(0, b"s".to_vec(), Some(b"1".to_vec()), true);
        dirty.write(0, b"s".to_vec(), None, false);
        assert_eq!(changed(&dirty), vec![(b"s".to_vec(), None)]);
        // Inside a deleted range, the range still reads as deleted.
        dirty.delete_range(0, b"r", b"rz");
        dirty.write(0, b"ra".to_vec(), Some(b"1".to_vec()), true);
        dirty.write(0, b"ra".to_vec(), None, false);
        assert_eq!(dirty.get(0, b"ra"), Dirty::Deleted);
        // Found absent and deleted within one step: nothing at all.
        dirty.write(0, b"u".to_vec(), None, true);
        assert_eq!(dirty.get(0, b"u"), Dirty::Clean);
        // A checkpoint forgets what was absent.
        dirty.clear();
        dirty.write(0, b"t".to_vec(), None, false);
        assert_eq!(changed(&dirty), vec![(b"t".to_vec(), None)]);
    }

    #[test]
    fn bytes_follow_what_is_held() {
        for dirty in [DirtyState::new(2), DirtyState::new(2).hashing(&[1])] {
            bytes_follow(dirty);
        }
    }

    fn bytes_follow(mut dirty: DirtyState) {
        dirty.write(1, b"key".to_vec(), Some(vec![0; 100]), false);
        let one = dirty.bytes();
        assert_eq!(one, 3 + 100 + ENTRY_OVERHEAD);
        dirty.write(1, b"key".to_vec(), Some(vec![0; 10]), false);
        assert_eq!(dirty.bytes(), 3 + 10 + ENTRY_OVERHEAD);
        dirty.delete_range(1, b"k", b"l");
        assert_eq!(dirty.bytes(), 2 + ENTRY_OVERHEAD);
    }
}
