use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use segstream_ops::timer_queue::TimerQueue;
use segstream_ops::SegmentDataflow;
use segstream_sql::ast::{AdvanceTime, CreateSegment, Name, ObjectKind, StatementKind};
use segstream_sql::planner::closest;
use segstream_sql::schema::sql_type_name;
use segstream_sql::{parse_statement, parse_statements, Catalog, Relation, Statement};
use segstream_state::{Journal, Store, CF_CATALOG, CF_META, CF_ROWS};
use segstream_types::{Error, Result, Timestamp};

use crate::clock::{Clock, ClockMode};
use crate::journal_record::{ChangeDigest, JournalInput};
use crate::maintain::{BackfillProgress, CatalogWrite};
use crate::output::Output;
use crate::recovery::{CheckpointPolicy, CheckpointTotals, JOURNAL_DIR, META_JOURNAL_POSITION};
use crate::step::Step;

/// Where the engine keeps its data and how its clock runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub data_dir: PathBuf,
    pub clock: ClockMode,
    /// Rows per batch when a segment is backfilled from stored history.
    pub backfill_batch: usize,
    /// Group commit: steps are journaled but not synced one by one; whoever
    /// acknowledges them first makes them durable with [`Engine::journal`]'s sync.
    pub group_commit: bool,
    /// Bytes of hot operator state kept in memory in front of RocksDB (see
    /// `segstream_state::CacheStats`); colder state is read back when touched.
    pub state_cache_bytes: usize,
    /// A clock advance fires the timers of different members together, each at its own
    /// instant, in passes (see `Engine::advance_clock`). Off, every instant with a due
    /// timer is a step of its own: the same change log, more slowly; kept as the
    /// reference the passes are tested against.
    pub timer_passes: bool,
    /// How often the state changed in memory is checkpointed to RocksDB (it also is when
    /// those changes reach half the state budget, at `FORGET KEY` and at shutdown).
    pub checkpoint_interval: std::time::Duration,
}

impl EngineOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            clock: ClockMode::default(),
            backfill_batch: 50_000,
            group_commit: false,
            state_cache_bytes: segstream_state::DEFAULT_CACHE_BYTES,
            timer_passes: true,
            checkpoint_interval: std::time::Duration::from_secs(5),
        }
    }

    pub fn with_checkpoint_interval(mut self, every: std::time::Duration) -> Self {
        self.checkpoint_interval = every;
        self
    }

    pub fn with_timer_passes(mut self, on: bool) -> Self {
        self.timer_passes = on;
        self
    }

    pub fn with_state_cache_bytes(mut self, bytes: usize) -> Self {
        self.state_cache_bytes = bytes;
        self
    }

    pub fn with_group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    pub fn with_clock(mut self, clock: ClockMode) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_backfill_batch(mut self, rows: usize) -> Self {
        self.backfill_batch = rows.max(1);
        self
    }
}

pub(crate) const META_NEXT_ID: &str = "next_id";

/// What hears a backfill's progress.
type ProgressReport = Box<dyn Fn(&BackfillProgress) + Send + Sync>;

/// One open data directory and everything declared in it.
pub struct Engine {
    pub(crate) store: Store,
    pub(crate) catalog: Catalog,
    /// Definition id of each relation: the key of its catalog entry and the prefix of
    /// its stored rows.
    pub(crate) ids: HashMap<String, u64>,
    pub(crate) next_id: u64,
    pub(crate) clock: Clock,
    /// The running operators of every maintained segment, by name.
    pub(crate) dataflows: BTreeMap<String, SegmentDataflow>,
    /// Every running segment's timers, in memory in instant order (`timer_queue.rs`).
    pub(crate) timers: Arc<TimerQueue>,
    pub(crate) backfill_batch: usize,
    /// Told how backfills progress.
    pub(crate) progress: Option<ProgressReport>,
    /// The segments in dependency order, and the catalog generation it was computed for.
    pub(crate) segment_order_memo: std::sync::Mutex<Option<(u64, std::sync::Arc<Vec<String>>)>>,
    pub(crate) timer_passes: bool,
    pub(crate) timer_pass_stats: TimerPassStats,
    pub(crate) data_dir: PathBuf,
    /// Every input that changes anything, in order (see `step.rs`, `recovery.rs`).
    pub(crate) journal: Journal,
    /// Off while the data directory's upgrades run at open (written straight to RocksDB).
    pub(crate) journaling: bool,
    /// On while recovery replays the journal: steps are not journaled again; each one's
    /// change digest is left in `replayed` for recovery to check.
    pub(crate) replaying: bool,
    pub(crate) replayed: std::sync::Mutex<Option<ChangeDigest>>,
    /// Why the state cannot be trusted (recovery stopped part-way): no checkpoint is
    /// taken and every write first restarts from the last checkpoint.
    pub(crate) broken: Option<String>,
    pub(crate) group_commit: bool,
    /// On inside [`Engine::with_one_sync`]: steps are appended to the journal but not
    /// synced one by one; the call syncs them together before it returns.
    pub(crate) sync_held: bool,
    pub(crate) checkpoint_policy: CheckpointPolicy,
    pub(crate) last_checkpoint: std::sync::Mutex<std::time::Instant>,
    pub(crate) checkpoint_totals: std::sync::Mutex<CheckpointTotals>,
}

