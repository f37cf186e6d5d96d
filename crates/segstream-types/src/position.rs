use std::fmt;

/// A place in the statement text an analyst typed: 1-based line and column.
///
/// Positions are relative to the whole text given to the parser (a script or a single
/// statement), so an error in the fifth statement of a file points at that file's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    pub fn new(line: u64, column: u64) -> Self {
        Self { line, column }
    }

    /// sqlparser uses line 0 for "no location"; such a position is no position.
    pub fn from_sqlparser(line: u64, column: u64) -> Option<Self> {
        (line > 0).then_some(Self { line, column })
    }

    /// Finds the `Line: L, Column: C` that sqlparser writes into its error messages.
    pub fn parse_from_message(message: &str) -> Option<Self> {
        let at = message.rfind("Line: ")?;
        let rest = &message[at + "Line: ".len()..];
        let (line, rest) = rest.split_once(", Column: ")?;
        let column: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        Self::from_sqlparser(line.trim().parse().ok()?, column.parse().ok()?)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sqlparser_locations() {
        let p = Position::parse_from_message("Expected: an expression, found: EOF at Line: 3, Column: 17");
        assert_eq!(p, Some(Position::new(3, 17)));
        assert_eq!(Position::parse_from_message("no location here"), None);
        assert_eq!(Position::parse_from_message("at Line: 0, Column: 0"), None);
    }
}
