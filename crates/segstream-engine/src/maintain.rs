//! Keeping segments up to date: each step runs the new deltas through every segment
//! that reads them, parents before the segments that read them, and commits operator
//! state, membership, the change log and the input in one write batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use segstream_ops::state_table::CheckpointedState;
use segstream_ops::timer_queue::{DueTimer, TimerQueue};
use segstream_ops::{ChangeKind, MemberChange, SegmentDataflow, StepContext, StepInput};
use segstream_sql::ast::ObjectKind;
use segstream_state::codec::rows_to_batch;
use segstream_state::{CF_CATALOG, CF_CHANGES, CF_MEMBERS, CF_META, CF_STATE};
use segstream_types::{DeltaBatch, Error, Result, Timestamp};

use crate::change_log::{decode_change, key_text, log_key, ChangeLog, ChangeRecord};
use crate::engine::Engine;
use crate::journal_record::JournalInput;
use crate::step::Step;

pub(crate) const META_CLOCK: &str = "clock";

/// Where `meta` records the layout of join state, and the layout this version writes:
/// each side's rows under one join key as one value.
const META_JOIN_LAYOUT: &str = "join_layout";
const JOIN_ARRANGEMENT_PER_KEY: u64 = 2;

impl Engine {
    /// Builds the running operators of every segment that can be maintained, parents first.
    /// A segment whose maintained state was never started (its creation was cut short
    /// before the backfill committed) is backfilled now.
    pub(crate) fn build_dataflows(&mut self) -> Result<()> {
        self.dataflows.clear();
        for name in self.segment_order().iter().cloned() {
            match self.store.meta_u64(&log_key(&name))? {
                Some(log_id) => {
                    if let Some(df) = self.dataflow_for(&name, log_id, &BTreeMap::new())? {
                        self.dataflows.insert(name, df);
                    }
                }
                None => self.rebuild_segments(std::slice::from_ref(&name), None)?,
            }
        }
        Ok(())
    }

    /// Rewrites join state kept one row per key (data directories written before join
    /// arrangements became one value per key) once, at open; a marker in `meta` says it
    /// is done.
    pub(crate) fn upgrade_join_state(&mut self) -> Result<()> {
        if self.store.meta_u64(META_JOIN_LAYOUT)? == Some(JOIN_ARRANGEMENT_PER_KEY) {
            return Ok(());
        }
        // At open, before the journal starts: written straight to RocksDB.
        let mut step = Step::new(&self.store, self.clock.manual, None);
        for df in self.dataflows.values() {
            df.upgrade_layout(&mut step.cx)?;
        }
        step.cx.put(
            CF_META,
            META_JOIN_LAYOUT.as_bytes().to_vec(),
            JOIN_ARRANGEMENT_PER_KEY.to_be_bytes().to_vec(),
        );
        self.commit(step)
    }

    /// Segments in an order where each comes after the segments it reads. Every step
    /// needs it; it is computed again only when the catalog has changed.
    pub(crate) fn segment_order(&self) -> std::sync::Arc<Vec<String>> {
        let generation = self.catalog.generation();
        if let Ok(memo) = self.segment_order_memo.lock() {
            if let Some((at, order)) = memo.as_ref() {
                if *at == generation {
                    return std::sync::Arc::clone(order);
                }
            }
        }
        let order = std::sync::Arc::new(self.compute_segment_order());
        if let Ok(mut memo) = self.segment_order_memo.lock() {
            *memo = Some((generation, std::sync::Arc::clone(&order)));
        }
        order
    }

    fn compute_segment_order(&self) -> Vec<String> {
        let mut order = Vec::new();
        let mut placed = std::collections::HashSet::new();
        let segments: Vec<_> = self.catalog.list(ObjectKind::Segment).map(|r| r.name.clone()).collect();
        while order.len() < segments.len() {
            let before = order.len();
            for name in &segments {
                if placed.contains(name) {
                    continue;
                }
                let ready = self.catalog.get(name).is_some_and(|r| {
                    r.reads.iter().all(|read| {
                        self.catalog.get(read).map(|p| p.kind != ObjectKind::Segment).unwrap_or(true)
                            || placed.contains(read)
                    })
                });
                if ready {
                    placed.insert(name.clone());
                    order.push(name.clone());
                }
            }
            if order.len() == before {
                break; // a cycle cannot be created; stop rather than loop
            }
        }
        order
    }