/// How clock advances have fired timers since the engine opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerPassStats {
    /// Steps that fired timers.
    pub passes: u64,
    /// Distinct instants whose timers fired (one step each without passes).
    pub instants: u64,
    /// Passes taken back and run again shorter, because they set a timer inside their
    /// own span.
    pub retried: u64,
}

impl Engine {
    /// Opens the data directory: the last checkpoint's state, every stored definition,
    /// then the journal's steps after the checkpoint run again (see `recovery.rs`).
    pub fn open(options: EngineOptions) -> Result<Self> {
        let store = Store::open(&options.data_dir)?;
        if options.state_cache_bytes != segstream_state::DEFAULT_CACHE_BYTES {
            store.set_cache_bytes(options.state_cache_bytes)?;
        }
        let checkpointed = store.meta_u64(META_JOURNAL_POSITION)?.unwrap_or(0);
        let (journal, _) = Journal::open_after(&options.data_dir.join(JOURNAL_DIR), checkpointed)?;
        let mut engine = Self {
            store,
            catalog: Catalog::new(),
            ids: HashMap::new(),
            next_id: 1,
            clock: Clock { mode: options.clock, manual: Timestamp(0) },
            dataflows: BTreeMap::new(),
            timers: Arc::new(TimerQueue::new()),
            backfill_batch: options.backfill_batch,
            progress: None,
            segment_order_memo: std::sync::Mutex::new(None),
            timer_passes: options.timer_passes,
            timer_pass_stats: TimerPassStats::default(),
            data_dir: options.data_dir.clone(),
            journal,
            journaling: false,
            replaying: false,
            replayed: std::sync::Mutex::new(None),
            broken: None,
            group_commit: options.group_commit,
            sync_held: false,
            checkpoint_policy: CheckpointPolicy {
                every: options.checkpoint_interval,
                bytes: (options.state_cache_bytes / 2).max(1),
                resident_bytes: options.state_cache_bytes,
            },
            last_checkpoint: std::sync::Mutex::new(std::time::Instant::now()),
            checkpoint_totals: std::sync::Mutex::new(CheckpointTotals::default()),
        };
        engine.load()?;
        Ok(engine)
    }

    /// Rebuilds the catalog from the stored statements, through the same planning code
    /// that accepted them. A segment replaced after its dependants were created has a
    /// larger id than they do, so definitions are planned in rounds until all are in.
    pub(crate) fn reload_catalog(&mut self) -> Result<()> {
        let mut pending = self.store.catalog_entries()?;
        while !pending.is_empty() {
            let mut failed = Vec::new();
            let mut last_error = None;
            let before = pending.len();
            for (id, text) in pending {
                match self.relation_from_text(&text) {
                    Ok(relation) => {
                        self.ids.insert(relation.name.clone(), id);
                        self.catalog.insert(relation);
                    }
                    Err(e) => {
                        last_error = Some((id, e));
                        failed.push((id, text));
                    }
                }
            }
            if let (true, Some((id, e))) = (failed.len() == before, last_error) {
                return Err(Error::storage(format!("stored definition #{id} no longer plans: {e}")));
            }
            pending = failed;
        }
        Ok(())
    }

    fn relation_from_text(&self, text: &str) -> Result<Relation> {
        let statement = parse_statement(text)?;
        match &statement.kind {
            StatementKind::CreateStream(c) => self.catalog.stream_from(c, text),
            StatementKind::CreateTable(c) => self.catalog.table_from(c, text),
            StatementKind::CreateSegment(c) => self.catalog.segment_from(c, text, statement.position),
            _ => Err(Error::storage(format!("stored definition is not a CREATE statement: {text}"))),
        }
    }

