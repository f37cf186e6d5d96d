//! The catalog: every stream, table and segment, their schemas and how they depend on
//! each other. It is pure data; the engine persists the definitions (the statements'
//! text) and rebuilds the catalog from them on start, through the same code path that
//! created them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use segstream_types::{Error, Result};

use crate::ast::{CreateSegment, CreateStream, CreateTable, Name, ObjectKind};
use crate::plan::IncrementalPlan;
use crate::planner;
use crate::schema::{fields, is_key_type};

/// A stream, table or segment.
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub kind: ObjectKind,
    pub schema: SchemaRef,
    /// A stream's entity key, a table's primary key, a segment's member key.
    pub key: String,
    /// A stream's event-time column.
    pub event_time: Option<String>,
    /// A stream's retention in nanoseconds: an event is kept while `event_time > NOW() -
    /// retention`, in segments and queries alike (a temporal filter on the stream).
    pub retention: Option<i64>,
    /// The `CREATE` statement as written.
    pub definition: String,
    /// For a segment: the relations its query reads directly.
    pub reads: Vec<String>,
    /// For a segment: its incremental plan.
    pub plan: Option<Arc<IncrementalPlan>>,
}

impl Relation {
    /// For a segment: its attribute columns (every column after the key).
    pub fn attributes(&self) -> Vec<String> {
        self.schema.fields().iter().skip(1).map(|f| f.name().clone()).collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    relations: BTreeMap<String, Relation>,
    /// Changes with every insert and removal, unique across all catalogs (clones
    /// included): what is derived from a catalog can be kept while this is unchanged.
    generation: u64,
}

/// Where catalog generations come from.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&Relation> {
        self.relations.get(name)
    }

    /// Relations of one kind, by name.
    pub fn list(&self, kind: ObjectKind) -> impl Iterator<Item = &Relation> {
        self.relations.values().filter(move |r| r.kind == kind)
    }

    pub fn relations(&self) -> impl Iterator<Item = &Relation> {
        self.relations.values()
    }

    /// Segments that read `name` directly.
    pub fn dependants(&self, name: &str) -> Vec<&str> {
        self.relations
            .values()
            .filter(|r| r.reads.iter().any(|read| read == name))
            .map(|r| r.name.as_str())
            .collect()
    }

    /// Every relation `name` reads, directly or through other segments.
    pub fn reads_transitively(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_string()];
        while let Some(next) = todo.pop() {
            if let Some(r) = self.relations.get(&next) {
                for read in &r.reads {
                    if seen.insert(read.clone()) {
                        todo.push(read.clone());
                    }
                }
            }
        }
        seen
    }

    /// Validates a `CREATE STREAM` and builds its relation (not yet added).
    pub fn stream_from(&self, create: &CreateStream, definition: &str) -> Result<Relation> {
        let event_time = create.event_time.clone().map(|n| n.value).unwrap_or_else(|| "ts".into());
        let key = match &create.key {
            Some(n) => n.value.clone(),
            None => crate::parser::normalize(&create.columns[0].name),
        };
        let schema = Schema::new(fields(&create.columns, &[key.as_str(), event_time.as_str()])?);
        let at = |n: &Option<Name>| n.as_ref().and_then(|n| n.position).or(create.name.position);
        match schema.field_with_name(&event_time) {
            Ok(f) if matches!(f.data_type(), DataType::Timestamp(_, _)) => {}
            Ok(f) => {
                return Err(Error::plan(
                    format!("the event-time column `{event_time}` has type {}, not TIMESTAMP", f.data_type()),
                    at(&create.event_time),
                ))
            }
            Err(_) => {
                return Err(Error::plan(
                    format!("stream `{}` has no event-time column `{event_time}`", create.name),
                    at(&create.event_time),
                )
                .with_help(
                    "add a `ts TIMESTAMP NOT NULL` column, or name yours with WITH (event_time = 'column')",
                ))
            }
        }
        check_key(&schema, &key, "key", at(&create.key))?;
        let retention = match &create.retention {
            None => None,
            Some(text) => {
                // Event time + retention must stay within the timestamps segstream keeps
                // (until 2262), or the instant an event leaves could not be computed.
                const MAX_DAYS: i64 = 36_500;
                let nanos = crate::temporal::fixed_interval_nanos(&text.value).and_then(|n| {
                    if n > MAX_DAYS * 86_400_000_000_000 {
                        Err(format!("a retention is at most {MAX_DAYS} days (100 years)"))
                    } else {
                        Ok(n)
                    }
                });
                Some(nanos.map_err(|message| {
                    Error::plan(format!("retention '{}': {message}", text.value), at(&create.retention))
                        .with_help("write a fixed length from seconds to days, e.g. retention = '90 days'; without a retention, events are kept forever")
                })?)
            }
        };
        Ok(Relation {
            name: create.name.value.clone(),
            kind: ObjectKind::Stream,
            schema: Arc::new(schema),
            key,
            event_time: Some(event_time),
            retention,
            definition: definition.to_string(),
            reads: Vec::new(),
            plan: None,
        })
    }

    /// Validates a `CREATE TABLE` and builds its relation (not yet added).
    pub fn table_from(&self, create: &CreateTable, definition: &str) -> Result<Relation> {
        let key = create.primary_key.value.clone();
        let schema = Schema::new(fields(&create.columns, &[key.as_str()])?);
        check_key(&schema, &key, "primary key", create.primary_key.position)?;
        Ok(Relation {
            name: create.name.value.clone(),
            kind: ObjectKind::Table,
            schema: Arc::new(schema),
            key,
            event_time: None,
            retention: None,
            definition: definition.to_string(),
            reads: Vec::new(),
            plan: None,
        })
    }

    /// Plans a `CREATE SEGMENT` against the catalog and builds its relation (not yet
    /// added). `definition` is the statement text and `origin` where it starts, so that
    /// errors point into the text the analyst wrote.
    pub fn segment_from(
        &self,
        create: &CreateSegment,
        definition: &str,
        origin: Option<segstream_types::Position>,
    ) -> Result<Relation> {
        let planned = planner::plan_segment(self, create, definition, origin)?;
        let name = &create.name.value;
        if planned.reads.iter().any(|r| r == name)
            || planned.reads.iter().any(|r| self.reads_transitively(r).contains(name))
        {
            return Err(Error::plan(
                format!("segment `{name}` would read itself (a cycle through {})", planned.reads.join(", ")),
                create.name.position,
            )
            .with_help("a segment may read only segments that do not read it"));
        }
        Ok(Relation {
            name: name.clone(),
            kind: ObjectKind::Segment,
            key: planned.schema.field(0).name().clone(),
            schema: planned.schema,
            event_time: None,
            retention: None,
            definition: definition.to_string(),
            reads: planned.reads,
            plan: Some(Arc::new(planned.plan)),
        })
    }

    /// Adds or replaces a relation.
    pub fn insert(&mut self, relation: Relation) {
        self.relations.insert(relation.name.clone(), relation);
        self.generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn remove(&mut self, name: &str) -> Option<Relation> {
        self.generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.relations.remove(name)
    }

    /// This catalog's state: equal generations mean the same relations.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The error for a name that is taken by another kind of object, or by the same kind
    /// without IF NOT EXISTS / OR REPLACE.
    pub fn name_taken(&self, name: &Name, wanted: ObjectKind) -> Option<Error> {
        let existing = self.relations.get(&name.value)?;
        Some(if existing.kind == wanted {
            Error::catalog(format!("{wanted} `{name}` already exists")).at(name.position)
        } else {
            Error::catalog(format!("`{name}` is already the name of a {}", existing.kind)).at(name.position)
        })
    }
}

fn check_key(
    schema: &Schema,
    key: &str,
    what: &str,
    position: Option<segstream_types::Position>,
) -> Result<()> {
    match schema.field_with_name(key) {
        Ok(f) if is_key_type(f.data_type()) => Ok(()),
        Ok(f) => Err(Error::plan(
            format!(
                "the {what} `{key}` has type {}; a key must be TEXT, SMALLINT, INT or BIGINT",
                f.data_type()
            ),
            position,
        )),
        Err(_) => Err(Error::plan(format!("the {what} `{key}` is not one of the columns"), position)),
    }
}
