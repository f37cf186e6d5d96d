//! A line diff of expected and actual rows (longest common subsequence), so a failing
//! fixture shows only the rows that differ, with a little context.

/// Rows that differ as `- expected` / `+ actual`, rows in common as `  row`; long runs
/// of common rows are folded to `  ...`.
pub fn diff_rows(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    // lcs[i][j]: length of the longest common subsequence of expected[i..] and actual[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut lines: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            lines.push((' ', &expected[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // On a tie the expected row goes first: `- old` above `+ new`.
            lines.push(('-', &expected[i]));
            i += 1;
        } else {
            lines.push(('+', &actual[j]));
            j += 1;
        }
    }
    let changed: Vec<bool> = lines.iter().map(|(c, _)| *c != ' ').collect();
    let near_change = |k: usize| {
        let from = k.saturating_sub(2);
        let to = (k + 3).min(lines.len());
        changed[from..to].iter().any(|c| *c)
    };
    let mut out = format!("  expected {n} row{}, got {m}:\n", if n == 1 { "" } else { "s" });
    let mut folded = false;
    for (k, (sign, row)) in lines.iter().enumerate() {
        if *sign == ' ' && !near_change(k) {
            if !folded {
                out.push_str("    ...\n");
                folded = true;
            }
            continue;
        }
        folded = false;
        out.push_str(&format!("  {sign} {row}\n"));
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn shows_only_differing_rows_with_context() {
        let expected = rows("1 a\n2 b\n3 c\n4 d\n5 e\n6 f\n7 g");
        let actual = rows("1 a\n2 b\n3 c\n4 d\n5 e\n6 F\n7 g");
        let diff = diff_rows(&expected, &actual);
        assert_eq!(diff, "  expected 7 rows, got 7:\n    ...\n    4 d\n    5 e\n  - 6 f\n  + 6 F\n    7 g");
    }

    #[test]
    fn missing_and_extra_rows() {
        let diff = diff_rows(&rows("a\nb"), &rows("b\nc"));
        assert_eq!(diff, "  expected 2 rows, got 2:\n  - a\n    b\n  + c");
        assert_eq!(diff_rows(&[], &rows("x")), "  expected 0 rows, got 1:\n  + x");
    }
}
