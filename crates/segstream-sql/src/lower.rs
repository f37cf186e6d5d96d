//! Lowering: one bottom-up rewriter that matches every `LogicalPlan` variant and either
//! turns it into incremental operators or refuses it with what, where and what to write
//! instead. A variant added to DataFusion fails to compile here until it is decided.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, JoinType, NullEquality};

use crate::ast::ObjectKind;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan, Volatility};
use segstream_types::{Error, Result};

use crate::catalog::Catalog;
use crate::plan::{AggregateCall, AggregateFunction, IncrementalPlan, JoinKind, NodeId, Operator, PlanNode};
use crate::schema::{is_key_type, is_storable, sql_type_name};
use crate::source_map::{Locate, SourceMap};
use crate::temporal::{contains_now, extract_bounds, is_now, is_other_clock_function};

pub(crate) fn lower_segment(
    segment: &str,
    plan: &LogicalPlan,
    catalog: &Catalog,
    source: &SourceMap,
) -> Result<IncrementalPlan> {
    let mut lowering = Lowering { nodes: Vec::new(), catalog, source };
    let top = lowering.lower(plan)?;
    let schema = Arc::clone(&lowering.nodes[top].schema);
    let fields = schema.fields();
    let Some(key_field) = fields.first() else {
        return Err(Error::plan(
            "a segment's query must return at least one column: the member key",
            source.find(&Locate::Query),
        )
        .with_help("e.g. `SELECT user_id FROM ...`"));
    };
    let key = key_field.name().clone();
    if !is_key_type(key_field.data_type()) {
        return Err(lowering.refuse(
            Locate::Query,
            format!(
                "the member key `{key}` (the first column) has type {}",
                sql_type_name(key_field.data_type())
            ),
            "make the first column an id: TEXT, SMALLINT, INT or BIGINT, e.g. `SELECT user_id, ...`",
        ));
    }
    let attributes: Vec<String> = fields.iter().skip(1).map(|f| f.name().clone()).collect();
    if let Some(dup) = attributes.iter().enumerate().find(|(i, a)| **a == key || attributes[..*i].contains(a))
    {
        return Err(Error::plan(
            format!("the column name `{}` appears twice in the segment", dup.1),
            source.find(&Locate::Query),
        )
        .with_help("give each column its own name with AS"));
    }
    if !attributes.is_empty() && !lowering.unique_columns(top).is_some_and(|u| u.iter().all(|&i| i == 0)) {
        return Err(lowering.refuse(
            Locate::Query,
            format!("a member has one set of attributes, but `{key}` is not unique in this query's result"),
            format!("GROUP BY {key} (and aggregate the attributes), or select only `{key}`"),
        ));
    }
    for node in &lowering.nodes {
        for field in node.schema.fields() {
            if !is_storable(field.data_type()) {
                return Err(lowering.refuse(
                    Locate::Query,
                    format!(
                        "the value `{}` has type {}, which a segment cannot keep in its state",
                        field.name(),
                        field.data_type()
                    ),
                    "CAST it to BIGINT, DOUBLE, TEXT, BOOLEAN, DATE or TIMESTAMP",
                ));
            }
        }
    }
    let mut input = top;
    if key_field.is_nullable() {
        input = lowering.push(Operator::KeyNotNull { key: key.clone() }, vec![input], Arc::clone(&schema));
    }
    let root = lowering.push(Operator::Membership { key, attributes }, vec![input], schema);
    Ok(IncrementalPlan { segment: segment.to_string(), nodes: lowering.nodes, root })
}

