//! What an operator sees during one processing step: the step's instant and the state
//! store, read through the step's own writes.

use std::collections::BTreeMap;
use std::ops::Bound;

use segstream_state::{Store, StoreBatch};
use segstream_types::{Result, Timestamp};

/// One family's writes of a step, in key order; `None` is a deletion.
type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// One processing step's view of the store. Writes are kept here, in key order per
/// family, and read back by later operators of the same step (and by later steps
/// sharing the batch); [`StepContext::write_to`] hands them to one atomic write batch.
pub struct StepContext<'s> {
    pub now: Timestamp,
    store: &'s Store,
    /// Per family: a handful of families, so a short list beats hashing the name.
    writes: Vec<(&'static str, Writes)>,
    /// Puts of fresh keys no one reads back within the step (a stream's new events, whose
    /// keys end with their arrival number): kept out of the ordered map, which is per-row
    /// work they do not need.
    appends: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
}

impl<'s> StepContext<'s> {
    pub fn new(store: &'s Store, now: Timestamp) -> Self {
        Self { now, store, writes: Vec::new(), appends: Vec::new() }
    }

    pub fn store(&self) -> &'s Store {
        self.store
    }

    fn family(&self, family: &str) -> Option<&Writes> {
        self.writes.iter().find(|(f, _)| *f == family).map(|(_, w)| w)
    }

    fn family_mut(&mut self, family: &'static str) -> &mut Writes {
        match self.writes.iter().position(|(f, _)| *f == family) {
            Some(i) => &mut self.writes[i].1,
            None => {
                self.writes.push((family, BTreeMap::new()));
                &mut self.writes.last_mut().expect("just pushed").1
            }
        }
    }

    /// This step's write of `key`: `Some(None)` when the step deleted it, `None` when
    /// the step has not touched it.
    pub fn written(&self, family: &str, key: &[u8]) -> Option<Option<&[u8]>> {
        self.family(family).and_then(|w| w.get(key)).map(|v| v.as_deref())
    }

    /// This step's writes of `family` from `from` on, in key order, deletions included.
    pub fn written_from<'a>(
        &'a self,
        family: &str,
        from: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        self.family(family)
            .into_iter()
            .flat_map(move |w| w.range::<[u8], _>((Bound::Included(from), Bound::Unbounded)))
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    pub fn get(&self, family: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.written(family, key) {
            Some(value) => Ok(value.map(<[u8]>::to_vec)),
            None => self.store.get(family, key),
        }
    }

    /// Values of many keys: this step's writes first, the rest with one MultiGet.
    pub fn get_many(&self, family: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let written = self.family(family);
        let mut out: Vec<Option<Option<Vec<u8>>>> =
            keys.iter().map(|k| written.and_then(|w| w.get(k.as_slice())).cloned()).collect();
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
        self.family_mut(family).insert(key, Some(value));
    }

    /// Puts a key that is new and that nothing reads back during this step (see
    /// `appends`); it is written with the step's other writes.
    pub fn append(&mut self, family: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.appends.push((family, key, value));
    }

    pub fn delete(&mut self, family: &'static str, key: Vec<u8>) {
        self.family_mut(family).insert(key, None);
    }

    /// Keys and values with this prefix: the store's, overlaid with this step's writes.
    pub fn scan_prefix(&self, family: &'static str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let stored = self.store.scan_prefix(family, prefix)?;
        let Some(written) = self.family(family) else { return Ok(stored) };
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            stored.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (key, value) in written.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            merged.insert(key.clone(), value.clone());
        }
        Ok(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    pub fn has_writes(&self) -> bool {
        !self.appends.is_empty() || self.writes.iter().any(|(_, w)| !w.is_empty())
    }

    /// Moves every write into `batch`.
    pub fn write_to(self, batch: &mut StoreBatch<'_>) -> Result<()> {
        for (family, writes) in self.writes {
            batch.write_family(family, writes.into_iter())?;
        }
        let mut appends = self.appends;
        // Appends come grouped by family (one relation per step); one call per family.
        appends.sort_by_key(|(family, _, _)| *family);
        let mut appends = appends.into_iter().peekable();
        while let Some(&(family, _, _)) = appends.peek() {
            let group =
                std::iter::from_fn(|| appends.next_if(|a| a.0 == family).map(|(_, k, v)| (k, Some(v))));
            batch.write_family(family, group)?;
        }
        Ok(())
    }
}
