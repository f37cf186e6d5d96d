//! Running statements: against the data directory or a server, from scripts or from an
//! interactive shell with line editing and history.

use std::path::PathBuf;

use segstream_engine::Engine;
use segstream_proto::display::render;
use segstream_proto::v1 as pb;
use segstream_sql::ast::Statement;
use segstream_types::Position;

use crate::remote::{describe, Client};

/// Where statements run.
pub enum Target {
    Embedded(Box<Engine>),
    Remote(Client),
}

impl Target {
    /// Runs a script's statements in order, printing each result; stops at the first
    /// error (reported with its position) and returns `false`.
    /// The script is split here, with the same parser as a server's: a syntax error
    /// anywhere stops it before anything runs.
    pub async fn run_script(&mut self, origin: &str, text: &str) -> bool {
        let statements = match segstream_sql::parse_statements(text) {
            Ok(s) => s,
            Err(e) => {
                report(origin, text, &e.to_string(), e.position());
                return false;
            }
        };
        match self {
            Self::Embedded(engine) => run_embedded(engine, origin, text, statements).await,
            Self::Remote(client) => run_remote(client, origin, text, statements).await,
        }
    }
}

async fn run_embedded(engine: &mut Engine, origin: &str, text: &str, statements: Vec<Statement>) -> bool {
    for statement in statements {
        match engine.execute_statement(&statement).await {
            Ok(output) => println!("{}\n", output.render()),
            Err(e) => {
                let e = e.or_position(statement.position);
                report(origin, text, &e.to_string(), e.position());
                return false;
            }
        }
    }
    true
}

/// Each statement goes to the server as a call of its own, so the results of those
/// before a failing one are printed (they are applied and durable) and nothing after it
/// runs. A server error's position, which is in the statement it was sent, is moved to
/// the script's line and column.
async fn run_remote(client: &mut Client, origin: &str, text: &str, statements: Vec<Statement>) -> bool {
    for statement in statements {
        match client.execute(pb::ExecuteRequest { sql: statement.text.clone() }).await {
            Ok(response) => {
                let response = response.into_inner();
                for notice in &response.notices {
                    eprintln!("notice: {notice}");
                }
                for result in &response.results {
                    println!("{}\n", render(result));
                }
            }
            Err(status) => {
                let message = describe(&status);
                let (message, position) = in_script(&message, statement.position);
                report(origin, text, &message, position);
                return false;
            }
        }
    }
    true
}

/// A server's message about one statement, with its position moved into the script where
/// the statement starts at `start` (or pointing at the statement when it had none).
fn in_script(message: &str, start: Option<Position>) -> (String, Option<Position>) {
    let (Some(inner), Some(start)) = (position_in(message), start) else {
        return (message.to_string(), position_in(message).or(start));
    };
    let outer = if inner.line == 1 {
        Position::new(start.line, start.column + inner.column - 1)
    } else {
        Position::new(start.line + inner.line - 1, inner.column)
    };
    let message = message.replacen(
        &format!(" at line {}, column {}", inner.line, inner.column),
        &format!(" at line {}, column {}", outer.line, outer.column),
        1,
    );
    (message, Some(outer))
}

/// `... at line 3, column 8: ...` in a server's message.
fn position_in(message: &str) -> Option<Position> {
    let rest = &message[message.find(" at line ")? + " at line ".len()..];
    let (line, rest) = rest.split_once(", column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Position::new(line.parse().ok()?, column.parse().ok()?))
}

/// Prints an error with the line it points at and a caret under the column.
pub fn report(origin: &str, text: &str, message: &str, position: Option<Position>) {
    if message.starts_with("error")
        || message.starts_with("syntax error")
        || message.starts_with("not supported")
    {
        eprintln!("{message}");
    } else {
        eprintln!("error: {message}");
    }
    if let Some(Position { line, column }) = position {
        eprintln!("  --> {origin}:{line}:{column}");
        if let Some(source_line) = text.lines().nth((line as usize).saturating_sub(1)) {
            let gutter = line.to_string();
            eprintln!("{} |", " ".repeat(gutter.len()));
            eprintln!("{gutter} | {source_line}");
            eprintln!("{} | {}^", " ".repeat(gutter.len()), " ".repeat((column as usize).saturating_sub(1)));
        }
    }
}

const HELP: &str = "\
Statements end with `;` and may span lines. Examples:
  SHOW SEGMENTS;
  SELECT * FROM recent_buyers;
  SELECT seq, key, kind, at FROM segstream.changes WHERE segment = 'recent_buyers' ORDER BY seq DESC LIMIT 10;
  ADVANCE TIME BY INTERVAL '1 hour';      -- manual clock only
Commands: \\help  \\quit (or Ctrl-D).  Ctrl-C clears the statement being typed.
The language: docs/sql-reference.md";

/// The interactive shell: reads statements until `;`, runs them, keeps a history file.
pub async fn interactive(target: &mut Target, describe_target: &str) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = history_file();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!(
        "segstream {} — {describe_target}. Type \\help for help, \\quit to leave.",
        env!("CARGO_PKG_VERSION")
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "segstream> " } else { "        -> " };
        let line = tokio::task::block_in_place(|| editor.readline(prompt));
        match line {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() {
                    match trimmed {
                        "" => continue,
                        "\\q" | "\\quit" | "quit" | "exit" => break,
                        "\\h" | "\\help" | "help" | "\\?" => {
                            println!("{HELP}");
                            continue;
                        }
                        _ => {}
                    }
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if trimmed.ends_with(';') {
                    let _ = editor.add_history_entry(buffer.trim_end());
                    target.run_script("<shell>", &buffer).await;
                    buffer.clear();
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".segstream_history"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_points_into_the_script() {
        let start = Some(Position::new(4, 3));
        // On the statement's first line, columns shift by where it starts.
        let (message, at) = in_script("error at line 1, column 8: no such thing", start);
        assert_eq!(
            (message.as_str(), at),
            ("error at line 4, column 10: no such thing", Some(Position::new(4, 10)))
        );
        // On a later line, only the line shifts.
        let (message, at) = in_script("not supported in a segment at line 3, column 1: ORDER BY", start);
        assert_eq!(message, "not supported in a segment at line 6, column 1: ORDER BY");
        assert_eq!(at, Some(Position::new(6, 1)));
        // Without a position, the statement's start.
        assert_eq!(in_script("permission denied", start), ("permission denied".to_string(), start));
    }
}
