//! One segment's running operators, built from its incremental plan, and the step that
//! pushes deltas through them in topological order (inputs have smaller node ids).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::DFSchema;
use segstream_sql::plan::{IncrementalPlan, Operator};
use segstream_types::{DeltaBatch, Error, Result};

use crate::aggregate::Aggregate;
use crate::context::StepContext;
use crate::expr::RowExpr;
use crate::filter::{key_not_null, Filter};
use crate::join::Join;
use crate::membership::{MemberChange, MembershipSink};
use crate::project::Project;
use crate::state_table::CheckpointedState;
use crate::temporal_filter::TemporalFilter;
use crate::timer_queue::{DueTimer, TimerQueue};

enum Node {
    Source { relation: String, columns: Vec<usize> },
    Constant(DeltaBatch),
    Filter(Filter),
    Project(Project),
    Temporal(TemporalFilter),
    Aggregate(Aggregate),
    Join(Join),
    Union,
    KeyNotNull,
    Membership(MembershipSink),
}

/// What arrives in one step.
#[derive(Default)]
pub struct StepInput<'a> {
    /// Deltas by relation name: stream inserts, table upserts, parent segments' changes.
    pub relations: HashMap<String, DeltaBatch>,
    /// Fired timers of this segment, by node.
    pub fired: HashMap<u32, Vec<&'a DueTimer>>,
    /// The segment's first step (backfill): constant rows are emitted.
    pub initial: bool,
}

pub struct SegmentDataflow {
    pub name: String,
    /// The definition's id: operator state and timers are kept under it.
    pub segment_id: u64,
    /// The id the segment's members and change log are kept under; it survives
    /// CREATE OR REPLACE.
    pub log_id: u64,
    pub output: SchemaRef,
    nodes: Vec<(Node, Vec<usize>, SchemaRef)>,
    /// Each node's empty output, built once: most steps touch few of a segment's nodes,
    /// and an empty Arrow batch is not free to build.
    empty: Vec<DeltaBatch>,
    reads: Vec<String>,
    /// Rows of different member keys never meet in this plan
    /// (`IncrementalPlan::member_key_columns`).
    keeps_keys_apart: bool,
}

