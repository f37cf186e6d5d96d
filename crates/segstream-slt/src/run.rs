//! Runs one fixture: a fresh data directory, the manual clock, each record in order.
//!
//! A statement that fails unexpectedly stops its file (what follows depends on it); a
//! query whose rows differ is reported and the file goes on, so one run shows every
//! wrong query. In [`Mode::Complete`] each query's expected rows are written from what
//! the engine returns, which is how a new fixture gets its results.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use segstream_engine::{ClockMode, Engine, EngineOptions, Output};
use segstream_types::{Error, Position};

use crate::diff::diff_rows;
use crate::parse::{parse, Expect, Record, SortMode};

/// Whether to check results or fill them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    /// Rewrites each query's results (and column types) with what the engine returns.
    Complete,
}

/// One thing that went wrong, at a line of a file.
#[derive(Debug, Clone)]
pub struct Failure {
    pub file: PathBuf,
    pub line: usize,
    /// What went wrong, then the SQL and the differing rows, ready to print.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// The outcome of one fixture file.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    /// Records run, those of included files counted too.
    pub records: usize,
    pub failures: Vec<Failure>,
    /// In complete mode: whether the file was rewritten.
    pub rewritten: bool,
}

impl FileReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// How deep `include`s may nest: deeper is taken for a cycle.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Runs a fixture in a fresh temporary data directory with the manual clock.
pub async fn run_file(path: &Path, mode: Mode) -> FileReport {
    let mut report =
        FileReport { path: path.to_path_buf(), records: 0, failures: Vec::new(), rewritten: false };
    let dir = match tempfile::Builder::new().prefix("segstream-slt").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            report.failures.push(failure(path, 0, format!("cannot create a temporary data directory: {e}")));
            return report;
        }
    };
    let mut engine = match Engine::open(EngineOptions::new(dir.path()).with_clock(ClockMode::Manual)) {
        Ok(engine) => engine,
        Err(e) => {
            report.failures.push(failure(path, 0, format!("cannot open an engine: {e}")));
            return report;
        }
    };
    let mut edits = Vec::new();
    let mut run = FileRun { engine: &mut engine, report: &mut report, mode, edits: &mut edits };
    run.file(path, 0, true).await;
    if mode == Mode::Complete && !edits.is_empty() && report.failures.is_empty() {
        match rewrite(path, &edits) {
            Ok(()) => report.rewritten = true,
            Err(e) => report.failures.push(failure(path, 0, format!("cannot rewrite the file: {e}"))),
        }
    }
    report
}

/// A replacement of lines `[from, to)` (1-based) of the top-level file.
#[derive(Debug)]
struct Edit {
    from: usize,
    to: usize,
    lines: Vec<String>,
}

struct FileRun<'a> {
    engine: &'a mut Engine,
    report: &'a mut FileReport,
    mode: Mode,
    edits: &'a mut Vec<Edit>,
}

/// Whether to go on with the file after a record.
enum Flow {
    Continue,
    Stop,
}

