//! Planning a segment: DataFusion's `SqlToRel` against the catalog, its analyzer, a
//! chosen list of optimizer rules, then lowering into the incremental plan.
//!
//! The optimizer rules are chosen, not DataFusion's defaults, for two reasons: rules
//! that fold `NOW()` into a constant must not run (the optimizer context has no query
//! start time), and rules whose output cannot be maintained incrementally (limits
//! pushed into scans, physical hints) are of no use. The rules kept decorrelate
//! subqueries into semi/anti joins, push filters towards sources, and prune columns.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Constraint, Constraints, DataFusionError, TableReference};
use datafusion::execution::context::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::planner::ContextProvider;
use datafusion::logical_expr::{
    AggregateUDF, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF,
};
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::optimizer::optimizer::{Optimizer, OptimizerContext, OptimizerRule};
use datafusion::prelude::SessionConfig;
use datafusion::sql::planner::{ParserOptions, SqlToRel};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use segstream_types::{Error, Position, Result};

use crate::ast::{CreateSegment, ObjectKind};
use crate::catalog::Catalog;
use crate::lower;
use crate::plan::IncrementalPlan;
use crate::source_map::SourceMap;

/// The schema of the system tables, which a segment may not read.
pub const SYSTEM_SCHEMA: &str = "segstream";

pub(crate) struct PlannedSegment {
    pub plan: IncrementalPlan,
    pub schema: SchemaRef,
    pub reads: Vec<String>,
}

pub(crate) fn plan_segment(
    catalog: &Catalog,
    create: &CreateSegment,
    text: &str,
    origin: Option<Position>,
) -> Result<PlannedSegment> {
    let source = SourceMap::new(text, origin, create.query_position);
    let context = PlanningContext::new(catalog);
    let options = segment_parser_options();
    // DataFusion is a library we call with analysts' input: should one of its rules
    // panic on a query it does not expect, that is an error for this statement, not a
    // crash of the engine.
    let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<LogicalPlan> {
        let mut query = create.query.clone();
        crate::absence::desugar(&mut query, catalog)?;
        let logical = SqlToRel::new_with_options(&context, options)
            .sql_statement_to_plan(SqlStatement::Query(query))
            .map_err(|e| from_datafusion(e, create.query_position))?;
        lower::refuse_before_optimizing(&logical, &source)?;
        let logical = apply_stream_retention(logical, catalog)?;
        optimize(logical).map_err(|e| from_datafusion(e, create.query_position))
    }));
    let logical = match planned {
        Ok(result) => result?,
        Err(_) => {
            return Err(Error::internal("DataFusion failed while planning this query; please report it")
                .or_position(create.query_position))
        }
    };
    let plan = lower::lower_segment(&create.name.value, &logical, catalog, &source)?;
    let schema = Arc::new(plan.nodes[plan.root].schema.as_arrow().clone());
    let reads = context.reads.into_inner().into_keys().collect();
    Ok(PlannedSegment { plan, schema, reads })
}

/// Reads every stream that has a retention through `event_time > NOW() - retention`,
/// written as a filter right above its scan: the stream is, to the segment, only the
/// events it still keeps. The optimizer then merges it with the query's own conditions
/// on that scan, so lowering puts it in the same temporal filter as the query's time
/// conditions: a row gets one exit instant, the earlier of the two, and no extra timer.
fn apply_stream_retention(plan: LogicalPlan, catalog: &Catalog) -> Result<LogicalPlan> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::common::{Column, ScalarValue};
    use datafusion::logical_expr::expr::ScalarFunction;
    use datafusion::logical_expr::{binary_expr, Expr, Filter, Operator};

    let now = function_registry()
        .scalar_functions()
        .get("now")
        .cloned()
        .ok_or_else(|| Error::internal("DataFusion has no now() function"))?;
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
        let Some(relation) = catalog.get(scan.table_name.table()) else { return Ok(Transformed::no(node)) };
        let (Some(nanos), Some(event_time)) = (relation.retention, &relation.event_time) else {
            return Ok(Transformed::no(node));
        };
        const DAY: i64 = 86_400_000_000_000;
        let interval = ScalarValue::new_interval_mdn(0, (nanos / DAY) as i32, nanos % DAY);
        let cutoff = binary_expr(
            Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(&now), vec![])),
            Operator::Minus,
            Expr::Literal(interval, None),
        );
        let kept = binary_expr(
            Expr::Column(Column::new(Some(scan.table_name.clone()), event_time.clone())),
            Operator::Gt,
            cutoff,
        );
        Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(kept, Arc::new(node))?)))
    })
    .map(|t| t.data)
    .map_err(|e| from_datafusion(e, None))
}