/// Refuses, before the optimizer runs, what some optimizer rules do not expect in a
/// plan (DataFusion 55's `ReplaceDistinctWithAggregate` panics on `DISTINCT ON` without
/// `ORDER BY`).
pub(crate) fn refuse_before_optimizing(plan: &LogicalPlan, source: &SourceMap) -> Result<()> {
    let mut found = false;
    let _ = plan.apply(|node| {
        found |= matches!(node, LogicalPlan::Distinct(Distinct::On(_)));
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    if found {
        return Err(distinct_on(source));
    }
    Ok(())
}

fn distinct_on(source: &SourceMap) -> Error {
    Error::unsupported(
        "DISTINCT ON is not supported in a segment: it picks one row by an order",
        source.find(&Locate::Word("distinct")),
        "GROUP BY the key and aggregate, e.g. `SELECT user_id, MAX(ts) FROM events GROUP BY user_id`",
    )
}

struct Lowering<'a> {
    nodes: Vec<PlanNode>,
    catalog: &'a Catalog,
    source: &'a SourceMap,
}

impl Lowering<'_> {
    /// Columns whose values identify at most one row of a node's output (a key), if
    /// the plan guarantees one: a table's primary key, a segment's member key, the
    /// GROUP BY columns, carried through filters, projections and joins that match
    /// each row at most once. Used to check that a member has one set of attributes.
    fn unique_columns(&self, id: NodeId) -> Option<Vec<usize>> {
        let node = &self.nodes[id];
        match &node.operator {
            Operator::Source { kind: ObjectKind::Table | ObjectKind::Segment, key, .. } => {
                node.schema.fields().iter().position(|f| f.name() == key).map(|i| vec![i])
            }
            Operator::Source { .. } | Operator::UnionAll => None,
            Operator::Constant { rows } => (rows.len() <= 1).then(Vec::new),
            Operator::Filter { .. }
            | Operator::TemporalFilter { .. }
            | Operator::KeyNotNull { .. }
            | Operator::Membership { .. } => self.unique_columns(node.inputs[0]),
            Operator::Aggregate { group_by, .. } => Some((0..group_by.len()).collect()),
            Operator::Project { exprs } => {
                let input = node.inputs[0];
                let input_schema = &self.nodes[input].schema;
                let unique = self.unique_columns(input)?;
                unique
                    .into_iter()
                    .map(|u| {
                        exprs.iter().position(|e| {
                            let e = match e {
                                Expr::Alias(a) => a.expr.as_ref(),
                                other => other,
                            };
                            matches!(e, Expr::Column(c) if input_schema.index_of_column(c).ok() == Some(u))
                        })
                    })
                    .collect()
            }
            Operator::Join { kind, on, .. } => {
                let (left, right) = (node.inputs[0], node.inputs[1]);
                let left_unique = self.unique_columns(left);
                if matches!(kind, JoinKind::LeftSemi | JoinKind::LeftAnti) {
                    return left_unique;
                }
                let column_index = |side: NodeId, e: &Expr| match e {
                    Expr::Column(c) => self.nodes[side].schema.index_of_column(c).ok(),
                    _ => None,
                };
                let left_keys: Vec<usize> = on.iter().filter_map(|(l, _)| column_index(left, l)).collect();
                let right_keys: Vec<usize> = on.iter().filter_map(|(_, r)| column_index(right, r)).collect();
                let right_unique = self.unique_columns(right);
                // Each left row meets at most one right row when the right side's key is
                // all equated with left columns; then the left key stays a key.
                if let (Some(l), Some(r)) = (&left_unique, &right_unique) {
                    if r.iter().all(|i| right_keys.contains(i)) {
                        return Some(l.clone());
                    }
                }
                if *kind == JoinKind::Inner {
                    if let (Some(l), Some(r)) = (&left_unique, &right_unique) {
                        if l.iter().all(|i| left_keys.contains(i)) {
                            let offset = self.nodes[left].schema.fields().len();
                            return Some(r.iter().map(|i| i + offset).collect());
                        }
                    }
                }
                None
            }
        }
    }

    fn push(&mut self, operator: Operator, inputs: Vec<NodeId>, schema: DFSchemaRef) -> NodeId {
        self.nodes.push(PlanNode { operator, inputs, schema });
        self.nodes.len() - 1
    }

    fn refuse(&self, at: Locate, message: impl Into<String>, help: impl Into<String>) -> Error {
        Error::unsupported(message, self.source.find(&at), help)
    }

    fn lower(&mut self, plan: &LogicalPlan) -> Result<NodeId> {
        match plan {
            LogicalPlan::Projection(p) => {
                let input = self.lower(&p.input)?;
                for e in &p.expr {
                    self.check_expr(e, Clause::Select)?;
                }
                let identity = p.expr.len() == p.input.schema().fields().len()
                    && p.expr.iter().enumerate().all(|(i, e)| {
                        matches!(e, Expr::Column(c) if p.input.schema().qualified_field(i).1.name() == &c.name
                            && p.input.schema().qualified_field(i).0 == c.relation.as_ref())
                    });
                if identity {
                    self.nodes[input].schema = Arc::clone(&p.schema);
                    return Ok(input);
                }
                Ok(self.push(Operator::Project { exprs: p.expr.clone() }, vec![input], Arc::clone(&p.schema)))
            }
            LogicalPlan::Filter(f) => {
                let mut node = self.lower(&f.input)?;
                let schema = f.input.schema();
                let (temporal, plain): (Vec<&Expr>, Vec<&Expr>) =
                    split_conjunction(&f.predicate).into_iter().partition(|c| contains_now(c));
                for c in &plain {
                    self.check_expr(c, Clause::Where)?;
                }
                if let Some(predicate) = plain.into_iter().cloned().reduce(Expr::and) {
                    node = self.push(Operator::Filter { predicate }, vec![node], Arc::clone(schema));
                }
                let mut bounds = Vec::new();
                for c in temporal {
                    self.check_expr(c, Clause::TemporalCondition)?;
                    let found = extract_bounds(c, schema)
                        .map_err(|e| self.refuse(Locate::Now, e.message(), e.help()))?;
                    bounds.extend(found);
                }
                if !bounds.is_empty() {
                    node = self.push(Operator::TemporalFilter { bounds }, vec![node], Arc::clone(schema));
                }
                Ok(node)
            }
            LogicalPlan::Window(_) => Err(self.refuse(
                Locate::Word("over"),
                "window functions (OVER) are not supported in a segment",
                "a window over all rows changes every member on every event; use GROUP BY with \
                 COUNT/SUM/MIN/MAX, or a time condition such as `ts > NOW() - INTERVAL '1 day'`",
            )),
            LogicalPlan::Aggregate(a) => {
                let input = self.lower(&a.input)?;
                if a.group_expr.is_empty() {
                    return Err(self.refuse(
                        Locate::Query,
                        "an aggregate over all rows (no GROUP BY) has no member key",
                        "group by the member key, e.g. `GROUP BY user_id`",
                    ));
                }
                for g in &a.group_expr {
                    if matches!(g, Expr::GroupingSet(_)) {
                        return Err(self.refuse(
                            Locate::Word("group"),
                            "GROUPING SETS, ROLLUP and CUBE are not supported in a segment",
                            "group by the member key only",
                        ));
                    }
                    self.check_expr(g, Clause::GroupBy)?;
                }
                let group_len = a.group_expr.len();
                let mut aggregates = Vec::with_capacity(a.aggr_expr.len());
                for (i, e) in a.aggr_expr.iter().enumerate() {
                    let output = a.schema.field(group_len + i).name().clone();
                    aggregates.push(self.aggregate_call(e, output)?);
                }
                Ok(self.push(
                    Operator::Aggregate { group_by: a.group_expr.clone(), aggregates },
                    vec![input],
                    Arc::clone(&a.schema),
                ))
            }
            LogicalPlan::Sort(_) => Err(self.refuse(
                Locate::Word("order"),
                "ORDER BY has no meaning in a segment: membership is a set",
                "remove ORDER BY; order when you query the segment, e.g. `SELECT * FROM my_segment ORDER BY 1`",
            )),
            LogicalPlan::Join(j) => {
                let kind = match j.join_type {
                    JoinType::Inner => JoinKind::Inner,
                    JoinType::Left => JoinKind::LeftOuter,
                    JoinType::LeftSemi => JoinKind::LeftSemi,
                    JoinType::LeftAnti => JoinKind::LeftAnti,
                    JoinType::Right => {
                        return Err(self.refuse(
                            Locate::Word("right"),
                            "RIGHT JOIN is not supported in a segment",
                            "swap the two sides and write LEFT JOIN",
                        ))
                    }
                    JoinType::Full => {
                        return Err(self.refuse(
                            Locate::Word("full"),
                            "FULL JOIN is not supported in a segment",
                            "a member needs a key from one side: use LEFT JOIN, or UNION of two segments",
                        ))
                    }
                    other => {
                        return Err(self.refuse(
                            Locate::Query,
                            format!("this condition plans as a {other} join, which a segment cannot maintain"),
                            "write the subquery as `key IN (SELECT ...)` or `NOT EXISTS (... WHERE inner.key = outer.key)` \
                             in a conjunction (AND), not inside OR",
                        ))
                    }
                };
                if j.null_aware && j.on.len() != 1 {
                    return Err(self.refuse(
                        Locate::Word("not"),
                        "NOT IN with a correlated subquery is not supported in a segment",
                        "write NOT EXISTS (SELECT 1 FROM ... WHERE s.y = t.x AND s.g = t.g), which gives the same \
                         members when the subquery's column is never NULL",
                    ));
                }
                if j.on.is_empty() {
                    return Err(self.refuse(
                        Locate::Query,
                        "a join (or correlated subquery) without an equality condition",
                        "join on a key, e.g. `ON e.user_id = p.user_id`, or correlate with `WHERE p.user_id = c.user_id`",
                    ));
                }
                for (l, r) in &j.on {
                    self.check_expr(l, Clause::Join)?;
                    self.check_expr(r, Clause::Join)?;
                }
                if let Some(f) = &j.filter {
                    self.check_expr(f, Clause::Join)?;
                }
                let left = self.lower(&j.left)?;
                let right = self.lower(&j.right)?;
                Ok(self.push(
                    Operator::Join {
                        kind,
                        on: j.on.clone(),
                        residual: j.filter.clone(),
                        null_aware: j.null_aware,
                        nulls_equal: j.null_equality == NullEquality::NullEqualsNull,
                    },
                    vec![left, right],
                    Arc::clone(&j.schema),
                ))
            }
            LogicalPlan::Repartition(r) => self.lower(&r.input),
            LogicalPlan::Union(u) => {
                let inputs = u.inputs.iter().map(|i| self.lower(i)).collect::<Result<Vec<_>>>()?;
                Ok(self.push(Operator::UnionAll, inputs, Arc::clone(&u.schema)))
            }
            LogicalPlan::TableScan(t) => {
                let name = t.table_name.table();
                let Some(relation) = self.catalog.get(name) else {
                    return Err(Error::internal(format!("planned a scan of unknown relation {name}")));
                };
                if t.fetch.is_some() {
                    return Err(self.refuse(Locate::Word("limit"), "LIMIT is not supported in a segment", LIMIT_HELP));
                }
                let columns = t.projected_schema.fields().iter().map(|f| f.name().clone()).collect();
                let mut node = self.push(
                    Operator::Source {
                        relation: relation.name.clone(),
                        kind: relation.kind,
                        key: relation.key.clone(),
                        columns,
                    },
                    vec![],
                    Arc::clone(&t.projected_schema),
                );
                if let Some(predicate) = t.filters.iter().cloned().reduce(Expr::and) {
                    node = self.push(Operator::Filter { predicate }, vec![node], Arc::clone(&t.projected_schema));
                }
                Ok(node)
            }
            LogicalPlan::EmptyRelation(e) => Ok(self.push(
                Operator::Constant { rows: Vec::from_iter((e.produce_one_row).then(Vec::new)) },
                vec![],
                Arc::clone(&e.schema),
            )),
            LogicalPlan::Values(v) => {
                for row in &v.values {
                    for e in row {
                        self.check_expr(e, Clause::Select)?;
                    }
                }
                Ok(self.push(Operator::Constant { rows: v.values.clone() }, vec![], Arc::clone(&v.schema)))
            }
            LogicalPlan::SubqueryAlias(s) => {
                let node = self.lower(&s.input)?;
                // Same rows, new qualifiers: parents refer to columns by the alias.
                self.nodes[node].schema = Arc::clone(&s.schema);
                Ok(node)
            }
            LogicalPlan::Subquery(_) => Err(self.refuse(
                Locate::Query,
                "this subquery cannot be turned into a join, so it cannot be maintained incrementally",
                "correlate it with an equality, e.g. `WHERE p.user_id = c.user_id`, and use it with IN, \
                 NOT IN, EXISTS or NOT EXISTS in WHERE",
            )),
            LogicalPlan::Limit(_) => Err(self.refuse(
                Locate::Word(
                    ["limit", "offset", "fetch"].into_iter().find(|w| self.source.contains_word(w)).unwrap_or("limit"),
                ),
                "LIMIT, OFFSET and FETCH are not supported in a segment",
                LIMIT_HELP,
            )),
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let node = self.lower(input)?;
                let group_by = input.schema().columns().into_iter().map(Expr::Column).collect();
                Ok(self.push(
                    Operator::Aggregate { group_by, aggregates: Vec::new() },
                    vec![node],
                    Arc::clone(input.schema()),
                ))
            }
            LogicalPlan::Distinct(Distinct::On(_)) => Err(distinct_on(self.source)),
            LogicalPlan::Unnest(_) => Err(self.refuse(
                Locate::Function("unnest".into()),
                "UNNEST is not supported in a segment",
                "store one row per value instead of an array",
            )),
            LogicalPlan::RecursiveQuery(_) => Err(self.refuse(
                Locate::Word("recursive"),
                "recursive queries are not supported in a segment",
                "build the chain from segments that read segments",
            )),
            LogicalPlan::Extension(e) => Err(self.refuse(
                Locate::Query,
                format!("the plan node {} is not supported in a segment", e.node.name()),
                "see docs/sql-reference.md for what a segment can contain",
            )),
            LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_) => Err(self.refuse(
                Locate::Query,
                format!("a segment is defined by a query, not by {}", plan.display()),
                "write `CREATE SEGMENT name AS SELECT ...`",
            )),
        }
    }

    fn aggregate_call(&self, e: &Expr, output: String) -> Result<AggregateCall> {
        let e = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(af) = e else {
            return Err(Error::internal(format!("aggregate expression is not a function call: {e}")));
        };
        let name = af.func.name().to_string();
        let Some(function) = AggregateFunction::from_name(&name) else {
            return Err(self.refuse(
                Locate::Function(name.clone()),
                format!("the aggregate {name}() cannot be maintained as rows enter and leave"),
                "use COUNT, COUNT(DISTINCT ...), SUM, AVG, MIN, MAX, BOOL_AND or BOOL_OR",
            ));
        };
        if af.params.filter.is_some() {
            return Err(self.refuse(
                Locate::Word("filter"),
                format!("{name}(...) FILTER (WHERE ...) is not supported in a segment"),
                "move the condition into WHERE, or use SUM(CASE WHEN ... THEN 1 ELSE 0 END)",
            ));
        }
        if !af.params.order_by.is_empty() {
            return Err(self.refuse(
                Locate::Word("order"),
                format!("{name}(... ORDER BY ...) is not supported in a segment"),
                "remove the ORDER BY inside the aggregate",
            ));
        }
        if af.params.distinct && function != AggregateFunction::Count {
            return Err(self.refuse(
                Locate::Word("distinct"),
                format!("{name}(DISTINCT ...) is not supported in a segment; only COUNT(DISTINCT ...) is"),
                format!("compute {name} over a DISTINCT subquery"),
            ));
        }
        for arg in &af.params.args {
            self.check_expr(arg, Clause::Aggregate)?;
        }
        Ok(AggregateCall { function, args: af.params.args.clone(), distinct: af.params.distinct, output })
    }

    /// Refuses what an expression must not contain in this clause: volatile functions,
    /// clock functions other than NOW(), NOW() outside a time comparison, window
    /// functions and subqueries that decorrelation left behind.
    fn check_expr(&self, expr: &Expr, clause: Clause) -> Result<()> {
        let mut error = None;
        let _ = expr.apply(|e| {
            let found = match e {
                Expr::ScalarFunction(f) if is_now(&f.func) && clause != Clause::TemporalCondition => {
                    Some(self.refuse(Locate::Now, clause.now_message(), clause.now_help()))
                }
                Expr::ScalarFunction(f) if is_other_clock_function(&f.func) => Some(self.refuse(
                    Locate::Function(f.func.name().to_string()),
                    format!("{}() is not supported in a segment", f.func.name()),
                    "use NOW() in a comparison, e.g. `ts > NOW() - INTERVAL '1 day'`",
                )),
                Expr::ScalarFunction(f) if f.func.signature().volatility == Volatility::Volatile => Some(self.refuse(
                    Locate::Function(f.func.name().to_string()),
                    format!("{}() is volatile: it gives a new value each time, so membership could never be \
                             recomputed exactly", f.func.name()),
                    "remove it; a segment must give the same members for the same data and clock",
                )),
                Expr::WindowFunction(_) => Some(self.refuse(
                    Locate::Word("over"),
                    "window functions (OVER) are not supported in a segment",
                    "use GROUP BY with COUNT/SUM/MIN/MAX",
                )),
                Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_) | Expr::SetComparison(_) => {
                    Some(self.refuse(
                        Locate::Query,
                        "this subquery cannot be turned into a join, so it cannot be maintained incrementally",
                        "use IN, NOT IN, EXISTS or NOT EXISTS joined by AND in WHERE, correlated by equality \
                         (e.g. `WHERE p.user_id = c.user_id`)",
                    ))
                }
                _ => None,
            };
            match found {
                Some(e) => {
                    error = Some(e);
                    Ok(TreeNodeRecursion::Stop)
                }
                None => Ok(TreeNodeRecursion::Continue),
            }
        });
        error.map_or(Ok(()), Err)
    }
}