impl FileRun<'_> {
    /// Runs a file's records; `false` when the run must stop.
    async fn file(&mut self, path: &Path, depth: usize, top: bool) -> bool {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                self.fail(path, 0, format!("cannot read the file: {e}"));
                return false;
            }
        };
        let records = match parse(&text) {
            Ok(records) => records,
            Err(e) => {
                self.fail(path, e.line, e.message);
                return false;
            }
        };
        for record in records {
            self.report.records += 1;
            let flow = match record {
                Record::Halt { .. } => return false,
                Record::Include { line, path: included } => {
                    let target = path.parent().unwrap_or(Path::new(".")).join(&included);
                    if depth >= MAX_INCLUDE_DEPTH {
                        self.fail(
                            path,
                            line,
                            format!("includes nest more than {MAX_INCLUDE_DEPTH} deep (a cycle?)"),
                        );
                        return false;
                    }
                    if !target.exists() {
                        self.fail(
                            path,
                            line,
                            format!("cannot include `{included}`: {} does not exist", target.display()),
                        );
                        return false;
                    }
                    let ok = if target.extension().is_some_and(|e| e == "sql") {
                        self.sql_file(&target).await
                    } else {
                        Box::pin(self.file(&target, depth + 1, false)).await
                    };
                    if ok {
                        Flow::Continue
                    } else {
                        Flow::Stop
                    }
                }
                Record::Statement { line, sql, sql_line, expect } => {
                    self.statement(path, line, &sql, sql_line, &expect).await
                }
                Record::Query {
                    line,
                    sql,
                    sql_line,
                    types,
                    sort,
                    expect,
                    expected,
                    results_lines,
                    has_separator,
                } => {
                    let query =
                        QueryRecord { line, sql: &sql, sql_line, types: &types, sort, expected: &expected };
                    match expect {
                        Expect::Error(message) => {
                            self.statement(path, line, &sql, sql_line, &Expect::Error(message)).await
                        }
                        Expect::Ok => {
                            self.query(path, &query, top.then_some((results_lines, has_separator))).await
                        }
                    }
                }
            };
            if let Flow::Stop = flow {
                return false;
            }
        }
        true
    }

    /// Runs every statement of an included `.sql` file; each must succeed.
    async fn sql_file(&mut self, path: &Path) -> bool {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                self.fail(path, 0, format!("cannot read the file: {e}"));
                return false;
            }
        };
        let statements = match segstream_sql::parse_statements(&text) {
            Ok(statements) => statements,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line as usize);
                self.fail(path, line, format!("{e}"));
                return false;
            }
        };
        for statement in statements {
            if let Err(e) = self.engine.execute_statement(&statement).await {
                let e = e.or_position(statement.position);
                let line = e.position().map_or(0, |p| p.line as usize);
                self.fail(path, line, format!("statement failed: {e}\n{}", indent(&statement.text)));
                return false;
            }
        }
        true
    }

    async fn statement(
        &mut self,
        path: &Path,
        line: usize,
        sql: &str,
        sql_line: usize,
        expect: &Expect,
    ) -> Flow {
        let result = self.execute(sql, sql_line).await;
        match (expect, result) {
            (Expect::Ok, Ok(_)) => Flow::Continue,
            (Expect::Ok, Err(e)) => {
                self.fail(path, line, format!("statement failed: {e}\n{}", indent(sql)));
                Flow::Stop
            }
            (Expect::Error(expected), Ok(_)) => {
                let wanted = if expected.is_empty() { String::new() } else { format!(" (`{expected}`)") };
                self.fail(
                    path,
                    line,
                    format!("expected an error{wanted}, but the statement succeeded\n{}", indent(sql)),
                );
                Flow::Stop
            }
            (Expect::Error(expected), Err(e)) => {
                let message = e.to_string();
                if message.contains(expected.as_str()) {
                    Flow::Continue
                } else {
                    self.fail(
                        path,
                        line,
                        format!("the error differs\n{}\n  expected an error containing: {expected}\n  got: {message}", indent(sql)),
                    );
                    Flow::Stop
                }
            }
        }
    }

    async fn query(
        &mut self,
        path: &Path,
        query: &QueryRecord<'_>,
        // Where the results are in the top-level file, for complete mode.
        results_at: Option<((usize, usize), bool)>,
    ) -> Flow {
        let output = match self.execute(query.sql, query.sql_line).await {
            Ok(output) => output,
            Err(e) => {
                self.fail(path, query.line, format!("query failed: {e}\n{}", indent(query.sql)));
                return Flow::Stop;
            }
        };
        let (types, rows) = match tabulate(&output) {
            Ok(table) => table,
            Err(message) => {
                self.fail(path, query.line, format!("{message}\n{}", indent(query.sql)));
                return Flow::Continue;
            }
        };
        let actual = arrange(rows, query.sort);
        if self.mode == Mode::Complete {
            if let Some(((from, to), has_separator)) = results_at {
                let mut lines = Vec::new();
                if !has_separator {
                    lines.push("----".to_string());
                }
                lines.extend(actual.iter().cloned());
                self.edits.push(Edit { from, to, lines });
                if !types_match(query.types, &types) {
                    let mut header = format!("query {types}");
                    if query.sort != SortMode::NoSort {
                        header.push_str(&format!(" {}", query.sort));
                    }
                    self.edits.push(Edit { from: query.line, to: query.line + 1, lines: vec![header] });
                }
                return Flow::Continue;
            }
        }
        if !types_match(query.types, &types) {
            self.fail(
                path,
                query.line,
                format!(
                    "the column types differ: the record says `{}`, the query returns `{types}`\n{}",
                    query.types,
                    indent(query.sql)
                ),
            );
            return Flow::Continue;
        }
        let expected: Vec<String> =
            arrange(query.expected.iter().map(|l| normalize(l)).collect(), query.sort);
        if expected != actual {
            self.fail(
                path,
                query.line,
                format!(
                    "the query's rows differ (- expected, + actual){}\n{}\n{}",
                    if query.sort == SortMode::NoSort { "" } else { ", compared sorted" },
                    indent(query.sql),
                    diff_rows(&expected, &actual)
                ),
            );
        }
        Flow::Continue
    }

    /// Runs one statement, with error positions moved to the file's lines.
    async fn execute(&mut self, sql: &str, sql_line: usize) -> Result<Output, Error> {
        let rebase = |e: Error| -> Error {
            match e.position() {
                Some(p) => {
                    let line = p.line + sql_line as u64 - 1;
                    e.at(Some(Position::new(line, p.column)))
                }
                None => e,
            }
        };
        let mut statements = segstream_sql::parse_statements(sql).map_err(rebase)?;
        if statements.len() != 1 {
            return Err(rebase(Error::invalid_input(format!(
                "a record holds one statement, this one holds {}",
                statements.len()
            ))));
        }
        let statement = statements.remove(0);
        let position = statement.position;
        self.engine.execute_statement(&statement).await.map_err(|e| rebase(e.or_position(position)))
    }

    fn fail(&mut self, path: &Path, line: usize, message: String) {
        self.report.failures.push(failure(path, line, message));
    }
}