    /// Calls `report` after each batch of a segment's backfill (creating a segment over
    /// stored history, or rebuilding one).
    pub fn on_backfill_progress(&mut self, report: impl Fn(&BackfillProgress) + Send + Sync + 'static) {
        self.progress = Some(Box::new(report));
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The journal, to sync without holding the engine: with
    /// [`EngineOptions::with_group_commit`], one `sync` makes a group of steps durable.
    pub fn journal(&self) -> Journal {
        self.journal.clone()
    }

    /// How many keys each kind of state holds (column family, count), counted exactly:
    /// what shows whether state stays bounded. It scans everything, so it is for reports
    /// and tests, not for a hot path.
    pub fn state_keys(&self) -> Result<Vec<(&'static str, u64)>> {
        Store::families().iter().map(|f| Ok((*f, self.store.count_keys(f)?))).collect()
    }

    /// What the hot-state cache holds, and its hits and misses since the engine opened.
    pub fn state_cache_stats(&self) -> Result<segstream_state::CacheStats> {
        self.store.cache_stats()
    }

    /// Starts recording every write batch the engine hands to its store (see
    /// `Store::record_writes`): the throughput bench replays them to measure what the
    /// storage alone costs.
    pub fn record_store_writes(&self) -> Result<()> {
        self.store.record_writes()
    }

    /// The write batches since [`Engine::record_store_writes`], serialized, in order;
    /// recording stops. `segstream_state::Store::write_recorded` writes one again.
    pub fn take_recorded_store_writes(&self) -> Result<Vec<Vec<u8>>> {
        self.store.take_recorded_writes()
    }

    /// How clock advances have fired timers since the engine opened.
    pub fn timer_pass_stats(&self) -> TimerPassStats {
        self.timer_pass_stats
    }

    /// Compacts the store now, so what was deleted no longer takes disk space.
    pub fn compact_state(&self) -> Result<()> {
        self.store.compact()
    }

    /// How many write batches the engine has committed since it was opened (a step that
    /// failed, or only read, adds none).
    pub fn writes(&self) -> u64 {
        self.store.writes()
    }

    /// Write batches the engine has written to RocksDB outside checkpoints since it was
    /// opened: only the upgrades a data directory gets at open. Steps write none.
    pub fn rocksdb_writes_outside_checkpoints(&self) -> u64 {
        self.store.direct_writes()
    }

    /// The instant `NOW()` has now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn clock_mode(&self) -> ClockMode {
        self.clock.mode
    }

    /// The instant the next timer is due (the earliest after the clock), if any: when a
    /// server on the wall clock next has time-driven changes to apply.
    pub fn next_timer_due(&self) -> Result<Option<Timestamp>> {
        let mut cx = segstream_ops::StepContext::new(&self.store, self.clock.now());
        let from = self.clock.now().nanos().saturating_add(1);
        let next = self.timers.next_instant(&mut cx, from, i64::MAX)?;
        cx.end(true);
        Ok(next.map(Timestamp))
    }

    /// Parses and runs a script, statement by statement; stops at the first error.
    pub async fn execute(&mut self, sql: &str) -> Result<Vec<Output>> {
        let mut outputs = Vec::new();
        for statement in parse_statements(sql)? {
            outputs.push(self.execute_statement(&statement).await?);
        }
        Ok(outputs)
    }

    /// Runs one statement. An error without a position of its own points at the
    /// statement's first token.
    pub async fn execute_statement(&mut self, statement: &Statement) -> Result<Output> {
        self.ready_to_write()?;
        self.run_statement(statement).await.map_err(|e| e.or_position(statement.position))
    }

