//! First-class absence: `NOT FOLLOWED BY (condition) WITHIN INTERVAL '...'`.
//!
//! ```sql
//! SELECT DISTINCT user_id FROM events
//! WHERE event_type = 'add_to_cart'
//!   AND NOT FOLLOWED BY (event_type = 'purchase') WITHIN INTERVAL '5 minutes'
//! ```
//!
//! holds for an event once its window has closed with no other event of the same key
//! (the stream's key) meeting the condition in `[ts, ts + interval]`. It is sugar: the
//! parser reads it as a marker call, and before planning it becomes plain SQL,
//!
//! ```sql
//! e.ts <= NOW() - INTERVAL '5 minutes'
//!   AND NOT EXISTS (SELECT 1 FROM events AS __followed
//!                   WHERE __followed.user_id = e.user_id AND (event_type = 'purchase')
//!                     AND __followed.ts >= e.ts AND __followed.ts <= e.ts + INTERVAL '5 minutes'
//!                     AND NOT (<__followed is the event itself: equal in every column>))
//! ```
//!
//! so it runs on the same operators (a temporal filter and an anti join) and batch SQL
//! judges it the same way.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, Select, SetExpr, TableFactor,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};
use segstream_types::{Error, Result};

use crate::ast::ObjectKind;
use crate::catalog::Catalog;
use crate::parser::{normalize, position_of};

/// The marker call the parser turns `NOT FOLLOWED BY ... WITHIN ...` into.
pub const MARKER: &str = "__segstream_not_followed_by";

/// Rewrites `NOT FOLLOWED BY ( cond ) WITHIN INTERVAL '...'` in a token stream into
/// `__segstream_not_followed_by(( cond ), INTERVAL '...')`, keeping every token's place.
pub(crate) fn rewrite_tokens(
    tokens: Vec<TokenWithSpan>,
) -> std::result::Result<Vec<TokenWithSpan>, ParserError> {
    let significant = |i: usize| -> Option<usize> {
        (i..tokens.len()).find(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
    };
    let is_word = |i: Option<usize>, word: &str| {
        i.is_some_and(|i| matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word)))
    };
    let error = |at: Option<&TokenWithSpan>| {
        match at.filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF)) {
        Some(at) => ParserError::ParserError(format!(
            "Expected: ( condition ) WITHIN INTERVAL '...' after NOT FOLLOWED BY, found: {} at Line: {}, Column: {}",
            at.token, at.span.start.line, at.span.start.column
        )),
        None => ParserError::ParserError(
            "Expected: ( condition ) WITHIN INTERVAL '...' after NOT FOLLOWED BY, found: EOF".to_string(),
        ),
    }
    };
    let mut out = Vec::with_capacity(tokens.len() + 4);
    let mut i = 0;
    while i < tokens.len() {
        let followed = significant(i + 1);
        let by = followed.and_then(|f| significant(f + 1));
        let starts = matches!(&tokens[i].token, Token::Word(w) if w.keyword == Keyword::NOT)
            && is_word(followed, "followed")
            && is_word(by, "by");
        if !starts {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let not = tokens[i].clone();
        let open = by.and_then(|b| significant(b + 1)).filter(|&o| tokens[o].token == Token::LParen);
        let Some(open) = open else {
            return Err(error(by.and_then(|b| significant(b + 1)).map(|i| &tokens[i])));
        };
        let mut depth = 0;
        let mut close = None;
        for (j, t) in tokens.iter().enumerate().skip(open) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else { return Err(error(None)) };
        let within = significant(close + 1);
        let interval = within.and_then(|w| significant(w + 1));
        let literal = interval.and_then(|v| significant(v + 1));
        let ok = is_word(within, "within")
            && interval.is_some_and(
                |v| matches!(&tokens[v].token, Token::Word(w) if w.keyword == Keyword::INTERVAL),
            )
            && literal.is_some_and(|l| matches!(tokens[l].token, Token::SingleQuotedString(_)));
        let (Some(within), Some(interval), Some(literal)) = (within, interval, literal) else {
            let missing =
                [within, interval, literal].into_iter().flatten().last().and_then(|i| significant(i + 1));
            return Err(error(missing.map(|i| &tokens[i])));
        };
        if !ok {
            let bad = [within, interval, literal][if !is_word(Some(within), "within") {
                0
            } else if !matches!(&tokens[interval].token, Token::Word(w) if w.keyword == Keyword::INTERVAL) {
                1
            } else {
                2
            }];
            return Err(error(Some(&tokens[bad])));
        }
        // An optional unit after the literal: INTERVAL '5' MINUTE.
        let unit = significant(literal + 1).filter(|&u| {
            matches!(&tokens[u].token, Token::Word(w) if matches!(
                w.keyword,
                Keyword::SECOND | Keyword::MINUTE | Keyword::HOUR | Keyword::DAY | Keyword::WEEK
            ))
        });
        let end = unit.unwrap_or(literal);
        let at = |token: Token, from: &TokenWithSpan| TokenWithSpan { token, span: from.span };
        out.push(at(Token::make_word(MARKER, None), &not));
        out.push(at(Token::LParen, &not));
        out.extend(tokens[open..=close].iter().cloned());
        out.push(at(Token::Comma, &tokens[within]));
        out.push(at(Token::Whitespace(Whitespace::Space), &tokens[within]));
        out.extend(tokens[interval..=end].iter().cloned());
        out.push(at(Token::RParen, &tokens[end]));
        i = end + 1;
    }
    Ok(out)
}

