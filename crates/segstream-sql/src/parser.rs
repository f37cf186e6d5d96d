//! The segstream dialect, parsed the way DataFusion's `DFParser` does it: peek at the
//! first keywords, parse our own statements (`CREATE SEGMENT`, `CREATE STREAM`,
//! `ADVANCE TIME`, ...) with sqlparser's building blocks, and hand everything else to
//! sqlparser's own `parse_statement`.
//!
//! Every error carries the line and column sqlparser reports, relative to the whole text
//! (a script of many statements keeps its own line numbers).

use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, Ident, Statement as SqlStatement, TableConstraint,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};
use segstream_types::{Error, Position, Result};

use crate::ast::*;

/// Parses a script of `;`-separated statements.
pub fn parse_statements(sql: &str) -> Result<Vec<Statement>> {
    StatementParser::new(sql)?.parse_all()
}

/// Parses exactly one statement (a trailing `;` is allowed).
pub fn parse_statement(sql: &str) -> Result<Statement> {
    let mut statements = parse_statements(sql)?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(Error::syntax("expected a statement, found nothing", None)),
        n => Err(Error::syntax(format!("expected one statement, found {n}"), statements[1].position)),
    }
}

/// Converts a sqlparser error into ours, moving the `at Line: L, Column: C` that sqlparser
/// appends to its message into a structured position.
pub(crate) fn syntax_error(e: ParserError) -> Error {
    let message = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return Error::syntax(
                "the statement is nested too deeply (more than 50 levels of parentheses or subqueries)",
                None,
            )
        }
    };
    let position = Position::parse_from_message(&message);
    let message = match message.rfind(" at Line: ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    Error::syntax(message, position)
}

pub(crate) fn position_of(location: Location) -> Option<Position> {
    Position::from_sqlparser(location.line, location.column)
}

/// Unquoted identifiers are lower-cased, quoted ones kept as written: the rule DataFusion
/// applies to column names, so a segment's names and its columns' names behave alike.
pub fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn name_of(ident: &Ident) -> Name {
    Name { value: normalize(ident), position: position_of(ident.span.start) }
}

struct StatementParser<'a> {
    parser: Parser<'a>,
    lines: LineIndex<'a>,
}

impl<'a> StatementParser<'a> {
    fn new(sql: &'a str) -> Result<Self> {
        static DIALECT: GenericDialect = GenericDialect {};
        let tokens = Tokenizer::new(&DIALECT, sql)
            .tokenize_with_location()
            .map_err(|e| syntax_error(ParserError::TokenizerError(e.to_string())))?;
        let tokens = crate::absence::rewrite_tokens(tokens).map_err(syntax_error)?;
        let parser = Parser::new(&DIALECT).with_tokens_with_locations(tokens);
        Ok(Self { parser, lines: LineIndex::new(sql) })
    }

    fn parse_all(&mut self) -> Result<Vec<Statement>> {
        let mut statements = Vec::new();
        loop {
            while self.parser.consume_token(&Token::SemiColon) {}
            let first = self.parser.peek_token();
            if first.token == Token::EOF {
                return Ok(statements);
            }
            let kind = self.parse_one().map_err(|e| {
                let e = syntax_error(e);
                // sqlparser gives the end of input no location: point just past the text.
                let fallback = if e.to_string().contains("found: EOF") {
                    Some(self.lines.end_position())
                } else {
                    position_of(first.span.start)
                };
                e.or_position(fallback)
            })?;
            let end = self.parser.get_current_token().span.end;
            let next = self.parser.peek_token();
            if next.token != Token::SemiColon && next.token != Token::EOF {
                return Err(syntax_error(ParserError::ParserError(format!(
                    "Expected: end of statement, found: {} at Line: {}, Column: {}",
                    next.token, next.span.start.line, next.span.start.column
                ))));
            }
            statements.push(Statement {
                kind,
                position: position_of(first.span.start),
                text: self.lines.slice(first.span.start, end).trim().to_string(),
            });
        }
    }

