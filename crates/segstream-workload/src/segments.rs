//! The reference workload's segments as SQL: the seven (`shared/WORKLOAD.md`), and the
//! many-segment workload, the seven in 15 variants (105 segments) whose windows and
//! thresholds move with the variant `k`, so that segments share predicates and streams
//! but not results.

/// How many variants of the seven the many-segment workload has.
pub const VARIANTS: usize = 15;

/// The seven segments of variant `k` (`k` = 0 is the seven as written, the others get
/// the suffix `_k`), each as `(name, CREATE SEGMENT ...)`, in an order where a segment
/// comes after the segments it reads.
pub fn variant(k: usize) -> Vec<(String, String)> {
    let s = if k == 0 { String::new() } else { format!("_{k}") };
    let pricing = format!(
        "CREATE SEGMENT pricing_hot{s} AS\n\
         SELECT user_id FROM events\n\
         WHERE event_type = 'page_view' AND page = '/pricing' AND ts > NOW() - INTERVAL '{} hours'\n\
         GROUP BY user_id HAVING COUNT(*) >= {};",
        48 + 12 * k,
        2 + k % 3
    );
    let cart = format!(
        "CREATE SEGMENT cart_abandoners{s} AS\n\
         SELECT DISTINCT c.user_id FROM events c\n\
         WHERE c.event_type = 'add_to_cart'\n  \
         AND c.ts <= NOW() - INTERVAL '{} minutes' AND c.ts > NOW() - INTERVAL '24 hours'\n  \
         AND NOT EXISTS (SELECT 1 FROM events p\n                  \
         WHERE p.user_id = c.user_id AND p.event_type = 'purchase' AND p.ts >= c.ts);",
        5 + k
    );
    let recent = format!(
        "CREATE SEGMENT recent_buyers{s} AS\n\
         SELECT DISTINCT user_id FROM events\n\
         WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '{} hours';",
        3 + k
    );
    let lapsed = format!(
        "CREATE SEGMENT lapsed_high_value{s} AS\n\
         SELECT user_id FROM profiles\n\
         WHERE lifetime_value > {}\n  \
         AND user_id NOT IN (SELECT user_id FROM events\n                      \
         WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '{} days');",
        500 + 100 * k,
        30 + k
    );
    let winback = format!(
        "CREATE SEGMENT winback_now{s} AS\n\
         SELECT user_id FROM lapsed_high_value{s}\n\
         WHERE user_id IN (SELECT user_id FROM events\n                  \
         WHERE event_type = 'login' AND ts > NOW() - INTERVAL '{} hour{}');",
        1 + k,
        if k == 0 { "" } else { "s" }
    );
    let rfm = format!(
        "CREATE SEGMENT rfm_champions{s} AS\n\
         SELECT user_id, COUNT(*) AS frequency, SUM(amount) AS monetary FROM events\n\
         WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '90 days'\n\
         GROUP BY user_id\n\
         HAVING COUNT(*) >= {} AND SUM(amount) >= {} AND MAX(ts) > NOW() - INTERVAL '{} days';",
        3 + k % 3,
        300 + 50 * k,
        14 + k
    );
    let welcome = format!(
        "CREATE SEGMENT welcome_offer{s} AS\n\
         SELECT user_id FROM profiles WHERE signup_at > NOW() - INTERVAL '{} days'\n\
         EXCEPT\n\
         SELECT user_id FROM recent_buyers{s};",
        7 + k
    );
    [
        ("pricing_hot", pricing),
        ("cart_abandoners", cart),
        ("recent_buyers", recent),
        ("lapsed_high_value", lapsed),
        ("winback_now", winback),
        ("rfm_champions", rfm),
        ("welcome_offer", welcome),
    ]
    .into_iter()
    .map(|(name, sql)| (format!("{name}{s}"), sql))
    .collect()
}

/// The seven segments as written (variant 0).
pub fn seven() -> Vec<(String, String)> {
    variant(0)
}

/// The many-segment workload: every variant's seven, variant by variant (105).
pub fn many() -> Vec<(String, String)> {
    (0..VARIANTS).flat_map(variant).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQL without comments, with runs of whitespace as one space.
    fn normalized(sql: &str) -> String {
        sql.lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn variant_zero_is_the_seven_as_written_and_the_many_are_105_distinct() {
        let file = include_str!("../../../sql-examples/workload/segments.sql");
        let written = normalized(file);
        let generated: Vec<String> = seven().iter().map(|(_, sql)| normalized(sql)).collect();
        assert_eq!(written, generated.join(" "));

        let many = many();
        assert_eq!(many.len(), 105);
        let mut names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 105);
        let winback_3 = &many.iter().find(|(n, _)| n == "winback_now_3").expect("variant 3").1;
        assert!(winback_3.contains("FROM lapsed_high_value_3") && winback_3.contains("'4 hours'"));
        let rfm_14 = &many.iter().find(|(n, _)| n == "rfm_champions_14").expect("variant 14").1;
        assert!(rfm_14.contains(">= 5 AND SUM(amount) >= 1000") && rfm_14.contains("'28 days'"));
    }
}
