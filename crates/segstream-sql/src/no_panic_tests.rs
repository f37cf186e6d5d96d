//! Bad input never panics: random statements built from the language's own tokens go
//! through the parser and the planner, and each must come back as a result or an error.

use crate::ast::StatementKind;
use crate::{parse_statement, parse_statements, Catalog};

const TOKENS: &[&str] = &[
    "CREATE",
    "SEGMENT",
    "STREAM",
    "TABLE",
    "OR",
    "REPLACE",
    "IF",
    "NOT",
    "EXISTS",
    "AS",
    "SELECT",
    "DISTINCT",
    "user_id",
    "ts",
    "amount",
    "page",
    "event_type",
    "lifetime_value",
    "FROM",
    "events",
    "profiles",
    "e",
    "p",
    "WHERE",
    "AND",
    "IN",
    "GROUP",
    "BY",
    "HAVING",
    "ORDER",
    "LIMIT",
    "JOIN",
    "LEFT",
    "ON",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "ALL",
    "NOW()",
    "INTERVAL",
    "'3 hours'",
    "'1 month'",
    "COUNT(*)",
    "SUM(amount)",
    "MAX(ts)",
    "random()",
    "OVER",
    "(",
    ")",
    ",",
    "=",
    "<",
    ">",
    "<=",
    "-",
    "+",
    "*",
    "'purchase'",
    "1",
    "NULL",
    "IS",
    "DROP",
    "SHOW",
    "SEGMENTS",
    "DESCRIBE",
    "EXPLAIN",
    "ADVANCE",
    "TIME",
    "TO",
    "TIMESTAMP",
    "'2026-01-01'",
    "INSERT",
    "INTO",
    "VALUES",
    "DELETE",
    "WITH",
    "key",
    "=",
    ";",
    "PRIMARY",
    "KEY",
    "TEXT",
    "\"Quoted\"",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "BETWEEN",
    "CAST",
    "DOUBLE",
    "EXISTS",
    "(SELECT",
    "s",
    ".",
];

/// A small deterministic generator (xorshift), so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn catalog() -> Catalog {
    let mut catalog = Catalog::new();
    for text in [
        "CREATE STREAM events (event_id TEXT NOT NULL, user_id TEXT NOT NULL, event_type TEXT NOT NULL, \
         page TEXT, product_id TEXT, amount DOUBLE, ts TIMESTAMP NOT NULL) WITH (key = 'user_id')",
        "CREATE TABLE profiles (user_id TEXT PRIMARY KEY, country TEXT, lifetime_value DOUBLE, signup_at TIMESTAMP)",
    ] {
        let statement = parse_statement(text).expect("fixture parses");
        let relation = match &statement.kind {
            StatementKind::CreateStream(c) => catalog.stream_from(c, text),
            StatementKind::CreateTable(c) => catalog.table_from(c, text),
            _ => unreachable!("fixtures are streams and tables"),
        }
        .expect("fixture plans");
        catalog.insert(relation);
    }
    catalog
}

fn plan_all(catalog: &Catalog, sql: &str) {
    let Ok(statements) = parse_statements(sql) else {
        return;
    };
    for statement in statements {
        if let StatementKind::CreateSegment(c) | StatementKind::ExplainCreateSegment(c) = &statement.kind {
            let _ = catalog.segment_from(c, &statement.text, statement.position);
        }
    }
}

#[test]
fn random_token_soup_never_panics() {
    let catalog = catalog();
    let mut rng = Rng(0x5e65_7e4a_11ce_d00d);
    let cases = std::env::var("SEGSTREAM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    for case in 0..cases {
        let len = 1 + rng.below(30);
        let sql: Vec<&str> = (0..len).map(|_| TOKENS[rng.below(TOKENS.len())]).collect();
        let sql = sql.join(" ");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan_all(&catalog, &sql)));
        assert!(outcome.is_ok(), "case {case} panicked on: {sql}");
    }
}

#[test]
fn mutated_workload_segments_never_panic() {
    // Start from valid segments and drop, duplicate or swap tokens: inputs that are
    // almost right reach deeper into the planner than random soup does.
    let catalog = catalog();
    let seeds = [
        "CREATE SEGMENT a AS SELECT user_id FROM events WHERE event_type = 'page_view' AND ts > NOW() - INTERVAL '48 hours' GROUP BY user_id HAVING COUNT(*) >= 2",
        "CREATE SEGMENT b AS SELECT DISTINCT c.user_id FROM events c WHERE c.ts <= NOW() - INTERVAL '5 minutes' AND NOT EXISTS (SELECT 1 FROM events p WHERE p.user_id = c.user_id AND p.ts >= c.ts)",
        "CREATE SEGMENT c AS SELECT user_id FROM profiles WHERE lifetime_value > 500 AND user_id NOT IN (SELECT user_id FROM events WHERE ts > NOW() - INTERVAL '30 days')",
        "CREATE SEGMENT d AS SELECT user_id, COUNT(*) AS f, SUM(amount) AS m FROM events GROUP BY user_id HAVING MAX(ts) > NOW() - INTERVAL '14 days'",
    ];
    let mut rng = Rng(0xfeed_beef_cafe_f00d);
    for case in 0..2000 {
        let seed = seeds[case % seeds.len()];
        let mut tokens: Vec<&str> = seed.split(' ').collect();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(tokens.len());
            match rng.below(3) {
                0 => {
                    tokens.remove(i);
                }
                1 => tokens.insert(i, TOKENS[rng.below(TOKENS.len())]),
                _ => {
                    let j = rng.below(tokens.len());
                    tokens.swap(i, j);
                }
            }
            if tokens.is_empty() {
                break;
            }
        }
        let sql = tokens.join(" ");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan_all(&catalog, &sql)));
        assert!(outcome.is_ok(), "case {case} panicked on: {sql}");
    }
}