/// How segment queries are parsed into plans: identifiers lower-cased unless quoted,
/// spans kept for error positions, TEXT as plain Utf8 (the type streams store).
pub fn segment_parser_options() -> ParserOptions {
    let mut options = ParserOptions::new();
    options.collect_spans = true;
    options.map_string_types_to_utf8view = false;
    options.enable_ident_normalization = true;
    options
}

/// The DataFusion configuration every batch query runs with, so that ad hoc queries
/// see the same types as segments.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new().with_information_schema(false);
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    config.options_mut().sql_parser.collect_spans = true;
    config
}

/// The built-in functions, shared by every planning call.
pub fn function_registry() -> &'static SessionState {
    static STATE: OnceLock<SessionState> = OnceLock::new();
    STATE.get_or_init(|| {
        SessionStateBuilder::new().with_config(session_config()).with_default_features().build()
    })
}

/// The optimizer rules a segment's plan goes through, in order.
pub fn segment_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    use datafusion::optimizer::*;
    vec![
        Arc::new(optimize_unions::OptimizeUnions::new()),
        Arc::new(simplify_expressions::SimplifyExpressions::new()),
        Arc::new(replace_distinct_aggregate::ReplaceDistinctWithAggregate::new()),
        Arc::new(eliminate_join::EliminateJoin::new()),
        Arc::new(decorrelate_predicate_subquery::DecorrelatePredicateSubquery::new()),
        Arc::new(scalar_subquery_to_join::ScalarSubqueryToJoin::new()),
        Arc::new(extract_equijoin_predicate::ExtractEquijoinPredicate::new()),
        Arc::new(eliminate_duplicated_expr::EliminateDuplicatedExpr::new()),
        Arc::new(eliminate_filter::EliminateFilter::new()),
        Arc::new(eliminate_cross_join::EliminateCrossJoin::new()),
        Arc::new(propagate_empty_relation::PropagateEmptyRelation::new()),
        Arc::new(eliminate_outer_join::EliminateOuterJoin::new()),
        Arc::new(push_down_filter::PushDownFilter::new()),
        Arc::new(optimize_projections::OptimizeProjections::new()),
    ]
}

fn optimize(plan: LogicalPlan) -> datafusion::common::Result<LogicalPlan> {
    let config = ConfigOptions::default();
    let plan = Analyzer::new().execute_and_check(plan, &config, |_, _| {})?;
    let context = OptimizerContext::new().without_query_execution_start_time();
    Optimizer::with_rules(segment_rules()).optimize(plan, &context, |_, _| {})
}

/// A DataFusion error as ours: its diagnostic's span becomes the position, a parser
/// error stays a syntax error, "not implemented" becomes "not supported".
pub fn from_datafusion(e: DataFusionError, fallback: Option<Position>) -> Error {
    let position = e
        .diagnostic()
        .and_then(|d| d.span)
        .and_then(|s| Position::from_sqlparser(s.start.line, s.start.column))
        .or(fallback);
    let root = e.find_root();
    match root {
        DataFusionError::SQL(parser_error, _) => {
            let e = crate::parser::syntax_error((**parser_error).clone());
            e.or_position(position)
        }
        DataFusionError::NotImplemented(m) => Error::Unsupported {
            message: m.clone(),
            position,
            help: Some("see docs/sql-reference.md for what a segment can contain".into()),
        },
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            // The root error is the most precise (ours from the catalog, with a
            // suggestion; DataFusion's with the valid fields); the diagnostic gives the place.
            let message = root.message().into_owned();
            let help = e.diagnostic().and_then(|d| d.helps.first()).map(|h| h.message.clone());
            Error::Plan { message, position, help }
        }
        DataFusionError::Execution(m) => Error::plan(m.clone(), position),
        other => Error::plan(other.message().into_owned(), position),
    }
}

