//! The incremental plan: the operator graph the engine runs for one segment.
//!
//! Lowering turns DataFusion's optimised `LogicalPlan` into this graph. Each node says
//! what it computes over deltas (rows with +/- weights), what state it keeps between
//! steps, and which timers it sets; `EXPLAIN SEGMENT` prints exactly that. Expressions
//! stay DataFusion `Expr`s with the node's input schema, so the engine turns them into
//! physical expressions and evaluates whole Arrow batches.
//!
//! ```text
//!   Source(events) -> Filter -> TemporalFilter -> Aggregate -> Filter -> Project -> Membership
//!        stored          -        timers            per-group     -          -      members +
//!        events                                     accumulators                    change log
//! ```

use std::fmt::{self, Write as _};

use datafusion::common::DFSchemaRef;
use datafusion::logical_expr::{Expr, ScalarUDF};

use crate::ast::ObjectKind;
use crate::temporal::{TimeBound, TimeBoundKind};

/// Index of a node in [`IncrementalPlan::nodes`].
pub type NodeId = usize;

/// One segment's operator graph. Nodes are stored inputs-first: every node's inputs have
/// smaller ids, so running the nodes in id order is a topological order.
#[derive(Debug, Clone)]
pub struct IncrementalPlan {
    pub segment: String,
    pub nodes: Vec<PlanNode>,
    /// The membership sink, always the last node.
    pub root: NodeId,
}

#[derive(Debug, Clone)]
pub struct PlanNode {
    pub operator: Operator,
    pub inputs: Vec<NodeId>,
    /// The schema of the rows this node emits.
    pub schema: DFSchemaRef,
}

#[derive(Debug, Clone)]
pub enum Operator {
    /// Deltas of a stream (inserts), a table (upserts as retract + insert) or another
    /// segment (its membership changes). `columns` are the source columns read.
    Source { relation: String, kind: ObjectKind, key: String, columns: Vec<String> },
    /// Fixed rows (`VALUES`, `SELECT` without `FROM`): emitted once, at creation.
    /// Each row is a list of constant expressions.
    Constant { rows: Vec<Vec<Expr>> },
    /// Keeps the rows for which the predicate is true. Stateless.
    Filter { predicate: Expr },
    /// Computes output columns row by row. Stateless.
    Project { exprs: Vec<Expr> },
    /// Rows valid only during a window of clock time, `[from, until)`, derived from
    /// comparisons with `NOW()`. Keeps durable timers that emit the row at `from` and
    /// retract it at `until`.
    TemporalFilter { bounds: Vec<TimeBound> },
    /// Grouped aggregation with retraction.
    Aggregate { group_by: Vec<Expr>, aggregates: Vec<AggregateCall> },
    /// Equality join with an optional residual condition. `null_aware` is NOT IN's
    /// rule (a NULL on the right makes every left row unknown); `nulls_equal` is
    /// INTERSECT's and EXCEPT's (NULL keys match each other).
    Join {
        kind: JoinKind,
        on: Vec<(Expr, Expr)>,
        residual: Option<Expr>,
        null_aware: bool,
        nulls_equal: bool,
    },
    /// Bag union of inputs with the same schema. Stateless.
    UnionAll,
    /// Keeps rows whose member key is not NULL (a NULL key is no member).
    KeyNotNull { key: String },
    /// Turns weights into membership: key -> (weight, attributes); a 0 -> positive
    /// flip is `entered`, positive -> 0 `exited`, changed attributes `updated`.
    Membership { key: String, attributes: Vec<String> },
}

/// Joins a segment can maintain. Semi and anti joins emit left rows only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    LeftOuter,
    LeftSemi,
    LeftAnti,
}

/// An aggregate function call in an [`Operator::Aggregate`].
#[derive(Debug, Clone)]
pub struct AggregateCall {
    pub function: AggregateFunction,
    pub args: Vec<Expr>,
    pub distinct: bool,
    /// The output column name DataFusion gave it (what parents refer to).
    pub output: String,
}

/// The aggregates that can be maintained under retraction, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    BoolAnd,
    BoolOr,
}