    async fn run_statement(&mut self, statement: &Statement) -> Result<Output> {
        let touches_data = matches!(
            statement.kind,
            StatementKind::CreateSegment(_)
                | StatementKind::Insert(_)
                | StatementKind::Delete(_)
                | StatementKind::Query(_)
        );
        if touches_data {
            self.catch_up_with_wall_clock()?;
        }
        match &statement.kind {
            StatementKind::CreateStream(_)
            | StatementKind::CreateTable(_)
            | StatementKind::CreateSegment(_)
            | StatementKind::Drop { .. } => self.run_definition(statement),
            StatementKind::Show(kind) => Ok(self.show(*kind)),
            StatementKind::Describe(name) => Ok(self.describe(self.relation(name)?)),
            StatementKind::ExplainSegment(name) => {
                let relation = self.relation(name)?;
                if relation.kind != ObjectKind::Segment {
                    return Err(Error::catalog(format!(
                        "`{name}` is a {}, not a segment; EXPLAIN SEGMENT explains segments (DESCRIBE {name} shows its columns)",
                        relation.kind
                    ))
                    .at(name.position));
                }
                Ok(Output::Text(explain(relation)))
            }
            StatementKind::ExplainCreateSegment(c) => {
                // What the CREATE would do with a taken name: the same refusal or skip.
                if self.segment_name_skipped(c)? {
                    return Ok(Output::Text(format!(
                        "CREATE SEGMENT would be skipped: segment {} already exists \
                         (EXPLAIN SEGMENT {} shows its plan; CREATE OR REPLACE replaces it)",
                        c.name, c.name
                    )));
                }
                let mut catalog = self.catalog.clone();
                if c.or_replace {
                    catalog.remove(&c.name.value);
                }
                let relation = catalog.segment_from(c, &statement.text, statement.position)?;
                Ok(Output::Text(explain(&relation)))
            }
            StatementKind::AdvanceTime(advance) => self.advance_time(advance).await,
            StatementKind::ForgetKey { key, only } => self.forget_key_statement(key, only),
            StatementKind::Insert(insert) => self.insert(insert).await,
            StatementKind::Delete(delete) => self.delete(delete).await,
            StatementKind::Query(query) => self.query(query).await,
        }
    }

    /// Runs a definition (`CREATE STREAM | TABLE | SEGMENT`, `DROP`) at the engine's
    /// instant: what a journaled definition runs again at recovery.
    pub(crate) fn run_definition(&mut self, statement: &Statement) -> Result<Output> {
        match &statement.kind {
            StatementKind::CreateStream(c) => {
                if self.skip_existing(&c.name, ObjectKind::Stream, c.if_not_exists)? {
                    return Ok(Output::Done(format!(
                        "CREATE STREAM (skipped: stream {} already exists)",
                        c.name
                    )));
                }
                c.refuse_column_primary_key()?;
                let relation = self.catalog.stream_from(c, &statement.text)?;
                self.add_relation(relation)?;
                Ok(Output::Done("CREATE STREAM".into()))
            }
            StatementKind::CreateTable(c) => {
                if self.skip_existing(&c.name, ObjectKind::Table, c.if_not_exists)? {
                    return Ok(Output::Done(format!(
                        "CREATE TABLE (skipped: table {} already exists)",
                        c.name
                    )));
                }
                let relation = self.catalog.table_from(c, &statement.text)?;
                self.add_relation(relation)?;
                Ok(Output::Done("CREATE TABLE".into()))
            }
            StatementKind::CreateSegment(c) => self.create_segment(c, statement),
            StatementKind::Drop { object, name, if_exists } => {
                self.drop_relation(*object, name, *if_exists, &statement.text)
            }
            _ => Err(Error::internal("not a definition")),
        }
    }

    /// With the wall clock, moves the engine's instant to now, applying the time-driven
    /// changes due on the way, so the statement sees one instant and every change due
    /// before it.
    pub fn catch_up_with_wall_clock(&mut self) -> Result<()> {
        if self.clock.mode == ClockMode::Wall {
            self.ready_to_write()?;
            self.advance_clock_to(Clock::wall())?;
        }
        Ok(())
    }

    /// Whether a CREATE should be skipped (IF NOT EXISTS on an existing object of the same
    /// kind); an error if the name is taken otherwise.
    fn skip_existing(&self, name: &Name, kind: ObjectKind, if_not_exists: bool) -> Result<bool> {
        match self.catalog.name_taken(name, kind) {
            None => Ok(false),
            Some(_) if if_not_exists && self.catalog.get(&name.value).map(|r| r.kind) == Some(kind) => {
                Ok(true)
            }
            Some(e) => Err(e),
        }
    }

    /// Whether CREATE SEGMENT (or its EXPLAIN) is skipped for a taken name; an error if
    /// the name is taken and neither IF NOT EXISTS nor OR REPLACE (which replaces only a
    /// segment) allows it.
    fn segment_name_skipped(&self, c: &CreateSegment) -> Result<bool> {
        match self.catalog.get(&c.name.value).map(|r| r.kind) {
            None => Ok(false),
            Some(ObjectKind::Segment) if c.or_replace => Ok(false),
            Some(_) => match self.skip_existing(&c.name, ObjectKind::Segment, c.if_not_exists)? {
                true => Ok(true),
                false => Err(Error::internal("existing name neither skipped nor refused")),
            },
        }
    }