impl SegmentDataflow {
    /// `None` when the plan has an operator the engine does not maintain.
    /// `relation_schema` gives each source's full schema; `timers` is the engine's queue,
    /// where the segment's temporal filters set their timers.
    pub fn new(
        name: &str,
        segment_id: u64,
        log_id: u64,
        plan: &IncrementalPlan,
        relation_schema: &dyn Fn(&str) -> Option<SchemaRef>,
        timers: &Arc<TimerQueue>,
    ) -> Result<Option<Self>> {
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        let mut reads = Vec::new();
        let key_columns = plan.member_key_columns();
        for (id, node) in plan.nodes.iter().enumerate() {
            let schema: SchemaRef = Arc::new(node.schema.as_arrow().clone());
            let input_schema = |i: usize| -> &DFSchema { plan.nodes[node.inputs[i]].schema.as_ref() };
            let prefix = || {
                let mut p = segment_id.to_be_bytes().to_vec();
                p.extend_from_slice(&(id as u32).to_be_bytes());
                p
            };
            let runtime = match &node.operator {
                Operator::Source { relation, columns, .. } => {
                    let full = relation_schema(relation)
                        .ok_or_else(|| Error::internal(format!("segment {name} reads unknown {relation}")))?;
                    let columns = columns
                        .iter()
                        .map(|c| full.index_of(c).map_err(|e| Error::internal(e.to_string())))
                        .collect::<Result<_>>()?;
                    reads.push(relation.clone());
                    Node::Source { relation: relation.clone(), columns }
                }
                Operator::Constant { rows } => {
                    let empty = DFSchema::empty();
                    let one_row = RecordBatch::try_new_with_options(
                        Arc::new(Schema::empty()),
                        vec![],
                        &RecordBatchOptions::new().with_row_count(Some(1)),
                    )
                    .map_err(|e| Error::internal(e.to_string()))?;
                    let mut parts = Vec::with_capacity(rows.len());
                    for row in rows {
                        let columns = row
                            .iter()
                            .map(|e| RowExpr::new(e, &empty)?.evaluate(&one_row))
                            .collect::<Result<Vec<_>>>()?;
                        let batch = RecordBatch::try_new_with_options(
                            Arc::clone(&schema),
                            columns,
                            &RecordBatchOptions::new().with_row_count(Some(1)),
                        )
                        .map_err(|e| Error::internal(e.to_string()))?;
                        parts.push(DeltaBatch::inserts(batch));
                    }
                    Node::Constant(DeltaBatch::concat(&schema, &parts)?)
                }
                Operator::Filter { predicate } => Node::Filter(Filter::new(predicate, input_schema(0))?),
                Operator::Project { exprs } => {
                    Node::Project(Project::new(exprs, input_schema(0), Arc::clone(&schema))?)
                }
                Operator::TemporalFilter { bounds } => {
                    let key_column = key_columns.as_ref().and_then(|k| k[id]);
                    Node::Temporal(TemporalFilter::new(
                        bounds,
                        input_schema(0),
                        segment_id,
                        id as u32,
                        key_column,
                        Arc::clone(timers),
                    )?)
                }
                Operator::Aggregate { group_by, aggregates } => Node::Aggregate(Aggregate::new(
                    group_by,
                    aggregates,
                    input_schema(0),
                    Arc::clone(&schema),
                    prefix(),
                )?),
                Operator::UnionAll => Node::Union,
                Operator::KeyNotNull { .. } => Node::KeyNotNull,
                Operator::Membership { .. } => {
                    Node::Membership(MembershipSink::new(Arc::clone(&schema), log_id))
                }
                Operator::Join { kind, on, residual, null_aware, nulls_equal } => Node::Join(Join::new(
                    *kind,
                    on,
                    residual.as_ref(),
                    *null_aware,
                    *nulls_equal,
                    input_schema(0),
                    input_schema(1),
                    Arc::clone(&schema),
                    prefix(),
                )?),
            };
            nodes.push((runtime, node.inputs.clone(), schema));
        }
        let output = Arc::new(plan.nodes[plan.root].schema.as_arrow().clone());
        reads.sort();
        reads.dedup();
        let empty = nodes.iter().map(|(_, _, schema)| DeltaBatch::empty(Arc::clone(schema))).collect();
        Ok(Some(Self {
            name: name.to_string(),
            segment_id,
            log_id,
            output,
            nodes,
            empty,
            reads,
            keeps_keys_apart: key_columns.is_some(),
        }))
    }

    /// Whether rows of different member keys never meet in this segment's operators:
    /// then its timers of different keys may fire at their own instants in one pass.
    pub fn keeps_keys_apart(&self) -> bool {
        self.keeps_keys_apart
    }

    /// The member key (encoded as `codec::encode_key`) a fired timer's row counts
    /// towards; `None` when the segment does not keep keys apart.
    pub fn timer_member_key(&self, timer: &DueTimer) -> Result<Option<Vec<u8>>> {
        match self.nodes.get(timer.node as usize) {
            Some((Node::Temporal(t), _, _)) => t.member_key_of(timer.row()),
            _ => Err(Error::storage(format!("a timer of segment {} names no time condition", self.name))),
        }
    }

    /// Rewrites the state of this segment's joins that a data directory still keeps in
    /// an older layout (see `Join::upgrade_layout`); returns how many rows moved.
    pub fn upgrade_layout(&self, cx: &mut StepContext) -> Result<usize> {
        let mut moved = 0;
        for (node, _, _) in &self.nodes {
            if let Node::Join(join) = node {
                moved += join.upgrade_layout(cx)?;
            }
        }
        Ok(moved)
    }