    /// The dataflow of a segment, if all it uses can be maintained (`rebuilt` holds
    /// parents rebuilt in the same step).
    fn dataflow_for(
        &self,
        name: &str,
        log_id: u64,
        rebuilt: &BTreeMap<String, SegmentDataflow>,
    ) -> Result<Option<SegmentDataflow>> {
        let Some(relation) = self.catalog.get(name) else { return Ok(None) };
        let Some(plan) = &relation.plan else { return Ok(None) };
        let parents_maintained = relation.reads.iter().all(|r| {
            self.catalog.get(r).map(|p| p.kind != ObjectKind::Segment).unwrap_or(true)
                || self.dataflows.contains_key(r)
                || rebuilt.contains_key(r)
        });
        if !parents_maintained {
            return Ok(None);
        }
        let segment_id = self.id_of(name)?;
        let schema_of = |r: &str| self.catalog.get(r).map(|rel| Arc::clone(&rel.schema));
        SegmentDataflow::new(name, segment_id, log_id, plan, &schema_of, &self.timers)
    }

    /// Whether a segment's membership is kept incrementally (its plan has only
    /// operators the engine maintains).
    pub fn is_maintained(&self, segment: &str) -> bool {
        self.dataflows.contains_key(segment)
    }

    /// Runs `relations` (deltas by relation name) and fired timers through every
    /// maintained segment, parents first; a segment's changes become the delta its
    /// readers see in the same step. `erasing` is the key a `FORGET KEY` step erases:
    /// its exits are logged with the reason `erased`.
    pub(crate) fn propagate(
        &self,
        mut relations: HashMap<String, DeltaBatch>,
        fired: &HashMap<u64, HashMap<u32, Vec<&DueTimer>>>,
        cx: &mut StepContext,
        erasing: Option<&str>,
    ) -> Result<()> {
        for name in self.segment_order().iter() {
            let Some(df) = self.dataflows.get(name) else { continue };
            let timers = fired.get(&df.segment_id);
            let touched: HashMap<String, DeltaBatch> =
                df.reads().iter().filter_map(|r| relations.get(r).map(|d| (r.clone(), d.clone()))).collect();
            if touched.is_empty() && timers.is_none() {
                continue;
            }
            let input =
                StepInput { relations: touched, fired: timers.cloned().unwrap_or_default(), initial: false };
            let changes = df.step(&input, cx)?;
            if !changes.is_empty() {
                ChangeLog::new(df.log_id).append(&df.output, &changes, cx, erasing)?;
                relations.insert(name.clone(), changes_as_delta(&df.output, &changes)?);
            }
        }
        Ok(())
    }

