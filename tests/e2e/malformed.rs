//! Bad input never panics: each malformed or unsupported statement yields an error that
//! says what is wrong and where (line and column).

use segstream_types::Position;

use crate::support::{fresh_engine, workload_schema};

/// (statement, a fragment of the error message, line, column)
const CASES: &[(&str, &str, u64, u64)] = &[
    ("CREATE SEGMENT AS SELECT 1", "Expected: a name, found: AS", 1, 16),
    (
        "CREATE SEGMNT s AS SELECT 1",
        "SEGMENT, STREAM or TABLE after CREATE",
        1,
        8,
    ),
    ("SELEC user_id FROM events", "Expected: an SQL statement", 1, 1),
    (
        "CREATE STREAM s (a TEXT",
        "Expected: ',' or ')' after column definition, found: EOF",
        1,
        24,
    ),
    ("CREATE STREAM s ()", "at least one column", 1, 17),
    (
        "CREATE STREAM s (a TEXT, ts TIMESTAMP) WITH (colour = 'red')",
        "unknown stream option `colour`",
        1,
        46,
    ),
    (
        "CREATE STREAM s (a BLOB, ts TIMESTAMP)",
        "segstream does not store",
        1,
        18,
    ),
    (
        "CREATE STREAM s (a TEXT, a TEXT, ts TIMESTAMP)",
        "declared twice",
        1,
        26,
    ),
    ("CREATE STREAM s (a TEXT, ts TEXT)", "not TIMESTAMP", 1, 15),
    (
        "CREATE STREAM s (a DOUBLE, ts TIMESTAMP)",
        "a key must be TEXT",
        1,
        15,
    ),
    (
        "CREATE TABLE t (a TEXT, b TEXT, PRIMARY KEY (a, b))",
        "PRIMARY KEY is one column",
        1,
        14,
    ),
    (
        "CREATE TABLE t (a TEXT PRIMARY KEY, b TEXT PRIMARY KEY)",
        "more than one PRIMARY KEY",
        1,
        37,
    ),
    ("CREATE TABLE t (a TEXT)", "needs a PRIMARY KEY", 1, 14),
    ("DROP VIEW v", "SEGMENT, STREAM or TABLE", 1, 6),
    ("SHOW VIEWS", "SEGMENTS, STREAMS or TABLES after SHOW", 1, 6),
    ("ADVANCE TIME", "TO TIMESTAMP", 1, 13),
    (
        "ADVANCE TIME TO 'tomorrow'",
        "constant TIMESTAMP or INTERVAL",
        1,
        1,
    ),
    (
        "EXPLAIN SELECT 1",
        "SEGMENT name or CREATE SEGMENT after EXPLAIN",
        1,
        9,
    ),
    (
        "UPDATE profiles SET country = 'FR'",
        "does not run UPDATE statements",
        1,
        1,
    ),
    (
        "CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events ORDER BY 1",
        "ORDER BY has no meaning",
        1,
        57,
    ),
    (
        "CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events LIMIT 5",
        "LIMIT",
        1,
        57,
    ),
    (
        "CREATE SEGMENT s AS SELECT user_id, ROW_NUMBER() OVER () AS n FROM events",
        "window functions",
        1,
        50,
    ),
    (
        "CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE random() > 0.5",
        "volatile",
        1,
        63,
    ),
    (
        "CREATE SEGMENT s AS SELECT DISTINCT user_id, NOW() AS t FROM events",
        "NOW() in the SELECT list",
        1,
        46,
    ),
    (
        "CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE ts > NOW() OR amount > 1",
        "inside OR",
        1,
        68,
    ),
    (
        "CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE ts > NOW() - INTERVAL '1 year'",
        "no fixed length",
        1,
        68,
    ),
    (
        "CREATE SEGMENT s AS SELECT user_id FROM evnts",
        "did you mean `events`",
        1,
        41,
    ),
    ("CREATE SEGMENT s AS SELECT usr_id FROM events", "usr_id", 1, 28),
    (
        "CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE",
        "Expected: an expression",
        1,
        62,
    ),
    (
        "CREATE SEGMENT s AS SELECT e.user_id FROM events e JOIN profiles p ON e.amount > p.lifetime_value",
        "without an equality",
        1,
        21,
    ),
    (
        "DESCRIBE nothing",
        "no stream, table or segment is named `nothing`",
        1,
        10,
    ),
    (
        "INSERT INTO events VALUES ('x')",
        "`events`, row 1: column `user_id` is NOT NULL",
        1,
        1,
    ),
    (
        "INSERT INTO nowhere VALUES (1)",
        "no stream, table or segment is named `nowhere`",
        1,
        1,
    ),
    ("SELECT * FROM missing_table", "missing_table", 1, 15),
    ("SELECT 'abc", "Unterminated string literal", 1, 8),
    (
        "DROP SEGMENT events",
        "`events` is a stream, not a segment",
        1,
        14,
    ),
    (
        "CREATE SEGMENT s AS SELECT user_id, user_id FROM profiles",
        "user_id",
        1,
        21,
    ),
    (
        "CREATE STREAM e2 (id TEXT, ts TIMESTAMP) WITH (key = 'nope')",
        "the key `nope` is not one of the columns",
        1,
        54,
    ),
    (
        "CREATE SEGMENT segstream.s AS SELECT user_id FROM profiles",
        "names are not qualified",
        1,
        16,
    ),
    (
        "INSERT INTO profiles VALUES ('u1', 'FR', 1.0, NULL) ON CONFLICT (country) DO NOTHING",
        "must name the primary key",
        1,
        1,
    ),
    ("CREATE OR REPLACE STREAM s (a TEXT, ts TIMESTAMP)", "SEGMENT after CREATE OR REPLACE", 1, 19),
    ("CREATE OR REPLACE SEGMENT IF NOT EXISTS s AS SELECT 1", "either OR REPLACE or IF NOT EXISTS", 1, 34),
    ("CREATE STREAM s (a TEXT, ts TIMESTAMP, PRIMARY KEY (a))", "a stream is append-only and has no constraints", 1, 15),
    ("CREATE TABLE t (a TEXT PRIMARY KEY, b TEXT, UNIQUE (b))", "only PRIMARY KEY constraints are supported", 1, 14),
    ("CREATE TABLE t (a TEXT PRIMARY KEY, b TEXT DEFAULT 'x')", "column option `DEFAULT 'x'` on `b` is not supported", 1, 37),
    ("EXPLAIN CREATE STREAM s (a TEXT)", "SEGMENT after EXPLAIN CREATE", 1, 16),
    ("SHOW SEGMENTS extra", "end of statement", 1, 15),
    ("CREATE SEGMENT profiles AS SELECT user_id FROM events", "`profiles` is already the name of a table", 1, 16),
    ("EXPLAIN CREATE OR REPLACE SEGMENT profiles AS SELECT user_id FROM events", "`profiles` is already the name of a table", 1, 35),
    ("CREATE STREAM s (a TEXT PRIMARY KEY, ts TIMESTAMP)", "a stream is append-only and has no PRIMARY KEY (`a`)", 1, 18),
    ("CREATE SEGMENT s AS SELECT user_id FROM public.events", "names are not qualified", 1, 41),
    ("CREATE SEGMENT s AS SELECT FROM events", "at least one column", 1, 21),
    ("CREATE SEGMENT s AS SELECT user_id, COUNT(*) AS n FROM events GROUP BY ROLLUP (user_id)", "ROLLUP", 1, 63),
    ("CREATE SEGMENT s AS SELECT p.user_id, e.user_id AS eu FROM (SELECT DISTINCT user_id FROM events) e RIGHT JOIN profiles p ON e.user_id = p.user_id", "RIGHT JOIN", 1, 100),
    ("CREATE SEGMENT s AS SELECT user_id FROM profiles WHERE EXISTS (SELECT 1 FROM events e WHERE e.user_id = profiles.user_id) OR country = 'FR'", "join", 1, 21),
    ("CREATE SEGMENT s AS SELECT user_id, (SELECT MAX(amount) FROM events) AS top FROM profiles", "user_id", 1, 21),
    ("CREATE SEGMENT s AS WITH RECURSIVE r(user_id) AS (SELECT user_id FROM profiles UNION ALL SELECT user_id FROM r) SELECT user_id FROM r", "Recursive CTE is not implemented", 1, 21),
    ("CREATE SEGMENT s AS SELECT user_id, MAX(amount ORDER BY ts) AS m FROM events GROUP BY user_id", "ORDER BY", 1, 48),
    ("CREATE SEGMENT s AS SELECT user_id, SUM(DISTINCT amount) AS m FROM events GROUP BY user_id", "only COUNT(DISTINCT ...) is", 1, 41),
    ("CREATE SEGMENT s AS SELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id, NOW()", "NOW() in GROUP BY", 1, 81),
    ("CREATE SEGMENT s AS SELECT user_id, MAX(NOW() - ts) AS m FROM events GROUP BY user_id", "NOW() inside an aggregate", 1, 41),
    ("CREATE SEGMENT s AS SELECT p.user_id FROM profiles p JOIN events e ON e.user_id = p.user_id AND (e.ts > NOW() OR p.signup_at > NOW())", "join condition", 1, 105),
    ("CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE date_trunc('day', NOW()) < ts", "only allowed in a comparison", 1, 81),
    ("CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE amount > NOW()", "Cannot infer common argument type for comparison operation Float64 > Timestamp(ns)", 1, 21),
    ("CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE ts > NOW() - INTERVAL '200000 days'", "too large", 1, 68),
    ("DROP SEGMENT nothing_here", "no stream, table or segment is named `nothing_here`", 1, 14),
    ("EXPLAIN SEGMENT events", "`events` is a stream, not a segment", 1, 17),
    ("INSERT INTO profiles VALUES ('u1', 'FR', 1.0, NULL) RETURNING user_id", "this form of INSERT is not supported", 1, 1),
    ("INSERT INTO events VALUES ('e', 'u', 'login', NULL, NULL, NULL, NOW()) ON CONFLICT DO NOTHING", "append-only", 1, 1),
    ("INSERT INTO profiles VALUES ('u1', 'FR', 1.0, NULL) ON CONFLICT (user_id) DO UPDATE SET country = 'DE'", "already replaces the row", 1, 1),
    ("INSERT INTO profiles VALUES ('u1', 'FR', 1.0, NULL) ON DUPLICATE KEY UPDATE country = 'DE'", "ON DUPLICATE KEY UPDATE", 1, 1),
    ("INSERT INTO profiles (user_id, colour) VALUES ('u1', 'red')", "`profiles` has no column `colour`", 1, 1),
    ("INSERT INTO profiles (user_id, user_id) VALUES ('u1', 'u2')", "named twice", 1, 1),
    ("INSERT INTO profiles (user_id, country) VALUES ('u1')", "gives 1 values per row for 2 columns", 1, 1),
    ("INSERT INTO profiles VALUES ('u1', 'FR', 1.0, NULL, 'extra')", "gives 5 values per row for 4 columns", 1, 1),
    ("INSERT INTO profiles SELECT user_id, page, amount, ts, event_id FROM events", "gives 5 values", 1, 1),
    ("DELETE FROM profiles USING events WHERE profiles.user_id = events.user_id", "one table, no joins", 1, 1),
    ("DELETE FROM winback AS w", "no stream, table or segment is named `winback`", 1, 1),
];