    fn parse_one(&mut self) -> Result<StatementKind, ParserError> {
        let first = self.parser.peek_token();
        let Token::Word(word) = &first.token else {
            if first.token == Token::LParen {
                return self.parse_sql_statement();
            }
            return self.parser.expected("a statement", first);
        };
        match word.keyword {
            Keyword::CREATE => {
                self.parser.next_token();
                self.parse_create()
            }
            Keyword::DROP => {
                self.parser.next_token();
                self.parse_drop()
            }
            Keyword::SHOW => {
                self.parser.next_token();
                let object = self.parse_plural_object_kind()?;
                Ok(StatementKind::Show(object))
            }
            Keyword::DESCRIBE | Keyword::DESC => {
                self.parser.next_token();
                Ok(StatementKind::Describe(self.parse_name()?))
            }
            Keyword::EXPLAIN => {
                self.parser.next_token();
                self.parse_explain()
            }
            _ if word.quote_style.is_none() && word.value.eq_ignore_ascii_case("advance") => {
                self.parser.next_token();
                self.parse_advance_time()
            }
            _ if word.quote_style.is_none() && word.value.eq_ignore_ascii_case("forget") => {
                self.parser.next_token();
                self.parse_forget_key()
            }
            _ => self.parse_sql_statement(),
        }
    }

    /// A statement of plain SQL; only the ones segstream runs are accepted.
    fn parse_sql_statement(&mut self) -> Result<StatementKind, ParserError> {
        let first = self.parser.peek_token();
        match self.parser.parse_statement()? {
            SqlStatement::Query(query) => Ok(StatementKind::Query(query)),
            SqlStatement::Insert(insert) => Ok(StatementKind::Insert(Box::new(insert))),
            SqlStatement::Delete(delete) => Ok(StatementKind::Delete(Box::new(delete))),
            _ => Err(ParserError::ParserError(format!(
                "segstream does not run {} statements; it runs CREATE {{STREAM|TABLE|SEGMENT}}, DROP, SHOW, \
                 DESCRIBE, EXPLAIN, INSERT, DELETE, ADVANCE TIME, FORGET KEY and SELECT at Line: {}, Column: {}",
                first.token.to_string().to_uppercase(),
                first.span.start.line,
                first.span.start.column
            ))),
        }
    }

    fn parse_create(&mut self) -> Result<StatementKind, ParserError> {
        let or_replace = self.parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
        let what = self.parser.peek_token();
        if self.parse_word("segment") {
            return Ok(StatementKind::CreateSegment(self.parse_create_segment_rest(or_replace)?));
        }
        if or_replace {
            return self
                .parser
                .expected("SEGMENT after CREATE OR REPLACE (streams and tables are not replaced)", what);
        }
        if self.parse_word("stream") {
            self.parse_create_stream()
        } else if self.parser.parse_keyword(Keyword::TABLE) {
            self.parse_create_table()
        } else {
            self.parser.expected("SEGMENT, STREAM or TABLE after CREATE", what)
        }
    }

    fn parse_create_segment_rest(&mut self, or_replace: bool) -> Result<CreateSegment, ParserError> {
        let if_not_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        if or_replace && if_not_exists {
            let at = self.parser.get_current_token().clone();
            return self.parser.expected("either OR REPLACE or IF NOT EXISTS, not both", at);
        }
        let name = self.parse_name()?;
        self.parser.expect_keyword_is(Keyword::AS)?;
        let query_position = position_of(self.parser.peek_token().span.start);
        let query = self.parser.parse_query()?;
        Ok(CreateSegment { name, or_replace, if_not_exists, query, query_position })
    }