    fn create_segment(&mut self, c: &CreateSegment, statement: &Statement) -> Result<Output> {
        if self.segment_name_skipped(c)? {
            return Ok(Output::Done(format!("CREATE SEGMENT (skipped: segment {} already exists)", c.name)));
        }
        let replacing = c.or_replace && self.catalog.get(&c.name.value).is_some();
        let relation = self.catalog.segment_from(c, &statement.text, statement.position)?;
        let name = c.name.value.clone();
        // The new catalog: this segment, and every segment that reads it (directly or
        // through others) planned again against it, parents first.
        let mut next = self.catalog.clone();
        next.insert(relation);
        let mut rebuilt = vec![name.clone()];
        if replacing {
            for segment in self.segment_order().iter().cloned() {
                let Some(d) = self.catalog.get(&segment) else { continue };
                if segment == name || !d.reads.iter().any(|r| rebuilt.contains(r)) {
                    continue;
                }
                let text = d.definition.clone();
                let replanned = parse_statement(&text).and_then(|s| match &s.kind {
                    StatementKind::CreateSegment(dc) => next.segment_from(dc, &text, s.position),
                    _ => Err(Error::internal("a dependant is not a segment")),
                });
                match replanned {
                    Ok(r) => {
                        next.insert(r);
                        rebuilt.push(segment);
                    }
                    Err(e) => {
                        return Err(Error::catalog(format!(
                            "cannot replace segment `{name}`: segment `{segment}` reads it and would no longer plan: {e}"
                        )))
                    }
                }
            }
        }
        let old_id = self.ids.get(&name).copied().filter(|_| replacing);
        let id = self.next_id;
        let saved = (std::mem::replace(&mut self.catalog, next), self.ids.clone(), self.next_id);
        self.ids.insert(name.clone(), id);
        self.next_id = id + 1;
        let definition =
            CatalogWrite { id, text: statement.text.clone(), replaces: old_id, next_id: self.next_id };
        if let Err(e) = self.rebuild_segments(&rebuilt, Some(definition)) {
            // Nothing was written: the catalog stays as it was.
            (self.catalog, self.ids, self.next_id) = saved;
            return Err(e);
        }
        Ok(Output::Done(if replacing { "CREATE OR REPLACE SEGMENT" } else { "CREATE SEGMENT" }.into()))
    }

    /// Persists a stream's or table's definition under a new id and adds it to the catalog.
    fn add_relation(&mut self, relation: Relation) -> Result<()> {
        let id = self.next_id;
        let input = JournalInput::Definition { text: relation.definition.clone() };
        let mut step = Step::new(&self.store, self.clock.now(), Some(input));
        step.cx.put(CF_CATALOG, id.to_be_bytes().to_vec(), relation.definition.as_bytes().to_vec());
        step.cx.put(CF_META, META_NEXT_ID.as_bytes().to_vec(), (id + 1).to_be_bytes().to_vec());
        self.commit(step)?;
        self.next_id = id + 1;
        self.ids.insert(relation.name.clone(), id);
        self.catalog.insert(relation);
        Ok(())
    }

    fn drop_relation(
        &mut self,
        kind: ObjectKind,
        name: &Name,
        if_exists: bool,
        text: &str,
    ) -> Result<Output> {
        let tag = format!("DROP {}", kind.as_str().to_uppercase());
        let Some(relation) = self.catalog.get(&name.value) else {
            if if_exists {
                return Ok(Output::Done(format!("{tag} (skipped: no {kind} named {name})")));
            }
            return Err(self.unknown(name));
        };
        if relation.kind != kind {
            return Err(Error::catalog(format!(
                "`{name}` is a {}, not a {kind}; write DROP {} {name}",
                relation.kind,
                relation.kind.as_str().to_uppercase()
            ))
            .at(name.position));
        }
        let dependants = self.catalog.dependants(&name.value);
        if !dependants.is_empty() {
            return Err(Error::catalog(format!(
                "cannot drop {kind} `{name}`: {} {} it; drop {} first",
                if dependants.len() == 1 { "segment" } else { "segments" },
                dependants.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
                    + if dependants.len() == 1 { " reads" } else { " read" },
                if dependants.len() == 1 { "it" } else { "them" },
            ))
            .at(name.position));
        }
        let id =
            self.ids.get(&name.value).copied().ok_or_else(|| Error::internal(format!("{name} has no id")))?;
        let input = JournalInput::Definition { text: text.to_string() };
        let mut step = Step::new(&self.store, self.clock.now(), Some(input));
        if kind == ObjectKind::Segment {
            self.stop_maintaining(&name.value, id, &mut step.cx)?;
        }
        step.cx.delete(CF_CATALOG, id.to_be_bytes().to_vec());
        step.delete_prefix(CF_ROWS, &id.to_be_bytes())?;
        self.commit_without_checkpoint(step)?;
        self.dataflows.remove(&name.value);
        self.catalog.remove(&name.value);
        self.ids.remove(&name.value);
        self.checkpoint_if_due();
        Ok(Output::Done(tag))
    }

