//! Running statements: against the data directory or a server, from scripts or from an
//! interactive shell with line editing and history.

use std::path::PathBuf;

use segstream_engine::Engine;
use segstream_proto::display::render;
use segstream_proto::v1 as pb;
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
    pub async fn run_script(&mut self, origin: &str, text: &str) -> bool {
        match self {
            Self::Embedded(engine) => run_embedded(engine, origin, text).await,
            Self::Remote(client) => run_remote(client, origin, text).await,
        }
    }
}

async fn run_embedded(engine: &mut Engine, origin: &str, text: &str) -> bool {
    let statements = match segstream_sql::parse_statements(text) {
        Ok(s) => s,
        Err(e) => {
            report(origin, text, &e.to_string(), e.position());
            return false;
        }
    };
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

/// The server runs the whole script as one call: its results are printed in order, or
/// its error (which names the line and column in the script) with the line it points at.
async fn run_remote(client: &mut Client, origin: &str, text: &str) -> bool {
    match client.execute(pb::ExecuteRequest { sql: text.to_string() }).await {
        Ok(response) => {
            let response = response.into_inner();
            for notice in &response.notices {
                eprintln!("notice: {notice}");
            }
            for result in &response.results {
                println!("{}\n", render(result));
            }
            true
        }
        Err(status) => {
            let message = describe(&status);
            let position = position_in(&message);
            report(origin, text, &message, position);
            false
        }
    }
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
