//! Values and results as text, for command-line clients: the same layout as the
//! embedded engine's tables (Arrow's pretty printer), so a result reads the same whether
//! it came over gRPC or not.

use crate::v1 as pb;

/// A statement's result as a person reads it, as `Output::render` does for the embedded
/// engine: an aligned table and a row count, the text, or the account of what was done.
pub fn render(result: &pb::StatementResult) -> String {
    use pb::statement_result::Result as R;
    match &result.result {
        Some(R::Rows(set)) => {
            let header: Vec<String> = set.columns.iter().map(|c| c.name.clone()).collect();
            let rows: Vec<Vec<String>> =
                set.rows.iter().map(|r| r.values.iter().map(value_text).collect()).collect();
            let n = rows.len();
            format!("{}\n({n} row{})", table(&header, &rows), if n == 1 { "" } else { "s" })
        }
        Some(R::Text(text)) => text.trim_end().to_string(),
        Some(R::Done(done)) => done.clone(),
        None => String::new(),
    }
}

/// A value as text: NULL empty, times as ISO 8601 (as Arrow's tables print them).
pub fn value_text(value: &pb::Value) -> String {
    use pb::value::Kind;
    match &value.kind {
        None | Some(Kind::Null(_)) => String::new(),
        Some(Kind::Text(s)) => s.clone(),
        Some(Kind::Integer(i)) => i.to_string(),
        Some(Kind::Real(f)) => format!("{f:?}"),
        Some(Kind::Boolean(b)) => b.to_string(),
        Some(Kind::TimestampUnixNanos(ns)) => timestamp_text(*ns),
        Some(Kind::Date(days)) => chrono::DateTime::from_timestamp(i64::from(*days) * 86_400, 0)
            .map(|t| t.date_naive().to_string())
            .unwrap_or_else(|| days.to_string()),
    }
}

/// Nanoseconds since the epoch as `2026-04-01T10:00:00` (fraction only when there is one).
pub fn timestamp_text(ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(ns).naive_utc();
    t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

/// An aligned table with borders, like Arrow's pretty printer.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, v) in widths.iter_mut().zip(row) {
            *w = (*w).max(v.chars().count());
        }
    }
    let rule = format!("+{}+", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c}{} ", " ".repeat(w - c.chars().count())))
            .collect();
        format!("|{}|", padded.join("|"))
    };
    let mut out = vec![rule.clone(), line(header), rule.clone()];
    out.extend(rows.iter().map(|r| line(r)));
    out.push(rule);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1 as pb;

    #[test]
    fn tables_align_and_values_print_as_arrow_does() {
        let t = table(
            &["key".into(), "n".into()],
            &[vec!["ann".into(), "12".into()], vec!["b".into(), "".into()]],
        );
        assert_eq!(t, "+-----+----+\n| key | n  |\n+-----+----+\n| ann | 12 |\n| b   |    |\n+-----+----+");
        assert_eq!(timestamp_text(1_775_037_600_000_000_000), "2026-04-01T10:00:00");
        assert_eq!(timestamp_text(1_775_037_600_000_000_001), "2026-04-01T10:00:00.000000001");
        let v = pb::Value { kind: Some(pb::value::Kind::Real(300.0)) };
        assert_eq!(value_text(&v), "300.0");
        let d = pb::Value { kind: Some(pb::value::Kind::Date(1)) };
        assert_eq!(value_text(&d), "1970-01-02");
    }
}