    /// Starts (or restarts) maintaining segments, parents first: each one's operator
    /// state and timers are cleared, everything it reads is run through its operators
    /// at the current clock (the backfill, the same path as live data), and the
    /// difference from the members it had is logged (all `entered` for a new segment).
    /// The definition being created, if any, is written in the same batch, so a
    /// segment is in the catalog only with its state: one step, one write batch.
    pub(crate) fn rebuild_segments(
        &mut self,
        names: &[String],
        definition: Option<CatalogWrite>,
    ) -> Result<()> {
        // A definition's step is journaled as its text; a rebuild without one happens
        // only at open, before the journal starts.
        let input = definition.as_ref().map(|d| JournalInput::Definition { text: d.text.clone() });
        let mut step = Step::new(&self.store, self.clock.now(), input);
        let cx = &mut step.cx;
        if let Some(d) = &definition {
            if let Some(old) = d.replaces {
                cx.delete(CF_CATALOG, old.to_be_bytes().to_vec());
            }
            cx.put(CF_CATALOG, d.id.to_be_bytes().to_vec(), d.text.as_bytes().to_vec());
            cx.put(CF_META, b"next_id".to_vec(), d.next_id.to_be_bytes().to_vec());
        }
        let mut rebuilt: BTreeMap<String, SegmentDataflow> = BTreeMap::new();
        for name in names {
            let log_id = match cx.get(CF_META, log_key(name).as_bytes())? {
                Some(v) => {
                    u64::from_be_bytes(v.try_into().map_err(|_| Error::storage("damaged segment log id"))?)
                }
                None => {
                    let id = self.id_of(name)?;
                    cx.put(CF_META, log_key(name).into_bytes(), id.to_be_bytes().to_vec());
                    id
                }
            };
            let previous = match self.dataflows.get(name) {
                Some(old) => {
                    delete_operator_state(cx, &self.timers, old.segment_id)?;
                    old.sink()?.members(cx)?
                }
                None => Vec::new(),
            };
            // The stored members go; the new sink starts empty (what the old one held in
            // memory goes with it).
            for (key, _) in cx.scan_prefix(CF_MEMBERS, &log_id.to_be_bytes())? {
                cx.delete(CF_MEMBERS, key);
            }
            let df = self
                .dataflow_for(name, log_id, &rebuilt)?
                .ok_or_else(|| Error::internal(format!("segment {name} cannot be maintained")))?;
            // The backfill: everything the segment reads, relation by relation, in large
            // batches through the live operators (any order gives the same result).
            // Intermediate changes are not logged: the step's change per key is the
            // difference between the members before and after.
            let mut initial = true;
            for read in df.reads() {
                let contents = self.current_contents(read, cx, &rebuilt)?;
                let total = contents.len();
                let mut done = 0;
                while done < total || (initial && total == 0) {
                    let n = self.backfill_batch.min(total - done);
                    let chunk = DeltaBatch::new(
                        contents.rows.slice(done, n),
                        contents.weights[done..done + n].to_vec(),
                    )?;
                    let relations = HashMap::from([(read.clone(), chunk)]);
                    df.step(&StepInput { relations, fired: HashMap::new(), initial }, cx)?;
                    initial = false;
                    done += n;
                    if let Some(report) = &self.progress {
                        report(&BackfillProgress {
                            segment: name.clone(),
                            relation: read.clone(),
                            rows: done,
                            total,
                        });
                    }
                }
            }
            if initial {
                // Reads nothing (constant rows only).
                df.step(&StepInput { relations: HashMap::new(), fired: HashMap::new(), initial }, cx)?;
            }
            let changes = diff_members(previous, df.sink()?.members(cx)?);
            if !changes.is_empty() {
                ChangeLog::new(log_id).append(&df.output, &changes, cx, None)?;
            }
            rebuilt.insert(name.clone(), df);
        }
        if !self.journaling {
            // Opening, before the journal starts: no checkpoint will write the new
            // operators' typed state, so it goes to RocksDB with the step.
            let mut state = Vec::new();
            for table in self.rebuilt_state(&rebuilt) {
                table.changed_entries(&mut state)?;
            }
            for (family, key, value) in state {
                match value {
                    Some(value) => step.cx.put(family, key, value),
                    None => step.cx.delete(family, key),
                }
            }
        }
        step.stamp_clock();
        self.commit_without_checkpoint(step)?;
        if !self.journaling {
            self.rebuilt_state(&rebuilt).for_each(|t| t.checkpointed());
        }
        self.dataflows.extend(rebuilt);
        self.checkpoint_if_due();
        Ok(())
    }