struct QueryRecord<'a> {
    line: usize,
    sql: &'a str,
    sql_line: usize,
    types: &'a str,
    sort: SortMode,
    expected: &'a [String],
}

fn failure(path: &Path, line: usize, message: String) -> Failure {
    Failure { file: path.to_path_buf(), line, message }
}

fn indent(sql: &str) -> String {
    sql.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Collapses runs of spaces, so expected rows may be aligned by hand.
fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn types_match(declared: &str, actual: &str) -> bool {
    declared.len() == actual.len() && declared.chars().zip(actual.chars()).all(|(d, a)| d == '?' || d == a)
}

fn arrange(mut rows: Vec<String>, sort: SortMode) -> Vec<String> {
    match sort {
        SortMode::NoSort => rows,
        SortMode::RowSort => {
            rows.sort();
            rows
        }
        SortMode::ValueSort => {
            let mut values: Vec<String> =
                rows.iter().flat_map(|r| r.split(' ').map(str::to_string)).collect();
            values.sort();
            values
        }
    }
}

/// The column type letters and the rows as text: values separated by one space, NULL
/// as `NULL`, an empty string as `(empty)`, as sqllogictest writes them.
fn tabulate(output: &Output) -> Result<(String, Vec<String>), String> {
    let Output::Rows { schema, batches } = output else {
        return Err(format!(
            "`query` expects rows, but the statement returned `{}`; use `statement ok`",
            output.render()
        ));
    };
    let types: String = schema.fields().iter().map(|f| type_letter(f.data_type())).collect();
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(batch_rows(batch, &options)?);
    }
    Ok((types, rows))
}

fn batch_rows(batch: &RecordBatch, options: &FormatOptions<'_>) -> Result<Vec<String>, String> {
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot show a result column: {e}"))?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let values: Vec<String> = formatters
            .iter()
            .map(|f| {
                let text = f.value(row).to_string();
                if text.is_empty() {
                    "(empty)".to_string()
                } else {
                    normalize(&text)
                }
            })
            .collect();
        rows.push(values.join(" "));
    }
    Ok(rows)
}

fn type_letter(data_type: &DataType) -> char {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 'T',
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => 'I',
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => 'R',
        DataType::Boolean => 'B',
        DataType::Timestamp(_, _) => 'P',
        DataType::Date32 | DataType::Date64 => 'D',
        _ => 'T',
    }
}

/// Applies the edits (lines of the original file) from the last to the first.
fn rewrite(path: &Path, edits: &[Edit]) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut edits: Vec<&Edit> = edits.iter().collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.from));
    for edit in edits {
        let from = (edit.from - 1).min(lines.len());
        let to = (edit.to - 1).clamp(from, lines.len());
        lines.splice(from..to, edit.lines.iter().cloned());
    }
    let mut out = lines.join("\n");
    out.push('\n');
    std::fs::write(path, out)
}