impl AggregateFunction {
    /// DataFusion's function name -> ours; `None` for aggregates a segment can't keep.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "avg" | "mean" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "bool_and" => Self::BoolAnd,
            "bool_or" => Self::BoolOr,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::BoolAnd => "bool_and",
            Self::BoolOr => "bool_or",
        }
    }

    /// What the per-group state holds so that any row can be retracted.
    fn state(self, distinct: bool) -> &'static str {
        match (self, distinct) {
            (Self::Count, true) => "value -> count (distinct values)",
            (Self::Count, false) => "count",
            (Self::Sum, _) => "sum and non-null count",
            (Self::Avg, _) => "sum and count",
            (Self::Min | Self::Max, _) => "value -> count multiset",
            (Self::BoolAnd | Self::BoolOr, _) => "true and false counts",
        }
    }
}

impl IncrementalPlan {
    /// The relations the segment reads directly.
    pub fn sources(&self) -> impl Iterator<Item = (&str, ObjectKind)> {
        self.nodes.iter().filter_map(|n| match &n.operator {
            Operator::Source { relation, kind, .. } => Some((relation.as_str(), *kind)),
            _ => None,
        })
    }

    /// For each node, the column of its rows that holds the member key those rows count
    /// towards, if the plan keeps member keys apart: every operator's output for one key
    /// depends only on its inputs' rows of that same key. Then rows of different keys
    /// never meet, and a clock advance may fire the timers of different keys at
    /// different instants in one pass (each key at its own instant) and still log what
    /// one step per instant would.
    ///
    /// `None` when an operator mixes keys: an aggregate not grouped by the key, a join
    /// whose equality does not carry it, a key computed by an expression, `NOT IN` over a
    /// nullable column (one NULL makes every row unknown), or a segment read through a
    /// column other than its member key.
    pub fn member_key_columns(&self) -> Option<Vec<Option<usize>>> {
        let mut column: Vec<Option<usize>> = vec![None; self.nodes.len()];
        column[self.root] = Some(0);
        // Inputs have smaller ids: from the root down, each node's column is known
        // before its inputs are visited.
        for id in (0..self.nodes.len()).rev() {
            let Some(c) = column[id] else { continue };
            let node = &self.nodes[id];
            let mut carries = |input: NodeId, at: usize| match column[input] {
                None => {
                    column[input] = Some(at);
                    true
                }
                Some(existing) => existing == at,
            };
            let index = |input: NodeId, e: &Expr| {
                let e = match e {
                    Expr::Alias(a) => a.expr.as_ref(),
                    other => other,
                };
                match e {
                    Expr::Column(col) => self.nodes[input].schema.index_of_column(col).ok(),
                    _ => None,
                }
            };
            let kept_apart = match &node.operator {
                Operator::Source { kind: ObjectKind::Segment, key, columns, .. } => {
                    columns.get(c) == Some(key)
                }
                Operator::Source { .. } | Operator::Constant { .. } => true,
                Operator::Filter { .. }
                | Operator::TemporalFilter { .. }
                | Operator::KeyNotNull { .. }
                | Operator::Membership { .. } => carries(node.inputs[0], c),
                Operator::Project { exprs } => exprs
                    .get(c)
                    .and_then(|e| index(node.inputs[0], e))
                    .is_some_and(|j| carries(node.inputs[0], j)),
                Operator::Aggregate { group_by, .. } => group_by
                    .get(c)
                    .and_then(|e| index(node.inputs[0], e))
                    .is_some_and(|j| carries(node.inputs[0], j)),
                Operator::UnionAll => node.inputs.iter().all(|&i| carries(i, c)),
                Operator::Join { kind, on, null_aware, .. } => {
                    let (left, right) = (node.inputs[0], node.inputs[1]);
                    let left_width = self.nodes[left].schema.fields().len();
                    // Semi, anti and outer joins emit left rows (outer ones padded with
                    // NULLs): only a left column can carry the key.
                    let from_left = c < left_width;
                    let pairs: Vec<(usize, usize)> =
                        on.iter().filter_map(|(l, r)| Some((index(left, l)?, index(right, r)?))).collect();
                    let pair = pairs.iter().copied().find(|&(l, r)| {
                        if from_left {
                            l == c
                        } else {
                            *kind == JoinKind::Inner && r == c - left_width
                        }
                    });
                    let nullable = |side: NodeId, i: usize| self.nodes[side].schema.field(i).is_nullable();
                    // NOT IN: a NULL on either side is unknown against every key.
                    let null_safe = !null_aware
                        || (pairs.len() == on.len()
                            && pairs.iter().all(|&(l, r)| !nullable(left, l) && !nullable(right, r)));
                    null_safe && pair.is_some_and(|(l, r)| carries(left, l) && carries(right, r))
                }
            };
            if !kept_apart {
                return None;
            }
        }
        Some(column)
    }

