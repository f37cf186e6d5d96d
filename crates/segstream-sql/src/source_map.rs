//! Where things are in a statement's text, for errors about a logical plan.
//!
//! DataFusion's `LogicalPlan` keeps few source spans, so when lowering refuses a node
//! (a `Sort`, a `Window`, a call to `random()`) it names what to look for, and this map
//! finds the first place the text says it: the `ORDER` of `ORDER BY`, the `OVER` of a
//! window function, the name of a function call.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use segstream_types::Position;

/// What an error points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Locate {
    /// An unquoted keyword or word, e.g. `order`, `limit`, `over`.
    Word(&'static str),
    /// A call of a function by name, e.g. `random`.
    Function(String),
    /// A call of `NOW()` or `CURRENT_TIMESTAMP`.
    Now,
    /// The segment's query as a whole.
    Query,
}

pub(crate) struct SourceMap {
    tokens: Vec<TokenWithSpan>,
    origin: Option<Position>,
    query: Option<Position>,
}

impl SourceMap {
    /// `text` is the statement as written and `origin` where its first character is in
    /// the script; `query` is where the segment's query begins.
    pub(crate) fn new(text: &str, origin: Option<Position>, query: Option<Position>) -> Self {
        let tokens = Tokenizer::new(&GenericDialect {}, text)
            .tokenize_with_location()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect();
        Self { tokens, origin, query }
    }

    pub(crate) fn find(&self, what: &Locate) -> Option<Position> {
        let found = match what {
            Locate::Query => return self.query,
            Locate::Word(word) => self.word(word),
            Locate::Function(name) => self.function_call(name).or_else(|| self.word(name)),
            Locate::Now => self
                .function_call("now")
                .or_else(|| self.tokens.iter().position(|t| is_word(&t.token, "current_timestamp"))),
        };
        match found {
            Some(i) => self.absolute(&self.tokens[i]),
            None => self.query,
        }
    }

    fn word(&self, word: &str) -> Option<usize> {
        self.tokens.iter().position(|t| is_word(&t.token, word))
    }

    pub(crate) fn contains_word(&self, word: &str) -> bool {
        self.tokens.iter().any(|t| is_word(&t.token, word))
    }

    fn function_call(&self, name: &str) -> Option<usize> {
        self.tokens.windows(2).position(|w| is_word(&w[0].token, name) && w[1].token == Token::LParen)
    }

    /// Token locations are relative to the statement text; make them relative to the
    /// script the statement came from.
    fn absolute(&self, token: &TokenWithSpan) -> Option<Position> {
        let (line, column) = (token.span.start.line, token.span.start.column);
        match self.origin {
            Some(o) if line == 1 => Position::from_sqlparser(o.line, o.column + column - 1),
            Some(o) => Position::from_sqlparser(o.line + line - 1, column),
            None => Position::from_sqlparser(line, column),
        }
    }
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_words_and_calls_relative_to_the_script() {
        let text = "CREATE SEGMENT s AS\nSELECT user_id FROM e ORDER BY random()";
        let map = SourceMap::new(text, Some(Position::new(3, 5)), Some(Position::new(4, 1)));
        assert_eq!(map.find(&Locate::Word("order")), Some(Position::new(4, 23)));
        assert_eq!(map.find(&Locate::Function("random".into())), Some(Position::new(4, 32)));
        assert_eq!(map.find(&Locate::Word("create")), Some(Position::new(3, 5)));
        assert_eq!(map.find(&Locate::Now), Some(Position::new(4, 1)), "falls back to the query");
    }
}