/// The catalog as DataFusion's planner sees it. Records which relations the query
/// reads, so the catalog knows a segment's dependencies.
struct PlanningContext<'a> {
    catalog: &'a Catalog,
    functions: &'static SessionState,
    reads: RefCell<BTreeMap<String, ObjectKind>>,
}

impl<'a> PlanningContext<'a> {
    fn new(catalog: &'a Catalog) -> Self {
        Self { catalog, functions: function_registry(), reads: RefCell::default() }
    }
}

/// A relation's schema and key, as a planning-only table source.
#[derive(Debug)]
pub struct RelationSource {
    schema: SchemaRef,
    constraints: Option<Constraints>,
}

impl RelationSource {
    /// `key_index` is set when the key is unique in the relation (a table's primary
    /// key, a segment's member key), which lets DataFusion know the key determines
    /// the other columns.
    pub fn new(schema: SchemaRef, key_index: Option<usize>) -> Self {
        let constraints =
            key_index.map(|i| Constraints::new_unverified(vec![Constraint::PrimaryKey(vec![i])]));
        Self { schema, constraints }
    }
}

impl TableSource for RelationSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.constraints.as_ref()
    }
}

impl ContextProvider for PlanningContext<'_> {
    fn get_table_source(&self, name: TableReference) -> datafusion::common::Result<Arc<dyn TableSource>> {
        let table = match &name {
            TableReference::Bare { table } => table.as_ref(),
            TableReference::Partial { schema, table } if schema.as_ref() == SYSTEM_SCHEMA => {
                return Err(DataFusionError::Plan(format!(
                    "a segment cannot read the system table {SYSTEM_SCHEMA}.{table}: it describes segments, \
                     it is not data"
                )));
            }
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "`{name}`: segstream names are not qualified; write just `{}`",
                    name.table()
                )));
            }
        };
        let Some(relation) = self.catalog.get(table) else {
            let mut message = format!("no stream, table or segment is named `{table}`");
            if let Some(close) = closest(table, self.catalog.relations().map(|r| r.name.as_str())) {
                message.push_str(&format!(" (did you mean `{close}`?)"));
            }
            return Err(DataFusionError::Plan(message));
        };
        self.reads.borrow_mut().insert(relation.name.clone(), relation.kind);
        let key_index = match relation.kind {
            ObjectKind::Stream => None,
            ObjectKind::Table | ObjectKind::Segment => relation.schema.index_of(&relation.key).ok(),
        };
        Ok(Arc::new(RelationSource::new(Arc::clone(&relation.schema), key_index)))
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.functions.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.functions.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.functions.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.functions.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.functions.config_options()
    }

    fn get_expr_planners(&self) -> &[Arc<dyn datafusion::logical_expr::planner::ExprPlanner>] {
        self.functions.expr_planners()
    }

    fn udf_names(&self) -> Vec<String> {
        self.functions.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.functions.higher_order_functions().keys().cloned().collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.functions.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.functions.window_functions().keys().cloned().collect()
    }
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates.map(|c| (edit_distance(name, c), c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["events", "profiles", "recent_buyers"];
        assert_eq!(closest("event", names.iter().copied()), Some("events"));
        assert_eq!(closest("profile", names.iter().copied()), Some("profiles"));
        assert_eq!(closest("orders", names.iter().copied()), None);
    }
}
