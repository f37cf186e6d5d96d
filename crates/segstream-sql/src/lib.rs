//! The segment language: parsing the segstream dialect, the catalog of streams, tables
//! and segments, planning a segment's query with DataFusion and lowering it into the
//! incremental plan the engine runs.
//!
//! ```text
//!   text --parser--> Statement --SqlToRel--> LogicalPlan --rules--> LogicalPlan --lower--> IncrementalPlan
//! ```

pub mod absence;
pub mod ast;
pub mod catalog;
mod lower;
pub mod parser;
pub mod plan;
pub mod planner;
pub mod schema;
mod source_map;
pub mod system;
pub mod temporal;

pub use ast::{ObjectKind, Statement, StatementKind};
pub use catalog::{Catalog, Relation};
pub use parser::{parse_statement, parse_statements};
pub use plan::IncrementalPlan;

#[cfg(test)]
mod no_panic_tests;