    /// The typed state a rebuild changes: the rebuilt segments' tables and the timers.
    fn rebuilt_state<'a>(
        &'a self,
        rebuilt: &'a BTreeMap<String, SegmentDataflow>,
    ) -> impl Iterator<Item = &'a dyn CheckpointedState> {
        rebuilt.values().flat_map(|df| df.state_tables()).chain(std::iter::once(self.timers.state()))
    }

    /// Everything a relation holds now, as insertions.
    fn current_contents(
        &self,
        name: &str,
        cx: &StepContext,
        rebuilt: &BTreeMap<String, SegmentDataflow>,
    ) -> Result<DeltaBatch> {
        let relation =
            self.catalog.get(name).ok_or_else(|| Error::internal(format!("unknown relation {name}")))?;
        let batch = match relation.kind {
            ObjectKind::Stream | ObjectKind::Table => self.stored_rows_at(relation, cx.now)?,
            ObjectKind::Segment => {
                let df = rebuilt
                    .get(name)
                    .or_else(|| self.dataflows.get(name))
                    .ok_or_else(|| Error::internal(format!("{name} is not maintained")))?;
                rows_to_batch(&df.output, &df.sink()?.members(cx)?)?
            }
        };
        Ok(DeltaBatch::inserts(batch))
    }

    /// Removes everything kept for a dropped segment (the caller drops its dataflow
    /// once the writes are committed).
    pub(crate) fn stop_maintaining(&self, name: &str, segment_id: u64, cx: &mut StepContext) -> Result<()> {
        delete_operator_state(cx, &self.timers, segment_id)?;
        if let Some(log_id) = self.store.meta_u64(&log_key(name))? {
            for family in [CF_MEMBERS, CF_CHANGES] {
                for (key, _) in cx.scan_prefix(family, &log_id.to_be_bytes())? {
                    cx.delete(family, key);
                }
            }
            cx.delete(CF_META, ChangeLog::new(log_id).seq_key());
            cx.delete(CF_META, crate::change_log_retention::first_kept_key(log_id));
        }
        cx.delete(CF_META, log_key(name).into_bytes());
        Ok(())
    }

    /// Moves the manual clock forward to `target` (as `ADVANCE TIME TO` does), firing
    /// every timer due on the way.
    pub fn advance_clock(&mut self, target: Timestamp) -> Result<()> {
        self.ready_to_write()?;
        if self.clock.mode != crate::ClockMode::Manual {
            return Err(Error::invalid_input("only the manual clock is advanced by hand"));
        }
        if target < self.clock.manual {
            return Err(Error::invalid_input(format!(
                "the clock never goes backwards: it is at {}, and {target} was asked for",
                self.clock.manual
            )));
        }
        self.advance_clock_to(target)
    }

    /// Moves the clock to `target`, firing every timer due on the way, in instant order.
    ///
    /// Timers fire in passes. A pass takes the due instants one after another as long as
    /// no member key comes up at two of them, and runs them as one step in which each key
    /// is at its own instant (`StepContext::set_key_instants`): in a segment that keeps
    /// keys apart, that is what one step per instant would do, with a step's fixed cost
    /// paid once. A timer of a segment that mixes keys (or is read by one that does) runs
    /// alone, one instant per step, as before.
    ///
    /// A pass may set new timers inside its own span (a row processed at 10:00 that now
    /// enters at 10:01, while the pass also covers 10:02). Those would fire out of order,
    /// so the pass is taken back to a savepoint and run again without the instants from
    /// the earliest such timer on. The change log is therefore the same as instant by
    /// instant: in `at` order, each change stamped with its own instant. All passes share
    /// one write batch (one WAL sync).
    pub(crate) fn advance_clock_to(&mut self, target: Timestamp) -> Result<()> {
        if target < self.clock.manual {
            return Ok(()); // the clock never goes backwards (a wall clock stepping back waits)
        }
        let mut step = Step::new(&self.store, target, Some(JournalInput::Advance { to: target.nanos() }));
        let cx = &mut step.cx;
        let clock = self.clock.manual;
        let in_passes = self.segments_firing_in_passes();
        // Timers are only ever set after the instant of the step that sets them, so the
        // next due one is after the last instant processed.
        let mut from = clock.nanos().saturating_add(1);
        let timers = &self.timers;
        let mut stats = self.timer_pass_stats;
        loop {
            let mut pass = gather_pass(timers, cx, from, target.nanos(), &in_passes)?;
            let Some(&(first, _)) = pass.instants.first() else { break };
            while let Some(early) = self.run_pass(&pass, clock, cx)? {
                // A timer set inside the pass's span: run it again, ending before it.
                cx.rollback();
                let keep = pass.instants.partition_point(|(instant, _)| *instant < early);
                pass.truncate(keep);
                stats.retried += 1;
            }
            stats.passes += 1;
            stats.instants += pass.instants.len() as u64;
            from = pass.instants.last().map_or(first, |(last, _)| *last).saturating_add(1);
        }
        // The manual clock is state; the wall clock is only written when timers fired
        // (so a restart never moves it back before what was logged).
        cx.now = target;
        if self.clock.mode == crate::ClockMode::Manual || !step.is_empty() {
            step.stamp_clock();
            self.commit(step)?;
        }
        self.clock.manual = target;
        self.timer_pass_stats = stats;
        Ok(())
    }

    /// Fires one pass's timers as one step. For a pass over several instants, returns
    /// the earliest timer it set inside its own span, if any, with the savepoint still
    /// open for the caller to take it back.
    fn run_pass(&self, pass: &TimerPass, clock: Timestamp, cx: &mut StepContext) -> Result<Option<i64>> {
        let (Some(&(first, _)), Some(&(last, _))) = (pass.instants.first(), pass.instants.last()) else {
            return Ok(None);
        };
        let several = pass.instants.len() > 1;
        if several {
            cx.savepoint();
            cx.set_key_instants(pass.keys.clone());
        }
        cx.now = Timestamp(last.max(clock.nanos()));
        let mut fired: HashMap<u64, HashMap<u32, Vec<&DueTimer>>> = HashMap::new();
        for (_, due) in &pass.instants {
            for timer in due {
                fired.entry(timer.segment).or_default().entry(timer.node).or_default().push(timer);
            }
            self.timers.fire(cx, due)?;
        }
        let ran = self.propagate(HashMap::new(), &fired, cx, None);
        cx.set_key_instants(HashMap::new());
        ran?;
        if !several {
            return Ok(None);
        }
        // Every timer of the span was fired: one there now was set by the pass.
        let early = self.timers.first_held_between(first.saturating_add(1), last)?;
        if early.is_none() {
            cx.release();
        }
        Ok(early)
    }

    /// The ids of the segments whose timers may share a pass: those that keep member
    /// keys apart and are read (transitively) only by segments that do too.
    fn segments_firing_in_passes(&self) -> HashMap<u64, &SegmentDataflow> {
        let mut out = HashMap::new();
        if !self.timer_passes {
            return out;
        }
        let mut apart: HashMap<&str, bool> = HashMap::new();
        // Readers come after what they read: from the last, each segment's readers are
        // known before it.
        let order = self.segment_order();
        for name in order.iter().rev() {
            let Some(df) = self.dataflows.get(name) else { continue };
            let readers_apart = self
                .dataflows
                .values()
                .filter(|r| r.reads().contains(name))
                .all(|r| apart.get(r.name.as_str()).copied().unwrap_or(false));
            let ok = df.keeps_keys_apart() && readers_apart;
            apart.insert(df.name.as_str(), ok);
            if ok {
                out.insert(df.segment_id, df);
            }
        }
        out
    }

    /// Whether a clock advance fires this segment's timers of different members together,
    /// in passes, rather than one instant per step (see `advance_clock_to`).
    pub fn fires_timers_in_passes(&self, segment: &str) -> bool {
        self.dataflows
            .get(segment)
            .is_some_and(|df| self.segments_firing_in_passes().contains_key(&df.segment_id))
    }

    /// A segment's changes with `seq >= from`, in order: where a subscriber that has
    /// applied everything before `from` resumes.
    pub fn changes_from(&self, segment: &str, from: u64) -> Result<Vec<ChangeRecord>> {
        let Some(log_id) = self.store.meta_u64(&log_key(segment))? else {
            return Err(Error::catalog(format!("no segment is named `{segment}`")));
        };
        ChangeLog::new(log_id).page(&self.store, segment, from, usize::MAX)
    }

    /// The segments `key` is a member of now, by name.
    pub fn memberships_of(&self, key: &str) -> Result<Vec<String>> {
        let cx = StepContext::new(&self.store, self.clock.now());
        let mut out = Vec::new();
        for (name, df) in &self.dataflows {
            if self.is_member_in(&cx, df, key)? {
                out.push(name.clone());
            }
        }
        Ok(out)
    }

    /// Whether `key` (as text) is a member of the segment, as `cx` sees the store.
    pub(crate) fn is_member_in(&self, cx: &StepContext, df: &SegmentDataflow, key: &str) -> Result<bool> {
        Ok(df.sink()?.member_by_text(cx, key)?.is_some())
    }

    /// The change log of every segment, in segment and sequence order.
    pub fn change_records(&self) -> Result<Vec<ChangeRecord>> {
        let names: BTreeMap<u64, String> = self
            .catalog
            .list(ObjectKind::Segment)
            .filter_map(|r| Some((self.store.meta_u64(&log_key(&r.name)).ok()??, r.name.clone())))
            .collect();
        let mut out = Vec::new();
        for (key, value) in self.store.scan_prefix(CF_CHANGES, &[])? {
            let log_id = u64::from_be_bytes(
                key.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::storage("a change key is damaged"))?,
            );
            let Some(segment) = names.get(&log_id) else { continue };
            out.push(decode_change(segment, &key, &value)?);
        }
        Ok(out)
    }
}