/// Replaces every marker call in the query's WHERE clauses with its plain SQL; a
/// marker anywhere else (SELECT list, HAVING, ON) is an error.
pub fn desugar(query: &mut Query, catalog: &Catalog) -> Result<()> {
    desugar_where(query, catalog)?;
    let mut finder = FindMarker { found: None };
    let _ = query.visit(&mut finder);
    match finder.found {
        None => Ok(()),
        Some(position) => Err(Error::unsupported(
            "NOT FOLLOWED BY is only allowed in WHERE",
            position,
            "write it in the WHERE clause of a query over one stream",
        )),
    }
}

fn desugar_where(query: &mut Query, catalog: &Catalog) -> Result<()> {
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            desugar_where(&mut cte.query, catalog)?;
        }
    }
    desugar_set_expr(&mut query.body, catalog)
}

fn desugar_set_expr(body: &mut SetExpr, catalog: &Catalog) -> Result<()> {
    match body {
        SetExpr::Select(select) => desugar_select(select, catalog),
        SetExpr::Query(query) => desugar_where(query, catalog),
        SetExpr::SetOperation { left, right, .. } => {
            desugar_set_expr(left, catalog)?;
            desugar_set_expr(right, catalog)
        }
        _ => Ok(()),
    }
}

fn desugar_select(select: &mut Select, catalog: &Catalog) -> Result<()> {
    for table in &mut select.from {
        if let TableFactor::Derived { subquery, .. } = &mut table.relation {
            desugar_where(subquery, catalog)?;
        }
        for join in &mut table.joins {
            if let TableFactor::Derived { subquery, .. } = &mut join.relation {
                desugar_where(subquery, catalog)?;
            }
        }
    }
    let Some(selection) = &mut select.selection else { return Ok(()) };
    // Subqueries in the condition first, each about its own stream; then this level.
    let mut nested = NestedQueries { catalog, error: None };
    let _ = selection.visit(&mut nested);
    if let Some(e) = nested.error {
        return Err(e);
    }
    let mut finder = FindMarker { found: None };
    let _ = selection.visit(&mut finder);
    let Some(position) = finder.found else { return Ok(()) };
    // The event the condition is about: the one stream the SELECT reads.
    let stream = match select.from.as_slice() {
        [table] if table.joins.is_empty() => match &table.relation {
            TableFactor::Table { name, alias, .. } => {
                let parts: Vec<&Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
                let [ident] = parts.as_slice() else {
                    return Err(not_one_stream(position));
                };
                let stream = normalize(ident);
                let outer = alias.as_ref().map(|a| a.name.clone()).unwrap_or_else(|| (*ident).clone());
                Some((stream, outer))
            }
            _ => None,
        },
        _ => None,
    };
    let Some((stream, outer)) = stream else { return Err(not_one_stream(position)) };
    let Some(relation) = catalog.get(&stream).filter(|r| r.kind == ObjectKind::Stream) else {
        return Err(Error::unsupported(
            format!("NOT FOLLOWED BY is about events, and `{stream}` is not a stream"),
            position,
            "use it in a query over one stream, e.g. `SELECT user_id FROM events WHERE ...`",
        ));
    };
    let key = Ident::with_quote('"', relation.key.as_str());
    let ts = Ident::with_quote('"', relation.event_time.clone().unwrap_or_else(|| "ts".into()));
    let columns =
        relation.schema.fields().iter().map(|f| Ident::with_quote('"', f.name().as_str())).collect();
    let mut replacer =
        ReplaceMarker { stream: Ident::with_quote('"', stream), outer, key, ts, columns, error: None };
    let _ = selection.visit(&mut replacer);
    match replacer.error {
        Some(e) => Err(e.or_position(position)),
        None => Ok(()),
    }
}

