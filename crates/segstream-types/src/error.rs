use std::fmt;

use crate::Position;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error segstream reports to a person or a client.
///
/// Each variant says what went wrong; those about statement text carry the position
/// and, where there is one, what to write instead (`help`). The gRPC layer maps the
/// variants to status codes, so the split follows who must act: the author of the
/// statement (`Syntax`, `Plan`, `Unsupported`, `Catalog`, `InvalidInput`) or the
/// operator of the machine (`Storage`, `Internal`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not a statement of the language.
    #[error("{}", Located { what: "syntax error", message, position, help: &None })]
    Syntax { message: String, position: Option<Position> },

    /// The statement is well formed but refers to something wrong (unknown column,
    /// type mismatch, bad segment shape).
    #[error("{}", Located { what: "error", message, position, help })]
    Plan { message: String, position: Option<Position>, help: Option<String> },

    /// Valid SQL that a segment cannot maintain incrementally.
    #[error("{}", Located { what: "not supported in a segment", message, position, help })]
    Unsupported { message: String, position: Option<Position>, help: Option<String> },

    /// Names: unknown, taken, or still needed by something else.
    #[error("{}", Located { what: "error", message, position, help: &None })]
    Catalog { message: String, position: Option<Position> },

    /// Rows or values that do not fit the declared schema, or a clock moved backwards.
    #[error("{}", Located { what: "error", message, position, help: &None })]
    InvalidInput { message: String, position: Option<Position> },

    /// RocksDB or the file system failed; nothing partial was applied.
    #[error("storage error: {message}")]
    Storage { message: String },

    /// A bug: something that should not happen did. Reported, never a panic.
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl Error {
    pub fn syntax(message: impl Into<String>, position: Option<Position>) -> Self {
        Self::Syntax { message: message.into(), position }
    }

    pub fn plan(message: impl Into<String>, position: Option<Position>) -> Self {
        Self::Plan { message: message.into(), position, help: None }
    }

    pub fn unsupported(
        message: impl Into<String>,
        position: Option<Position>,
        help: impl Into<String>,
    ) -> Self {
        Self::Unsupported { message: message.into(), position, help: Some(help.into()) }
    }

    pub fn catalog(message: impl Into<String>) -> Self {
        Self::Catalog { message: message.into(), position: None }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput { message: message.into(), position: None }
    }

    pub fn storage(message: impl Into<String>) -> Self {
        Self::Storage { message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal { message: message.into() }
    }

    /// Sets the position (replacing any).
    pub fn at(self, position: Option<Position>) -> Self {
        match position {
            Some(_) => {
                let mut e = self;
                if let Self::Syntax { position: p, .. }
                | Self::Plan { position: p, .. }
                | Self::Unsupported { position: p, .. }
                | Self::Catalog { position: p, .. }
                | Self::InvalidInput { position: p, .. } = &mut e
                {
                    *p = position;
                }
                e
            }
            None => self,
        }
    }

    /// Adds what to write instead, for the variants that can carry it.
    pub fn with_help(mut self, text: impl Into<String>) -> Self {
        if let Self::Plan { help, .. } | Self::Unsupported { help, .. } = &mut self {
            *help = Some(text.into());
        }
        self
    }

    /// Where in the statement text the problem is, if known.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Syntax { position, .. }
            | Self::Plan { position, .. }
            | Self::Unsupported { position, .. }
            | Self::Catalog { position, .. }
            | Self::InvalidInput { position, .. } => *position,
            Self::Storage { .. } | Self::Internal { .. } => None,
        }
    }

    /// Fills in a position when the error has none yet (a planner error located by the
    /// statement that raised it).
    pub fn or_position(mut self, fallback: Option<Position>) -> Self {
        if let Self::Syntax { position, .. }
        | Self::Plan { position, .. }
        | Self::Unsupported { position, .. }
        | Self::Catalog { position, .. }
        | Self::InvalidInput { position, .. } = &mut self
        {
            if position.is_none() {
                *position = fallback;
            }
        }
        self
    }
}

/// `error at line 3, column 8: <message>` and, on the next line, `help: <help>`.
struct Located<'a> {
    what: &'a str,
    message: &'a str,
    position: &'a Option<Position>,
    help: &'a Option<String>,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{} at {p}: {}", self.what, self.message)?,
            None => write!(f, "{}: {}", self.what, self.message)?,
        }
        if let Some(help) = self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn located_errors_name_line_column_and_help() {
        let e = Error::unsupported("ORDER BY", Some(Position::new(2, 5)), "remove it");
        assert_eq!(
            e.to_string(),
            "not supported in a segment at line 2, column 5: ORDER BY\n  help: remove it"
        );
        let e = Error::plan("x", None).or_position(Some(Position::new(1, 1)));
        assert_eq!(e.position(), Some(Position::new(1, 1)));
    }
}