    /// The operators' state held in memory as typed values (`state_table.rs`): what a
    /// checkpoint writes and the state budget counts.
    pub fn state_tables(&self) -> impl Iterator<Item = &dyn CheckpointedState> {
        self.nodes.iter().flat_map(|(node, _, _)| match node {
            Node::Aggregate(a) => vec![a.state()],
            Node::Join(j) => j.state_tables().to_vec(),
            Node::Membership(sink) => vec![sink.state()],
            _ => Vec::new(),
        })
    }

    /// The segment's members: where readers outside a step find them.
    pub fn sink(&self) -> Result<&MembershipSink> {
        self.nodes
            .iter()
            .find_map(|(node, _, _)| match node {
                Node::Membership(sink) => Some(sink),
                _ => None,
            })
            .ok_or_else(|| Error::internal(format!("segment {} has no membership sink", self.name)))
    }

    /// The relations this segment's sources read.
    pub fn reads(&self) -> &[String] {
        &self.reads
    }

    /// Pushes one step's deltas through the operators; returns the membership changes.
    pub fn step(&self, input: &StepInput, cx: &mut StepContext) -> Result<Vec<MemberChange>> {
        let mut outputs: Vec<Option<DeltaBatch>> = (0..self.nodes.len()).map(|_| None).collect();
        for (id, (node, inputs, schema)) in self.nodes.iter().enumerate() {
            // A node whose inputs are all empty has nothing to do, unless it is a source,
            // a constant, or a temporal filter with timers firing.
            let idle = !inputs.is_empty()
                && inputs.iter().all(|&i| outputs[i].as_ref().is_some_and(DeltaBatch::is_empty))
                && !(matches!(node, Node::Temporal(_)) && input.fired.contains_key(&(id as u32)));
            if idle {
                if matches!(node, Node::Membership(_)) {
                    return Ok(Vec::new());
                }
                outputs[id] = Some(self.empty[id].clone());
                continue;
            }
            let mut take = |i: usize| -> Result<DeltaBatch> {
                outputs[inputs[i]].take().ok_or_else(|| Error::internal("a node's input was used twice"))
            };
            let output = match node {
                Node::Source { relation, columns } => match input.relations.get(relation) {
                    Some(delta) => {
                        let rows = delta.rows.project(columns).map_err(|e| Error::internal(e.to_string()))?;
                        DeltaBatch::new(rows, delta.weights.clone())?.with_schema(Arc::clone(schema))?
                    }
                    None => self.empty[id].clone(),
                },
                Node::Constant(rows) if input.initial => rows.clone(),
                Node::Constant(_) => self.empty[id].clone(),
                Node::Filter(f) => f.step(take(0)?, cx)?.with_schema(Arc::clone(schema))?,
                Node::Project(p) => p.step(take(0)?)?,
                Node::Temporal(t) => {
                    let passed = t.step(take(0)?, cx)?.with_schema(Arc::clone(schema))?;
                    match input.fired.get(&(id as u32)) {
                        Some(timers) => {
                            let fired = t.fired(timers)?.with_schema(Arc::clone(schema))?;
                            DeltaBatch::concat(schema, &[passed, fired])?
                        }
                        None => passed,
                    }
                }
                Node::Aggregate(a) => a.step(take(0)?, cx)?,
                Node::Join(j) => {
                    let left = take(0)?;
                    let right = take(1)?;
                    j.step(left, right, cx)?
                }
                Node::Union => {
                    let parts = (0..inputs.len()).map(&mut take).collect::<Result<Vec<_>>>()?;
                    DeltaBatch::concat(schema, &parts)?
                }
                Node::KeyNotNull => key_not_null(take(0)?)?.with_schema(Arc::clone(schema))?,
                // The sink sums each key's equal rows itself: no consolidation first.
                Node::Membership(sink) => return sink.step(take(0)?, cx),
            };
            outputs[id] = Some(output);
        }
        Err(Error::internal(format!("segment {} has no membership sink", self.name)))
    }
}