fn not_one_stream(position: Option<segstream_types::Position>) -> Error {
    Error::unsupported(
        "NOT FOLLOWED BY needs a query that reads exactly one stream (no joins)",
        position,
        "read the stream alone, e.g. `SELECT user_id FROM events WHERE ... AND NOT FOLLOWED BY (...) WITHIN ...`",
    )
}

fn marker_args(e: &Expr) -> Option<(&Expr, &Expr, Option<segstream_types::Position>)> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.0.first()?.as_ident()?;
    if name.value != MARKER {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else { return None };
    let arg = |i: usize| match list.args.get(i) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e),
        _ => None,
    };
    Some((arg(0)?, arg(1)?, position_of(name.span.start)))
}

struct FindMarker {
    found: Option<Option<segstream_types::Position>>,
}

impl VisitorMut for FindMarker {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some((_, _, position)) = marker_args(expr) {
            self.found = Some(position);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

struct NestedQueries<'a> {
    catalog: &'a Catalog,
    error: Option<Error>,
}

impl VisitorMut for NestedQueries<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        match desugar_where(query, self.catalog) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

struct ReplaceMarker {
    stream: Ident,
    outer: Ident,
    key: Ident,
    ts: Ident,
    columns: Vec<Ident>,
    error: Option<Error>,
}

const CONDITION: &str = "__segstream_condition";
const INTERVAL: &str = "__segstream_interval";

/// Puts the analyst's own condition and interval (with their positions) where the
/// template has placeholders.
struct FillPlaceholders {
    condition: Expr,
    interval: Expr,
}

impl VisitorMut for FillPlaceholders {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = expr {
            if ident.value == CONDITION {
                *expr = self.condition.clone();
            } else if ident.value == INTERVAL {
                *expr = self.interval.clone();
            }
        }
        ControlFlow::Continue(())
    }
}

impl VisitorMut for ReplaceMarker {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Some((condition, interval, _)) = marker_args(expr) else { return ControlFlow::Continue(()) };
        let mut fill = FillPlaceholders { condition: condition.clone(), interval: interval.clone() };
        let (o, key, ts, stream) = (&self.outer, &self.key, &self.ts, &self.stream);
        // A follower is another event: at or after this one's time, but not the event
        // itself (a row equal to it in every column).
        let itself = self
            .columns
            .iter()
            .map(|c| format!("(__followed.{c} IS NOT DISTINCT FROM {o}.{c})"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let text = format!(
            "({o}.{ts} <= NOW() - {INTERVAL} AND NOT EXISTS (SELECT 1 FROM {stream} AS __followed \
             WHERE __followed.{key} = {o}.{key} AND ({CONDITION}) \
             AND __followed.{ts} >= {o}.{ts} AND __followed.{ts} <= {o}.{ts} + {INTERVAL} AND NOT ({itself})))"
        );
        match Parser::new(&GenericDialect {}).try_with_sql(&text).and_then(|mut p| p.parse_expr()) {
            Ok(mut replacement) => {
                let _ = replacement.visit(&mut fill);
                *expr = replacement;
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.error = Some(Error::internal(format!("NOT FOLLOWED BY did not expand: {e}")));
                ControlFlow::Break(())
            }
        }
    }
}