const LIMIT_HELP: &str = "a segment has every qualifying member; to sample, filter on the key, e.g. \
                          `WHERE user_id LIKE '%7'`, and limit when you query the segment";

/// Where an expression stands, which decides whether NOW() may appear in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clause {
    Select,
    Where,
    TemporalCondition,
    GroupBy,
    Aggregate,
    Join,
}

impl Clause {
    fn now_message(self) -> &'static str {
        match self {
            Self::Select => "NOW() in the SELECT list would make attributes change with the clock",
            Self::Where | Self::TemporalCondition => "NOW() is only allowed in a comparison with a row value",
            Self::GroupBy => "NOW() in GROUP BY would regroup members as the clock moves",
            Self::Aggregate => "NOW() inside an aggregate cannot be maintained as the clock moves",
            Self::Join => "NOW() in a join condition is not supported",
        }
    }

    fn now_help(self) -> &'static str {
        match self {
            Self::Join => "filter one side first, e.g. `(SELECT ... WHERE ts > NOW() - INTERVAL '1 hour')`",
            Self::Where | Self::TemporalCondition => {
                "compare a row's time with NOW() in AND-ed conditions, e.g. `ts > NOW() - INTERVAL '3 hours'` \
                 (for OR, make two segments and UNION them)"
            }
            _ => "compare NOW() with a row's time in WHERE or HAVING, e.g. `HAVING MAX(ts) > NOW() - INTERVAL '14 days'`",
        }
    }
}