#[tokio::test]
async fn malformed_statements_get_errors_with_positions() {
    assert!(CASES.len() >= 30);
    let mut problems = Vec::new();
    for (sql, fragment, line, column) in CASES {
        let (mut engine, _dir) = fresh_engine();
        engine.execute(&workload_schema()).await.expect("schema");
        match engine.execute(sql).await {
            Ok(outputs) => problems.push(format!("{sql}\n  succeeded: {outputs:?}")),
            Err(e) => {
                let text = e.to_string();
                if !text.contains(fragment) {
                    problems.push(format!("{sql}\n  error `{text}` does not contain `{fragment}`"));
                }
                if e.position() != Some(Position::new(*line, *column)) {
                    problems.push(format!(
                        "{sql}\n  error `{text}` is at {:?}, expected {line}:{column}",
                        e.position()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[tokio::test]
async fn deeply_nested_input_is_an_error_not_a_crash() {
    let (mut engine, _dir) = fresh_engine();
    let sql = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let e = engine.execute(&sql).await.expect_err("too deep");
    assert!(e.to_string().contains("nested too deeply"), "{e}");
    assert_eq!(e.position(), Some(Position::new(1, 1)));
}

#[tokio::test]
async fn the_wall_clock_cannot_be_advanced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine =
        segstream_engine::Engine::open(segstream_engine::EngineOptions::new(dir.path())).expect("open");
    let e = engine.execute("ADVANCE TIME BY INTERVAL '1 hour'").await.expect_err("wall clock");
    assert!(e.to_string().contains("ADVANCE TIME needs the manual clock"), "{e}");
    assert_eq!(e.position(), Some(Position::new(1, 1)));
    // The wall clock reads today, not the epoch, from the first statement that reads data.
    engine.execute("SELECT 1").await.expect("a query");
    let now = engine.now();
    assert!(now.0 > 1_700_000_000_000_000_000, "{now}");
}