    fn parse_create_stream(&mut self) -> Result<StatementKind, ParserError> {
        let if_not_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.parse_name()?;
        let (columns, constraints) = self.parse_column_list()?;
        if let Some(c) = constraints.first() {
            return Err(ParserError::ParserError(format!(
                "a stream is append-only and has no constraints ({c}); declare its key with WITH (key = 'column'){}",
                self.at(name.position)
            )));
        }
        let (mut event_time, mut key, mut retention) = (None, None, None);
        if self.parser.parse_keyword(Keyword::WITH) {
            self.parser.expect_token(&Token::LParen)?;
            loop {
                let option = self.parser.parse_identifier()?;
                self.parser.expect_token(&Token::Eq)?;
                let value_token = self.parser.peek_token();
                let value = self.parser.parse_literal_string()?;
                let value = Name { value, position: position_of(value_token.span.start) };
                match normalize(&option).as_str() {
                    "event_time" => event_time = Some(value),
                    "key" => key = Some(value),
                    "retention" => retention = Some(value),
                    other => {
                        return Err(ParserError::ParserError(format!(
                        "unknown stream option `{other}`; the options are event_time, key and retention{}",
                        self.at(position_of(option.span.start))
                    )))
                    }
                }
                if !self.parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.parser.expect_token(&Token::RParen)?;
        }
        Ok(StatementKind::CreateStream(CreateStream {
            name,
            if_not_exists,
            columns,
            event_time,
            key,
            retention,
        }))
    }

    fn parse_create_table(&mut self) -> Result<StatementKind, ParserError> {
        let if_not_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.parse_name()?;
        let (columns, constraints) = self.parse_column_list()?;
        let mut keys: Vec<Name> = Vec::new();
        for column in &columns {
            if column.options.iter().any(|o| matches!(o.option, ColumnOption::PrimaryKey(_))) {
                keys.push(name_of(&column.name));
            }
        }
        for constraint in &constraints {
            match constraint {
                TableConstraint::PrimaryKey(pk) => {
                    if pk.columns.len() != 1 {
                        return Err(ParserError::ParserError(format!(
                            "a table's PRIMARY KEY is one column, found {}{}",
                            pk.columns.len(),
                            self.at(name.position)
                        )));
                    }
                    match &pk.columns[0].column.expr {
                        datafusion::sql::sqlparser::ast::Expr::Identifier(ident) => keys.push(name_of(ident)),
                        other => {
                            return Err(ParserError::ParserError(format!(
                                "PRIMARY KEY names a column, found `{other}`{}",
                                self.at(name.position)
                            )))
                        }
                    }
                }
                other => {
                    return Err(ParserError::ParserError(format!(
                        "only PRIMARY KEY constraints are supported, found `{other}`{}",
                        self.at(name.position)
                    )))
                }
            }
        }
        let primary_key = match keys.len() {
            1 => keys.remove(0),
            0 => {
                return Err(ParserError::ParserError(format!(
                    "table `{name}` needs a PRIMARY KEY: rows are upserted by it (write e.g. `user_id TEXT PRIMARY KEY`){}",
                    self.at(name.position)
                )))
            }
            _ => {
                return Err(ParserError::ParserError(format!(
                    "table `{name}` declares more than one PRIMARY KEY{}",
                    self.at(keys[1].position)
                )))
            }
        };
        Ok(StatementKind::CreateTable(CreateTable { name, if_not_exists, columns, primary_key }))
    }

    fn parse_column_list(&mut self) -> Result<(Vec<ColumnDef>, Vec<TableConstraint>), ParserError> {
        let open = self.parser.peek_token();
        if open.token != Token::LParen {
            return self.parser.expected("a parenthesised list of columns", open);
        }
        let (columns, constraints) = self.parser.parse_columns()?;
        if columns.is_empty() {
            return Err(ParserError::ParserError(format!(
                "a column list needs at least one column{}",
                self.at(position_of(open.span.start))
            )));
        }
        Ok((columns, constraints))
    }

    fn parse_drop(&mut self) -> Result<StatementKind, ParserError> {
        let object = self.parse_object_kind()?;
        let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = self.parse_name()?;
        Ok(StatementKind::Drop { object, name, if_exists })
    }

    fn parse_explain(&mut self) -> Result<StatementKind, ParserError> {
        if self.parse_word("segment") {
            return Ok(StatementKind::ExplainSegment(self.parse_name()?));
        }
        let at = self.parser.peek_token();
        if self.parser.parse_keyword(Keyword::CREATE) {
            let or_replace = self.parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
            let what = self.parser.peek_token();
            if self.parse_word("segment") {
                return Ok(StatementKind::ExplainCreateSegment(self.parse_create_segment_rest(or_replace)?));
            }
            return self.parser.expected("SEGMENT after EXPLAIN CREATE", what);
        }
        self.parser.expected("SEGMENT name or CREATE SEGMENT after EXPLAIN", at)
    }

    /// `FORGET KEY 'u123'` or `FORGET KEY 42` (the key as text, as the change log shows
    /// it), optionally `IN events, profiles`.
    fn parse_forget_key(&mut self) -> Result<StatementKind, ParserError> {
        self.parser.expect_keyword_is(Keyword::KEY)?;
        let found = self.parser.next_token();
        let key = match &found.token {
            Token::SingleQuotedString(s) => s.clone(),
            Token::Number(n, _) if n.parse::<i64>().is_ok() => n.clone(),
            Token::Minus => match self.parser.next_token().token {
                Token::Number(n, _) if format!("-{n}").parse::<i64>().is_ok() => format!("-{n}"),
                _ => return self.parser.expected("a key after FORGET KEY, e.g. FORGET KEY 'u123'", found),
            },
            _ => return self.parser.expected("a key after FORGET KEY, e.g. FORGET KEY 'u123'", found),
        };
        let mut only = Vec::new();
        if self.parser.parse_keyword(Keyword::IN) {
            loop {
                only.push(self.parse_name()?);
                if !self.parser.consume_token(&Token::Comma) {
                    break;
                }
            }
        }
        Ok(StatementKind::ForgetKey { key, only })
    }

    fn parse_advance_time(&mut self) -> Result<StatementKind, ParserError> {
        self.parser.expect_keyword_is(Keyword::TIME)?;
        if self.parser.parse_keyword(Keyword::TO) {
            Ok(StatementKind::AdvanceTime(AdvanceTime::To(self.parser.parse_expr()?)))
        } else if self.parser.parse_keyword(Keyword::BY) {
            Ok(StatementKind::AdvanceTime(AdvanceTime::By(self.parser.parse_expr()?)))
        } else {
            let found = self.parser.peek_token();
            self.parser.expected("TO TIMESTAMP '...' or BY INTERVAL '...' after ADVANCE TIME", found)
        }
    }

    fn parse_object_kind(&mut self) -> Result<ObjectKind, ParserError> {
        let found = self.parser.peek_token();
        if self.parse_word("segment") {
            Ok(ObjectKind::Segment)
        } else if self.parse_word("stream") {
            Ok(ObjectKind::Stream)
        } else if self.parser.parse_keyword(Keyword::TABLE) {
            Ok(ObjectKind::Table)
        } else {
            self.parser.expected("SEGMENT, STREAM or TABLE", found)
        }
    }

    fn parse_plural_object_kind(&mut self) -> Result<ObjectKind, ParserError> {
        let found = self.parser.peek_token();
        if self.parse_word("segments") {
            Ok(ObjectKind::Segment)
        } else if self.parse_word("streams") {
            Ok(ObjectKind::Stream)
        } else if self.parser.parse_keyword(Keyword::TABLES) {
            Ok(ObjectKind::Table)
        } else {
            self.parser.expected("SEGMENTS, STREAMS or TABLES after SHOW", found)
        }
    }

    /// An unqualified object name: segstream has one namespace for streams, tables and
    /// segments (`segstream.` is reserved for the system tables).
    fn parse_name(&mut self) -> Result<Name, ParserError> {
        let found = self.parser.peek_token();
        let reserved =
            [Keyword::AS, Keyword::SELECT, Keyword::FROM, Keyword::WHERE, Keyword::WITH, Keyword::IF];
        match &found.token {
            Token::Word(w) if w.quote_style.is_some() || !reserved.contains(&w.keyword) => {}
            _ => return self.parser.expected("a name", found),
        }
        let ident = self.parser.parse_identifier()?;
        if self.parser.peek_token().token == Token::Period {
            return Err(ParserError::ParserError(format!(
                "names are not qualified: write `{}` alone, without a schema or database{}",
                self.qualified_tail(&ident),
                self.at(position_of(ident.span.start))
            )));
        }
        Ok(name_of(&ident))
    }

    fn qualified_tail(&mut self, _first: &Ident) -> String {
        let mut last = String::new();
        while self.parser.consume_token(&Token::Period) {
            match self.parser.parse_identifier() {
                Ok(ident) => last = normalize(&ident),
                Err(_) => break,
            }
        }
        last
    }

    /// Consumes an unquoted word that is not a sqlparser keyword (SEGMENT, STREAM, ...).
    fn parse_word(&mut self, word: &str) -> bool {
        match self.parser.peek_token().token {
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) => {
                self.parser.next_token();
                true
            }
            _ => false,
        }
    }

