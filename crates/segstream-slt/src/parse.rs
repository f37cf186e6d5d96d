//! The fixture format: sqllogictest's records, as DataFusion and RisingWave write them.
//!
//! ```text
//! # a comment
//! statement ok
//! ADVANCE TIME TO TIMESTAMP '2026-04-01 10:00:00'
//!
//! statement error unknown segment
//! SELECT * FROM nope
//!
//! query TT rowsort
//! SELECT key, kind FROM segstream.changes
//! ----
//! ann entered
//! ```
//!
//! Records are separated by blank lines. Besides `statement` and `query`, a fixture may
//! `include` another `.slt` (its records run in place) or a `.sql` file (each statement must
//! succeed), so a scenario's fixture proves the very segment file that ships beside it.
//! `halt` stops the file; `skipif`/`onlyif <engine>` and `hash-threshold` are understood
//! for compatibility with other sqllogictest files.

use std::fmt;

/// How a query's rows are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortMode {
    /// In the order the query returns them (the query should say `ORDER BY`).
    NoSort,
    /// Rows sorted as text before comparing.
    RowSort,
    /// Every value sorted on its own, one per line.
    ValueSort,
}

impl SortMode {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "nosort" => Some(Self::NoSort),
            "rowsort" => Some(Self::RowSort),
            "valuesort" => Some(Self::ValueSort),
            _ => None,
        }
    }
}

impl fmt::Display for SortMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSort => "nosort",
            Self::RowSort => "rowsort",
            Self::ValueSort => "valuesort",
        })
    }
}

/// What a statement or query is expected to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Ok,
    /// Fails, and the error's message contains this text (any error when empty).
    Error(String),
}

/// One record of a fixture; `line` is the 1-based line of its first line.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Statement {
        line: usize,
        sql: String,
        /// Line of the SQL's first line.
        sql_line: usize,
        expect: Expect,
    },
    Query {
        line: usize,
        sql: String,
        sql_line: usize,
        /// One letter per column: T text, I integer, R float, B boolean, P timestamp,
        /// D date, `?` anything.
        types: String,
        sort: SortMode,
        expect: Expect,
        /// The expected rows, one line each, as written.
        expected: Vec<String>,
        /// The lines the results occupy, `[from, to)` (1-based), or where they would go.
        results_lines: (usize, usize),
        /// Whether the record has its `----` separator.
        has_separator: bool,
    },
    Include {
        line: usize,
        path: String,
    },
    Halt {
        line: usize,
    },
}

impl Record {
    pub fn line(&self) -> usize {
        match self {
            Self::Statement { line, .. }
            | Self::Query { line, .. }
            | Self::Include { line, .. }
            | Self::Halt { line } => *line,
        }
    }
}

/// A line of a fixture that is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a fixture. Every record's SQL keeps its line, so errors point into the file.
pub fn parse(text: &str) -> Result<Vec<Record>, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    let mut i = 0;
    // Conditions (`skipif`, `onlyif`) apply to the next record.
    let mut skip_next = false;
    while i < lines.len() {
        let line_no = i + 1;
        let raw = lines[i];
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let error = |message: String| ParseError { line: line_no, message };
        match words[0] {
            "statement" => {
                let expect = match words.get(1).copied() {
                    Some("ok") if words.len() == 2 => Expect::Ok,
                    Some("error") => Expect::Error(rest_after(trimmed, 2)),
                    _ => {
                        return Err(error(format!(
                            "expected `statement ok` or `statement error <message>`, found `{trimmed}`"
                        )))
                    }
                };
                let (sql, sql_line, next) = take_sql(&lines, i + 1, false);
                if sql.is_empty() {
                    return Err(error("a statement record needs SQL on the lines below it".into()));
                }
                i = next;
                if !std::mem::take(&mut skip_next) {
                    records.push(Record::Statement { line: line_no, sql, sql_line, expect });
                }
            }
            "query" => {
                let (types, sort, expect) = match words.get(1).copied() {
                    Some("error") => (String::new(), SortMode::NoSort, Expect::Error(rest_after(trimmed, 2))),
                    Some(types) => {
                        if !types.chars().all(|c| "TIRBPD?".contains(c)) {
                            return Err(error(format!(
                                "`{types}` is not a column type list: one letter per column, \
                                 T text, I integer, R float, B boolean, P timestamp, D date, ? any"
                            )));
                        }
                        // A sort mode and/or a label (sqllogictest's result-sharing name).
                        let mut sort = SortMode::NoSort;
                        for word in &words[2..] {
                            if let Some(mode) = SortMode::parse(word) {
                                sort = mode;
                            }
                        }
                        (types.to_string(), sort, Expect::Ok)
                    }
                    None => return Err(error(
                        "`query` needs its column types, e.g. `query TI rowsort` (T text, I integer, ...)"
                            .into(),
                    )),
                };
                let (sql, sql_line, next) = take_sql(&lines, i + 1, true);
                if sql.is_empty() {
                    return Err(error("a query record needs SQL on the lines below it".into()));
                }
                let mut j = next;
                let has_separator = j < lines.len() && lines[j].trim() == "----";
                let mut expected = Vec::new();
                let results_from;
                if has_separator {
                    j += 1;
                    results_from = j + 1;
                    while j < lines.len() && !lines[j].trim().is_empty() {
                        expected.push(lines[j].to_string());
                        j += 1;
                    }
                } else {
                    results_from = j + 1;
                }
                if matches!(expect, Expect::Error(_)) && !expected.is_empty() {
                    return Err(error("a `query error` record has no result rows".into()));
                }
                let results_lines = (results_from, j + 1);
                i = j;
                if !std::mem::take(&mut skip_next) {
                    records.push(Record::Query {
                        line: line_no,
                        sql,
                        sql_line,
                        types,
                        sort,
                        expect,
                        expected,
                        results_lines,
                        has_separator,
                    });
                }
            }
            "include" => {
                let path = rest_after(trimmed, 1);
                if path.is_empty() {
                    return Err(error("`include` needs a path, relative to this file".into()));
                }
                i += 1;
                if !std::mem::take(&mut skip_next) {
                    records.push(Record::Include { line: line_no, path });
                }
            }
            "halt" => {
                i += 1;
                if !std::mem::take(&mut skip_next) {
                    records.push(Record::Halt { line: line_no });
                }
            }
            "skipif" | "onlyif" => {
                let engine = words.get(1).copied().unwrap_or_default();
                let ours = engine.eq_ignore_ascii_case("segstream");
                skip_next = (words[0] == "skipif") == ours;
                i += 1;
            }
            "hash-threshold" | "control" => i += 1,
            other => {
                return Err(error(format!(
                "unknown record `{other}`: expected `statement`, `query`, `include`, `halt` or a `#` comment"
            )))
            }
        }
    }
    Ok(records)
}