    pub(crate) fn relation(&self, name: &Name) -> Result<&Relation> {
        self.catalog.get(&name.value).ok_or_else(|| self.unknown(name))
    }

    pub(crate) fn unknown(&self, name: &Name) -> Error {
        let mut message = format!("no stream, table or segment is named `{name}`");
        if let Some(close) = closest(&name.value, self.catalog.relations().map(|r| r.name.as_str())) {
            message.push_str(&format!(" (did you mean `{close}`?)"));
        }
        Error::catalog(message).at(name.position)
    }

    fn show(&self, kind: ObjectKind) -> Output {
        let relations = self.catalog.list(kind);
        match kind {
            ObjectKind::Segment => Output::text_table(
                &["name", "key", "attributes", "reads"],
                relations
                    .map(|r| {
                        vec![r.name.clone(), r.key.clone(), r.attributes().join(", "), r.reads.join(", ")]
                    })
                    .collect(),
            ),
            ObjectKind::Stream => Output::text_table(
                &["name", "key", "event_time", "columns"],
                relations
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            r.key.clone(),
                            r.event_time.clone().unwrap_or_default(),
                            columns(r),
                        ]
                    })
                    .collect(),
            ),
            ObjectKind::Table => Output::text_table(
                &["name", "primary_key", "columns"],
                relations.map(|r| vec![r.name.clone(), r.key.clone(), columns(r)]).collect(),
            ),
        }
    }

    fn describe(&self, relation: &Relation) -> Output {
        let rows = relation
            .schema
            .fields()
            .iter()
            .map(|f| {
                let role = match relation.kind {
                    ObjectKind::Stream if f.name() == &relation.key => "key",
                    ObjectKind::Stream if Some(f.name()) == relation.event_time.as_ref() => "event time",
                    ObjectKind::Table if f.name() == &relation.key => "primary key",
                    ObjectKind::Segment if f.name() == &relation.key => "member key",
                    ObjectKind::Segment => "attribute",
                    _ => "",
                };
                vec![
                    f.name().clone(),
                    sql_type_name(f.data_type()),
                    if f.is_nullable() { "YES" } else { "NO" }.to_string(),
                    role.to_string(),
                ]
            })
            .collect();
        Output::text_table(&["column", "type", "nullable", "role"], rows)
    }

    async fn advance_time(&mut self, advance: &AdvanceTime) -> Result<Output> {
        if self.clock.mode != ClockMode::Manual {
            return Err(Error::invalid_input(
                "ADVANCE TIME needs the manual clock; this engine follows the wall clock (start it with --clock manual)",
            ));
        }
        let now = self.clock.manual;
        let target = match advance {
            AdvanceTime::To(expr) => self.evaluate_timestamp(&format!("{expr}"), now).await?,
            AdvanceTime::By(expr) => {
                self.evaluate_timestamp(
                    &format!("arrow_cast({}, 'Timestamp(Nanosecond, None)') + ({expr})", now.0),
                    now,
                )
                .await?
            }
        };
        if target < now {
            return Err(Error::invalid_input(format!(
                "the clock never goes backwards: it is at {now}, and ADVANCE TIME asked for {target}"
            )));
        }
        self.advance_clock(target)?;
        Ok(Output::Done(format!("ADVANCE TIME {target}")))
    }
}

fn columns(relation: &Relation) -> String {
    relation
        .schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of EXPLAIN for a segment: what it is, what it reads, and its operators.
fn explain(relation: &Relation) -> String {
    let attributes = relation.attributes();
    let mut out = format!(
        "segment {}: member key {}, attributes [{}]\nreads: {}\n",
        relation.name,
        relation.key,
        attributes.join(", "),
        relation.reads.join(", ")
    );
    if let Some(plan) = &relation.plan {
        out.push_str(&plan.explain());
    }
    out
}
