//! The statements of the segment language, as the parser hands them to the catalog and
//! the engine. Plain SQL parts (queries, INSERT, DELETE, expressions) stay sqlparser's
//! own types so that DataFusion can plan them unchanged.

use std::fmt;

use datafusion::sql::sqlparser::ast::{ColumnDef, Delete, Expr, Insert, Query};
use segstream_types::Position;

/// One statement and where it stands in the text it was parsed from.
#[derive(Debug, Clone)]
pub struct Statement {
    pub kind: StatementKind,
    /// Where the statement's first token is.
    pub position: Option<Position>,
    /// The statement exactly as written, without the closing `;`. The catalog stores
    /// this text, so `DESCRIBE` shows a segment the way its author wrote it.
    pub text: String,
}

#[derive(Debug, Clone)]
pub enum StatementKind {
    CreateStream(CreateStream),
    CreateTable(CreateTable),
    CreateSegment(CreateSegment),
    Drop {
        object: ObjectKind,
        name: Name,
        if_exists: bool,
    },
    Show(ObjectKind),
    Describe(Name),
    ExplainSegment(Name),
    ExplainCreateSegment(CreateSegment),
    AdvanceTime(AdvanceTime),
    /// `FORGET KEY 'u123' [IN name, ...]`: erase everything stored about one key (data
    /// protection), in every stream and table or only in those named.
    ForgetKey {
        key: String,
        only: Vec<Name>,
    },
    Insert(Box<Insert>),
    Delete(Box<Delete>),
    /// An ad hoc SELECT (or VALUES / WITH ...), run in batch.
    Query(Box<Query>),
}

/// What kind of object a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Stream,
    Table,
    Segment,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Table => "table",
            Self::Segment => "segment",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object name as normalised by the parser (unquoted names are lower-cased, as in
/// DataFusion and PostgreSQL) and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub value: String,
    pub position: Option<Position>,
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// `CREATE STREAM name (columns) [WITH (event_time = 'ts', key = 'user_id', retention = '90 days')]`
#[derive(Debug, Clone)]
pub struct CreateStream {
    pub name: Name,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    /// The event-time column; `ts` when not given.
    pub event_time: Option<Name>,
    /// The entity key; the first column when not given.
    pub key: Option<Name>,
    /// How long events are kept (`'90 days'`); forever when not given.
    pub retention: Option<Name>,
}

impl CreateStream {
    /// A new stream may not declare a column PRIMARY KEY: events are never upserted, so a
    /// key column would promise what a stream does not do (two events of one user are both
    /// kept). Checked when the statement runs, not when it parses, so that a stored
    /// definition written before the check (where it only made the column NOT NULL) loads.
    pub fn refuse_column_primary_key(&self) -> segstream_types::Result<()> {
        let keyed = self.columns.iter().find(|c| {
            c.options
                .iter()
                .any(|o| matches!(o.option, datafusion::sql::sqlparser::ast::ColumnOption::PrimaryKey(_)))
        });
        let Some(column) = keyed else { return Ok(()) };
        let name = crate::parser::normalize(&column.name);
        Err(segstream_types::Error::plan(
            format!(
                "a stream is append-only and has no PRIMARY KEY (`{name}`): every event is kept; \
                 declare the entity it is about with WITH (key = '{name}'), or use CREATE TABLE for rows upserted by key"
            ),
            crate::parser::position_of(column.name.span.start),
        ))
    }
}

/// `CREATE TABLE name (columns..., PRIMARY KEY (k))`
#[derive(Debug, Clone)]
pub struct CreateTable {
    pub name: Name,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub primary_key: Name,
}

/// `CREATE [OR REPLACE] SEGMENT [IF NOT EXISTS] name AS query`
#[derive(Debug, Clone)]
pub struct CreateSegment {
    pub name: Name,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub query: Box<Query>,
    /// Where the query after `AS` starts: the place to point at when a problem concerns
    /// the whole query rather than one part of it.
    pub query_position: Option<Position>,
}

/// `ADVANCE TIME TO <timestamp>` or `ADVANCE TIME BY <interval>`; the expression is a
/// constant, evaluated by DataFusion.
#[derive(Debug, Clone)]
pub enum AdvanceTime {
    To(Expr),
    By(Expr),
}