/// The text of a record header after its first `n` words.
fn rest_after(line: &str, n: usize) -> String {
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        rest = rest.find(char::is_whitespace).map_or("", |at| &rest[at..]);
    }
    rest.trim().to_string()
}

/// The SQL lines from `from` up to a blank line (or `----` for a query): the text, the
/// line of its first line, and the index of the line after it.
fn take_sql(lines: &[&str], from: usize, stop_at_separator: bool) -> (String, usize, usize) {
    let mut j = from;
    let mut sql = Vec::new();
    while j < lines.len() {
        let line = lines[j];
        if line.trim().is_empty() || (stop_at_separator && line.trim() == "----") {
            break;
        }
        sql.push(line);
        j += 1;
    }
    (sql.join("\n"), from + 1, j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statements_queries_and_comments() {
        let text = "# intro\nstatement ok\nCREATE STREAM s (a INT)\n\nstatement error unknown column\nSELECT b\nFROM s\n\nquery IT rowsort\nSELECT 1, 'x'\n----\n1 x\n2 y\n\nhalt\n";
        let records = parse(text).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(
            records[0],
            Record::Statement {
                line: 2,
                sql: "CREATE STREAM s (a INT)".into(),
                sql_line: 3,
                expect: Expect::Ok
            }
        );
        assert_eq!(
            records[1],
            Record::Statement {
                line: 5,
                sql: "SELECT b\nFROM s".into(),
                sql_line: 6,
                expect: Expect::Error("unknown column".into())
            }
        );
        match &records[2] {
            Record::Query { line, types, sort, expected, results_lines, has_separator, .. } => {
                assert_eq!((*line, types.as_str(), *sort), (9, "IT", SortMode::RowSort));
                assert_eq!(expected, &vec!["1 x".to_string(), "2 y".to_string()]);
                assert_eq!(*results_lines, (12, 14));
                assert!(has_separator);
            }
            other => panic!("expected a query, got {other:?}"),
        }
        assert_eq!(records[3], Record::Halt { line: 15 });
    }

    #[test]
    fn a_query_without_results_is_ready_to_be_completed() {
        let records = parse("query I\nSELECT 1\n").unwrap();
        match &records[0] {
            Record::Query { expected, has_separator, results_lines, .. } => {
                assert!(expected.is_empty());
                assert!(!has_separator);
                assert_eq!(*results_lines, (3, 3));
            }
            other => panic!("expected a query, got {other:?}"),
        }
    }

    #[test]
    fn conditions_skip_records_for_other_engines() {
        let text = "onlyif postgres\nstatement ok\nSELECT 1\n\nskipif postgres\nstatement ok\nSELECT 2\n";
        let records = parse(text).unwrap();
        assert_eq!(records.len(), 1);
        assert!(matches!(&records[0], Record::Statement { sql, .. } if sql == "SELECT 2"));
    }

    #[test]
    fn bad_headers_name_their_line() {
        assert_eq!(parse("\n\nstatment ok\nSELECT 1\n").unwrap_err().line, 3);
        let e = parse("query\nSELECT 1\n").unwrap_err();
        assert!(e.message.contains("column types"), "{e}");
        let e = parse("query XY\nSELECT 1\n").unwrap_err();
        assert!(e.message.contains("not a column type list"), "{e}");
        let e = parse("statement ok\n\n").unwrap_err();
        assert!(e.message.contains("needs SQL"), "{e}");
    }
}