/// The timers one pass fires: consecutive instants, and the instant of each member key
/// among them (empty for a pass of one instant).
#[derive(Default)]
struct TimerPass {
    instants: Vec<(i64, Vec<DueTimer>)>,
    keys: HashMap<Vec<u8>, i64>,
}

impl TimerPass {
    /// Keeps the first `n` instants.
    fn truncate(&mut self, n: usize) {
        self.instants.truncate(n);
        let last = self.instants.last().map_or(i64::MIN, |(instant, _)| *instant);
        self.keys.retain(|_, instant| *instant <= last);
    }
}

/// How many due instants [`gather_pass`] takes from the timer queue in one walk: a
/// pass of the three workload segments spans about a hundred.
const INSTANTS_PER_WALK: usize = 128;

/// Takes due instants from `from` on into one pass while each member key stays at one
/// instant; an instant that does not fit is left to the next pass. A timer of a segment
/// outside `in_passes` makes its instant a pass of its own.
fn gather_pass(
    timers: &TimerQueue,
    cx: &mut StepContext,
    from: i64,
    through: i64,
    in_passes: &HashMap<u64, &SegmentDataflow>,
) -> Result<TimerPass> {
    let mut pass = TimerPass::default();
    let mut cursor = from;
    'walks: loop {
        // The due instants a walk of the queue gives; a pass usually takes them all.
        let walk = timers.due_instants(cx, cursor, through, INSTANTS_PER_WALK)?;
        let last_walk = walk.len() < INSTANTS_PER_WALK;
        for (next, due) in walk {
            let mut keys = Vec::with_capacity(due.len());
            let mut alone = false;
            for timer in &due {
                match in_passes.get(&timer.segment) {
                    Some(df) => match df.timer_member_key(timer)? {
                        Some(key) => keys.push(key),
                        None => alone = true,
                    },
                    None => alone = true,
                }
            }
            let fits =
                pass.instants.is_empty() || (!alone && keys.iter().all(|k| !pass.keys.contains_key(k)));
            if !fits {
                break 'walks;
            }
            pass.keys.extend(keys.into_iter().map(|k| (k, next)));
            pass.instants.push((next, due));
            if alone {
                break 'walks;
            }
            cursor = next.saturating_add(1);
        }
        if last_walk {
            break;
        }
    }
    if pass.instants.len() == 1 {
        pass.keys.clear();
    }
    Ok(pass)
}

