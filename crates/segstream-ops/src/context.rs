//! What an operator sees during one processing step: the step's instant and the state
//! store, read through the step's own writes.

use std::collections::BTreeMap;

use segstream_state::{Store, StoreBatch};
use segstream_types::{Result, Timestamp};

/// One processing step's view of the store. Writes are kept here, in key order, and
/// read back by later operators of the same step (and by later steps sharing the
/// batch); [`StepContext::write_to`] hands them to one atomic write batch.
pub struct StepContext<'s> {
    pub now: Timestamp,
    store: &'s Store,
    writes: BTreeMap<(&'static str, Vec<u8>), Option<Vec<u8>>>,
}

impl<'s> StepContext<'s> {
    pub fn new(store: &'s Store, now: Timestamp) -> Self {
        Self { now, store, writes: BTreeMap::new() }
    }

    pub fn store(&self) -> &'s Store {
        self.store
    }

    pub fn get(&self, family: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.get(&(family, key.to_vec())) {
            Some(value) => Ok(value.clone()),
            None => self.store.get(family, key),
        }
    }

    /// Values of many keys: this step's writes first, the rest with one MultiGet.
    pub fn get_many(&self, family: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out: Vec<Option<Option<Vec<u8>>>> =
            keys.iter().map(|k| self.writes.get(&(family, k.clone())).cloned()).collect();
        let missing: Vec<Vec<u8>> =
            keys.iter().zip(&out).filter(|(_, v)| v.is_none()).map(|(k, _)| k.clone()).collect();
        if !missing.is_empty() {
            let mut fetched = self.store.multi_get(family, &missing)?.into_iter();
            for slot in out.iter_mut().filter(|v| v.is_none()) {
                *slot = Some(fetched.next().flatten());
            }
        }
        Ok(out.into_iter().map(Option::flatten).collect())
    }

    pub fn put(&mut self, family: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert((family, key), Some(value));
    }

    pub fn delete(&mut self, family: &'static str, key: Vec<u8>) {
        self.writes.insert((family, key), None);
    }

    /// Keys and values with this prefix: the store's, overlaid with this step's writes.
    pub fn scan_prefix(&self, family: &'static str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            self.store.scan_prefix(family, prefix)?.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for ((f, key), value) in self.writes.range((family, prefix.to_vec())..) {
            if *f != family || !key.starts_with(prefix) {
                break;
            }
            merged.insert(key.clone(), value.clone());
        }
        Ok(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    /// The first key at or after `from` and its value, this step's writes included
    /// (and its deletions skipped).
    pub fn first_from(&self, family: &'static str, from: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut stored = self.store.first_from(family, from)?;
        while let Some((key, _)) = &stored {
            match self.writes.get(&(family, key.clone())) {
                Some(None) => {
                    let mut next = key.clone();
                    next.push(0);
                    stored = self.store.first_from(family, &next)?;
                }
                _ => break,
            }
        }
        let written = self
            .writes
            .range((family, from.to_vec())..)
            .take_while(|((f, _), _)| *f == family)
            .find_map(|((_, k), v)| v.as_ref().map(|v| (k.clone(), v.clone())));
        Ok(match (stored, written) {
            (Some(s), Some(w)) => Some(if w.0 <= s.0 { w } else { s }),
            (s, w) => s.or(w),
        })
    }

    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Moves every write into `batch`.
    pub fn write_to(self, batch: &mut StoreBatch<'_>) -> Result<()> {
        for ((family, key), value) in self.writes {
            match value {
                Some(value) => batch.put(family, &key, &value)?,
                None => batch.delete(family, &key)?,
            }
        }
        Ok(())
    }
}