    /// The ` at Line: L, Column: C` suffix that `syntax_error` turns back into a position.
    fn at(&self, position: Option<Position>) -> String {
        match position {
            Some(p) => format!(" at Line: {}, Column: {}", p.line, p.column),
            None => String::new(),
        }
    }
}

/// Maps sqlparser's line/column locations back to byte offsets, to cut each statement's
/// own text out of a script.
struct LineIndex<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(sql: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Self { sql, line_starts }
    }

    fn offset(&self, location: Location) -> usize {
        let Some(&start) = self.line_starts.get((location.line as usize).saturating_sub(1)) else {
            return self.sql.len();
        };
        let line = &self.sql[start..];
        let column = (location.column as usize).saturating_sub(1);
        start + line.char_indices().nth(column).map(|(i, _)| i).unwrap_or(line.len())
    }

    /// The position just after the last character, ignoring trailing whitespace.
    fn end_position(&self) -> Position {
        let text = self.sql.trim_end();
        let line = text.matches('\n').count() as u64 + 1;
        let last = text.rsplit('\n').next().unwrap_or_default();
        Position::new(line, last.chars().count() as u64 + 1)
    }

    fn slice(&self, start: Location, end: Location) -> &'a str {
        let (a, b) = (self.offset(start), self.offset(end));
        if a <= b {
            &self.sql[a..b]
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_script_and_keeps_each_statement_text() {
        let sql = "CREATE STREAM events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL);\n\
                   CREATE SEGMENT s AS SELECT user_id FROM events;\nSHOW SEGMENTS";
        let statements = parse_statements(sql).expect("parses");
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[1].text, "CREATE SEGMENT s AS SELECT user_id FROM events");
        assert_eq!(statements[1].position, Some(Position::new(2, 1)));
        assert!(matches!(statements[2].kind, StatementKind::Show(ObjectKind::Segment)));
    }

    #[test]
    fn stream_options_and_table_keys() {
        let s =
            parse_statement("CREATE STREAM e (id TEXT, at TIMESTAMP) WITH (event_time = 'at', key = 'id')")
                .expect("parses");
        let StatementKind::CreateStream(c) = s.kind else { panic!("not a stream: {s:?}") };
        assert_eq!(c.event_time.map(|n| n.value).as_deref(), Some("at"));
        assert_eq!(c.key.map(|n| n.value).as_deref(), Some("id"));

        let t = parse_statement("CREATE TABLE p (user_id TEXT, v DOUBLE, PRIMARY KEY (user_id))")
            .expect("parses");
        let StatementKind::CreateTable(t) = t.kind else { panic!("not a table") };
        assert_eq!(t.primary_key.value, "user_id");

        // A stream keeps every event: a key column is refused where it is written (by a
        // new CREATE STREAM; a stored definition that has one still loads).
        let s =
            parse_statement("CREATE STREAM e (\n  id TEXT PRIMARY KEY,\n  at TIMESTAMP)").expect("parses");
        let StatementKind::CreateStream(c) = s.kind else { panic!("not a stream") };
        let e = c.refuse_column_primary_key().expect_err("refused");
        assert_eq!(e.position(), Some(Position::new(2, 3)), "{e}");
        assert!(e.to_string().contains("WITH (key = 'id')"), "{e}");
        assert!(e.to_string().contains("CREATE TABLE"), "{e}");
    }

    #[test]
    fn errors_point_at_line_and_column() {
        let e = parse_statements("SHOW SEGMENTS;\nCREATE SEGMENT AS SELECT 1").expect_err("fails");
        assert_eq!(e.position(), Some(Position::new(2, 16)), "{e}");
        let StatementKind::ForgetKey { only, .. } =
            parse_statement("FORGET KEY 'u1' IN events, Profiles").expect("parses").kind
        else {
            panic!("not FORGET KEY")
        };
        assert_eq!(only.iter().map(|n| n.value.as_str()).collect::<Vec<_>>(), ["events", "profiles"]);
        let e = parse_statement("FORGET KEY u1").expect_err("fails");
        assert!(e.to_string().contains("a key after FORGET KEY, e.g. FORGET KEY 'u123'"), "{e}");
        assert!(
            matches!(parse_statement("forget key 'u1'").expect("parses").kind, StatementKind::ForgetKey { key, only } if key == "u1" && only.is_empty())
        );
        assert!(
            matches!(parse_statement("FORGET KEY -42").expect("parses").kind, StatementKind::ForgetKey { key, .. } if key == "-42")
        );
        let e = parse_statement("ADVANCE TIME FORWARD").expect_err("fails");
        assert_eq!(e.position(), Some(Position::new(1, 14)), "{e}");
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        let s = parse_statements("SELECT 'é';\nSELECT 'ü'").expect("parses");
        assert_eq!(s[0].text, "SELECT 'é'");
        assert_eq!(s[1].text, "SELECT 'ü'");
    }
}