/// How far a segment's backfill has got, reported after each batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillProgress {
    pub segment: String,
    /// The relation being read.
    pub relation: String,
    pub rows: usize,
    pub total: usize,
}

/// A definition to write with a segment's first step.
pub(crate) struct CatalogWrite {
    pub id: u64,
    pub text: String,
    /// The definition it replaces (CREATE OR REPLACE).
    pub replaces: Option<u64>,
    pub next_id: u64,
}

fn delete_operator_state(cx: &mut StepContext, timers: &TimerQueue, segment_id: u64) -> Result<()> {
    for (key, _) in cx.scan_prefix(CF_STATE, &segment_id.to_be_bytes())? {
        cx.delete(CF_STATE, key);
    }
    timers.remove_segment(cx, segment_id)
}

/// A rebuilt segment's change per key: from the members it had to the members it has
/// (rows may even have another shape after CREATE OR REPLACE).
fn diff_members(previous: Vec<Vec<ScalarValue>>, current: Vec<Vec<ScalarValue>>) -> Vec<MemberChange> {
    let mut old: BTreeMap<String, Vec<ScalarValue>> =
        previous.into_iter().map(|r| (key_text(&r[0]), r)).collect();
    let mut out = Vec::new();
    for new in current {
        match old.remove(&key_text(&new[0])) {
            None => out.push(MemberChange { kind: ChangeKind::Entered, old: None, new: Some(new) }),
            Some(row) if row == new => {}
            Some(row) => out.push(MemberChange { kind: ChangeKind::Updated, old: Some(row), new: Some(new) }),
        }
    }
    out.extend(old.into_values().map(|row| MemberChange {
        kind: ChangeKind::Exited,
        old: Some(row),
        new: None,
    }));
    out
}

/// Changes as the delta a reading segment sees: entered +row, exited -row, updated -old +new.
pub(crate) fn changes_as_delta(schema: &SchemaRef, changes: &[MemberChange]) -> Result<DeltaBatch> {
    let mut rows = Vec::new();
    let mut weights = Vec::new();
    for change in changes {
        if let Some(old) = &change.old {
            rows.push(old.clone());
            weights.push(-1);
        }
        if let Some(new) = &change.new {
            rows.push(new.clone());
            weights.push(1);
        }
    }
    DeltaBatch::new(rows_to_batch(schema, &rows)?, weights)
}