    /// The text of `EXPLAIN SEGMENT`: the operator tree from the membership sink down to
    /// the sources, each node with the state it keeps and the timers it sets.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        self.explain_node(self.root, 0, &mut out);
        out
    }

    fn explain_node(&self, id: NodeId, depth: usize, out: &mut String) {
        let node = &self.nodes[id];
        let indent = "  ".repeat(depth);
        let _ = writeln!(out, "{indent}{}", node.operator.describe());
        if let Some(state) = node.operator.state() {
            let _ = writeln!(out, "{indent}    state: {state}");
        }
        if let Some(timers) = node.operator.timers() {
            let _ = writeln!(out, "{indent}    timers: {timers}");
        }
        for &input in &node.inputs {
            self.explain_node(input, depth + 1, out);
        }
    }
}

impl Operator {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Source { .. } => "Source",
            Self::Constant { .. } => "Constant",
            Self::Filter { .. } => "Filter",
            Self::Project { .. } => "Project",
            Self::TemporalFilter { .. } => "TemporalFilter",
            Self::Aggregate { .. } => "Aggregate",
            Self::Join { .. } => "Join",
            Self::UnionAll => "UnionAll",
            Self::KeyNotNull { .. } => "KeyNotNull",
            Self::Membership { .. } => "Membership",
        }
    }

    /// One line: the operator and its parameters.
    pub fn describe(&self) -> String {
        let name = self.name();
        match self {
            Self::Source { relation, kind, key, columns } => {
                format!("{name}: {kind} {relation} key={key} columns=[{}]", columns.join(", "))
            }
            Self::Constant { rows } => format!("{name}: {} row(s)", rows.len()),
            Self::Filter { predicate } => format!("{name}: {}", sql(predicate)),
            Self::Project { exprs } => {
                format!("{name}: {}", exprs.iter().map(sql).collect::<Vec<_>>().join(", "))
            }
            Self::TemporalFilter { bounds } => format!(
                "{name}: {}",
                bounds.iter().map(|b| b.condition.clone()).collect::<Vec<_>>().join(" AND ")
            ),
            Self::Aggregate { group_by, aggregates } => format!(
                "{name}: group_by=[{}] aggregates=[{}]",
                group_by.iter().map(sql).collect::<Vec<_>>().join(", "),
                aggregates.iter().map(AggregateCall::to_string).collect::<Vec<_>>().join(", ")
            ),
            Self::Join { kind, on, residual, null_aware, nulls_equal } => {
                let on = on.iter().map(|(l, r)| format!("{} = {}", sql(l), sql(r))).collect::<Vec<_>>();
                let mut s = format!("{name}: {} on [{}]", kind.as_str(), on.join(", "));
                if let Some(residual) = residual {
                    let _ = write!(s, " residual={}", sql(residual));
                }
                if *null_aware {
                    s.push_str(" null_aware (NOT IN)");
                }
                if *nulls_equal {
                    s.push_str(" nulls_equal");
                }
                s
            }
            Self::UnionAll => name.to_string(),
            Self::KeyNotNull { key } => format!("{name}: {key} IS NOT NULL"),
            Self::Membership { key, attributes } => {
                format!("{name}: key={key} attributes=[{}]", attributes.join(", "))
            }
        }
    }

    /// What the operator keeps in the state store between steps; `None` if stateless.
    pub fn state(&self) -> Option<String> {
        match self {
            Self::Source { kind: ObjectKind::Stream, .. } => Some(
                "stored events in event-time order, shared by every segment reading the stream (read whole \
                 only to backfill a new segment)"
                    .to_string(),
            ),
            Self::Source { kind: ObjectKind::Table, key, .. } => {
                Some(format!("table rows by primary key {key}"))
            }
            Self::Source { kind: ObjectKind::Segment, relation, .. } => {
                Some(format!("none of its own: reads {relation}'s membership changes in the same step"))
            }
            Self::TemporalFilter { .. } => {
                Some("pending timers keyed by (instant, operator, row), with signed weights".into())
            }
            Self::Aggregate { group_by, aggregates } if aggregates.is_empty() => Some(format!(
                "row counts by [{}] (a row is present while its count is positive)",
                group_by.iter().map(sql).collect::<Vec<_>>().join(", ")
            )),
            Self::Aggregate { group_by, aggregates } => Some(format!(
                "per-group accumulators by [{}]: {}",
                group_by.iter().map(sql).collect::<Vec<_>>().join(", "),
                aggregates
                    .iter()
                    .map(|a| format!("{} -> {}", a.output, a.function.state(a.distinct)))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            Self::Join { kind, on, .. } => {
                let left = on.iter().map(|(l, _)| sql(l)).collect::<Vec<_>>().join(", ");
                let right = on.iter().map(|(_, r)| sql(r)).collect::<Vec<_>>().join(", ");
                Some(match kind {
                    JoinKind::LeftSemi | JoinKind::LeftAnti => format!(
                        "left rows indexed by [{left}] with their count of matching right rows; \
                         right rows indexed by [{right}]"
                    ),
                    JoinKind::Inner | JoinKind::LeftOuter => {
                        format!("left rows indexed by [{left}]; right rows indexed by [{right}]")
                    }
                })
            }
            Self::Membership { key, .. } => Some(format!(
                "members by {key}: weight and attributes; the segment's change log (seq, kind, at)"
            )),
            Self::Constant { .. }
            | Self::Filter { .. }
            | Self::Project { .. }
            | Self::UnionAll
            | Self::KeyNotNull { .. } => None,
        }
    }

    /// The timers the operator sets, if any.
    pub fn timers(&self) -> Option<String> {
        match self {
            Self::TemporalFilter { bounds } => Some(
                bounds
                    .iter()
                    .map(|b| match b.kind {
                        TimeBoundKind::From => format!("enter at {}", b.instant_sql()),
                        TimeBoundKind::Until => format!("exit at {}", b.instant_sql()),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        }
    }
}

impl JoinKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inner => "inner",
            Self::LeftOuter => "left outer",
            Self::LeftSemi => "left semi",
            Self::LeftAnti => "left anti",
        }
    }
}

impl fmt::Display for AggregateCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args = if self.args.is_empty() {
            "*".to_string()
        } else {
            self.args.iter().map(sql).collect::<Vec<_>>().join(", ")
        };
        let distinct = if self.distinct { "DISTINCT " } else { "" };
        write!(f, "{}({distinct}{args})", self.function.name())
    }
}

/// An expression as SQL text for EXPLAIN, through DataFusion's unparser (literals
/// quoted, intervals as `INTERVAL '...'`); DataFusion's own display if it cannot.
pub(crate) fn sql(expr: &Expr) -> String {
    match datafusion::sql::unparser::expr_to_sql(expr) {
        Ok(ast) => ast.to_string(),
        Err(_) => expr.human_display().to_string(),
    }
}

/// Whether an expression calls a function with this name (NOW(), ...).
pub(crate) fn calls(expr: &Expr, pred: &dyn Fn(&ScalarUDF) -> bool) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = false;
    let _ = expr.apply(|e| {
        if let Expr::ScalarFunction(f) = e {
            if pred(&f.func) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}
