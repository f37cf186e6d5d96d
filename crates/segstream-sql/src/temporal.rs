//! Temporal conditions: comparisons between a row expression and `NOW() ± interval`.
//!
//! Each such comparison is rewritten to the form `row OP NOW() + c`, and from that into
//! the instant at which the row enters (`From`) or leaves (`Until`) the result. For a
//! row `r`, with `x = r - c` (all in nanoseconds of clock time):
//!
//! ```text
//!   r >  NOW() + c   <=>  NOW() <  x   visible until x
//!   r >= NOW() + c   <=>  NOW() <= x   visible until x + 1ns
//!   r <  NOW() + c   <=>  NOW() >  x   visible from  x + 1ns
//!   r <= NOW() + c   <=>  NOW() >= x   visible from  x
//!   r =  NOW() + c   <=>  NOW() =  x   visible from  x until x + 1ns
//! ```
//!
//! The engine stores one durable timer per bound, so a member leaves at the exact
//! instant the SELECT, run as batch SQL with `NOW()` fixed, stops returning it.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator, ScalarUDF};

use crate::plan::{calls, sql};

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// Whether an expression calls `NOW()` (or `CURRENT_TIMESTAMP`, which DataFusion plans
/// as `now()`).
pub fn contains_now(expr: &Expr) -> bool {
    calls(expr, &is_now)
}

pub fn is_now(f: &ScalarUDF) -> bool {
    f.name() == "now"
}

/// Functions that read the clock in ways a segment cannot schedule exactly.
pub fn is_other_clock_function(f: &ScalarUDF) -> bool {
    matches!(f.name(), "current_date" | "current_time" | "today")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBoundKind {
    /// The row becomes visible at the instant.
    From,
    /// The row stops being visible at the instant.
    Until,
}

/// One end of a row's validity interval: the instant `row_expr + shift_nanos`.
#[derive(Debug, Clone)]
pub struct TimeBound {
    pub kind: TimeBoundKind,
    /// A timestamp-valued expression over the input row.
    pub row_expr: Expr,
    pub shift_nanos: i64,
    /// The comparison as written, for EXPLAIN.
    pub condition: String,
}

impl TimeBound {
    /// `ts + 48 hours`: the instant as SQL-like text.
    pub fn instant_sql(&self) -> String {
        let row = sql(&self.row_expr);
        match self.shift_nanos {
            0 => row,
            n if n > 0 => format!("{row} + {}", format_duration(n)),
            n => format!("{row} - {}", format_duration(n.unsigned_abs() as i64)),
        }
    }
}

/// Why a condition with `NOW()` cannot become a timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemporalError {
    /// `NOW()` appears, but not as one side of a comparison with a row value.
    NotAComparison,
    /// `NOW()` on both sides, or no row value on the other side.
    NoRowValue,
    /// `<>` / `!=` with `NOW()`: true at every instant but one.
    NotEqual,
    /// A comparison with `NOW()` inside OR.
    InsideOr,
    /// An interval with months or years: no fixed length.
    CalendarInterval,
    /// The row side is not a timestamp.
    NotATimestamp(DataType),
    /// The offset does not fit in the range of timestamps.
    Overflow,
}

impl TemporalError {
    pub fn message(&self) -> String {
        match self {
            Self::NotAComparison => "NOW() is only allowed in a comparison with a row value".into(),
            Self::NoRowValue => "a comparison with NOW() needs a row value on the other side".into(),
            Self::NotEqual => "NOW() cannot be compared with <> or !=".into(),
            Self::InsideOr => {
                "a comparison with NOW() inside OR cannot be scheduled as one entry and exit".into()
            }
            Self::CalendarInterval => "an interval of months or years has no fixed length".into(),
            Self::NotATimestamp(t) => format!("NOW() is compared with a value of type {t}, not a timestamp"),
            Self::Overflow => "the interval is too large for the range of timestamps".into(),
        }
    }

    pub fn help(&self) -> &'static str {
        match self {
            Self::NotAComparison | Self::NoRowValue => {
                "compare a row's time with NOW(), e.g. `ts > NOW() - INTERVAL '3 hours'`"
            }
            Self::NotEqual => "use a range, e.g. `ts <= NOW() - INTERVAL '5 minutes'`",
            Self::InsideOr => "make one segment per alternative and combine them with UNION",
            Self::CalendarInterval => {
                "write the interval in days, e.g. INTERVAL '90 days' instead of '3 months'"
            }
            Self::NotATimestamp(_) => "compare a TIMESTAMP column, or CAST the value to TIMESTAMP",
            Self::Overflow => "use an interval shorter than a few centuries",
        }
    }
}

/// Turns one conjunct that mentions `NOW()` into the bounds it imposes.
pub fn extract_bounds(conjunct: &Expr, schema: &DFSchema) -> Result<Vec<TimeBound>, TemporalError> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
        return Err(TemporalError::NotAComparison);
    };
    if *op == Operator::Or {
        return Err(TemporalError::InsideOr);
    }
    if !is_comparison(*op) {
        return Err(if *op == Operator::NotEq {
            TemporalError::NotEqual
        } else {
            TemporalError::NotAComparison
        });
    }
    let (row, op, c) = normalize(left, *op, right)?;
    match row.get_type(schema) {
        Ok(DataType::Timestamp(_, _)) => {}
        Ok(other) => return Err(TemporalError::NotATimestamp(other)),
        Err(_) => return Err(TemporalError::NoRowValue),
    }
    let x = c.checked_neg().ok_or(TemporalError::Overflow)?;
    let plus_one = x.checked_add(1).ok_or(TemporalError::Overflow)?;
    let condition = sql(conjunct);
    let bound = |kind, shift_nanos| TimeBound {
        kind,
        row_expr: row.clone(),
        shift_nanos,
        condition: condition.clone(),
    };
    Ok(match op {
        Operator::Gt => vec![bound(TimeBoundKind::Until, x)],
        Operator::GtEq => vec![bound(TimeBoundKind::Until, plus_one)],
        Operator::Lt => vec![bound(TimeBoundKind::From, plus_one)],
        Operator::LtEq => vec![bound(TimeBoundKind::From, x)],
        _ => vec![bound(TimeBoundKind::From, x), bound(TimeBoundKind::Until, plus_one)],
    })
}

fn is_comparison(op: Operator) -> bool {
    matches!(op, Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::Eq)
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// Rewrites `left op right` into `(row, op', c)` meaning `row op' NOW() + c`.
fn normalize(left: &Expr, op: Operator, right: &Expr) -> Result<(Expr, Operator, i64), TemporalError> {
    // row op NOW() + c
    if let Some(c) = now_offset(right)? {
        return row_side(left).map(|r| (r, op, c));
    }
    // NOW() + c op row
    if let Some(c) = now_offset(left)? {
        return row_side(right).map(|r| (r, flip(op), c));
    }
    // (NOW() + c0 - row) op k   <=>  row flip(op) NOW() + c0 - k
    if let (Some((c0, row)), Some(k)) = (now_minus_row(left)?, interval_nanos(right)?) {
        return Ok((row, flip(op), c0.checked_sub(k).ok_or(TemporalError::Overflow)?));
    }
    // k op (NOW() + c0 - row)   <=>  row op NOW() + c0 - k
    if let (Some(k), Some((c0, row))) = (interval_nanos(left)?, now_minus_row(right)?) {
        return Ok((row, op, c0.checked_sub(k).ok_or(TemporalError::Overflow)?));
    }
    // (row - NOW() - c0) op k   <=>  row op NOW() + c0 + k
    if let (Some((c0, row)), Some(k)) = (row_minus_now(left)?, interval_nanos(right)?) {
        return Ok((row, op, c0.checked_add(k).ok_or(TemporalError::Overflow)?));
    }
    // k op (row - NOW() - c0)   <=>  row flip(op) NOW() + c0 + k
    if let (Some(k), Some((c0, row))) = (interval_nanos(left)?, row_minus_now(right)?) {
        return Ok((row, flip(op), c0.checked_add(k).ok_or(TemporalError::Overflow)?));
    }
    if contains_now(left) && contains_now(right) {
        return Err(TemporalError::NoRowValue);
    }
    Err(TemporalError::NotAComparison)
}

fn row_side(expr: &Expr) -> Result<Expr, TemporalError> {
    if contains_now(expr) || !has_columns(expr) {
        return Err(TemporalError::NoRowValue);
    }
    Ok(expr.clone())
}

fn has_columns(expr: &Expr) -> bool {
    !expr.column_refs().is_empty()
}

/// `NOW()`, `NOW() ± interval`, `interval + NOW()`, under casts: the offset `c`.
fn now_offset(expr: &Expr) -> Result<Option<i64>, TemporalError> {
    match expr {
        Expr::ScalarFunction(f) if is_now(&f.func) => Ok(Some(0)),
        Expr::Cast(c) => now_offset(&c.expr),
        Expr::TryCast(c) => now_offset(&c.expr),
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Plus | Operator::Minus), right }) => {
            if let (Some(c), Some(k)) = (now_offset(left)?, interval_nanos(right)?) {
                let sum = if *op == Operator::Plus { c.checked_add(k) } else { c.checked_sub(k) };
                return sum.map(Some).ok_or(TemporalError::Overflow);
            }
            if *op == Operator::Plus {
                if let (Some(k), Some(c)) = (interval_nanos(left)?, now_offset(right)?) {
                    return c.checked_add(k).map(Some).ok_or(TemporalError::Overflow);
                }
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// `NOW() + c0 - row`: `(c0, row)`.
fn now_minus_row(expr: &Expr) -> Result<Option<(i64, Expr)>, TemporalError> {
    match expr {
        Expr::Cast(c) => now_minus_row(&c.expr),
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Minus, right }) => match now_offset(left)? {
            Some(c0) if !contains_now(right) && has_columns(right) => Ok(Some((c0, (**right).clone()))),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// `row - (NOW() + c0)`: `(c0, row)`.
fn row_minus_now(expr: &Expr) -> Result<Option<(i64, Expr)>, TemporalError> {
    match expr {
        Expr::Cast(c) => row_minus_now(&c.expr),
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Minus, right }) => match now_offset(right)? {
            Some(c0) if !contains_now(left) && has_columns(left) => Ok(Some((c0, (**left).clone()))),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// A constant interval or duration, in nanoseconds.
fn interval_nanos(expr: &Expr) -> Result<Option<i64>, TemporalError> {
    let overflow = TemporalError::Overflow;
    match expr {
        Expr::Cast(c) => interval_nanos(&c.expr),
        Expr::TryCast(c) => interval_nanos(&c.expr),
        Expr::Negative(e) => match interval_nanos(e)? {
            Some(n) => n.checked_neg().map(Some).ok_or(overflow),
            None => Ok(None),
        },
        Expr::Literal(value, _) => match value {
            ScalarValue::IntervalMonthDayNano(Some(v)) => {
                if v.months != 0 {
                    return Err(TemporalError::CalendarInterval);
                }
                (v.days as i64)
                    .checked_mul(NANOS_PER_DAY)
                    .and_then(|d| d.checked_add(v.nanoseconds))
                    .map(Some)
                    .ok_or(overflow)
            }
            ScalarValue::IntervalDayTime(Some(v)) => (v.days as i64)
                .checked_mul(NANOS_PER_DAY)
                .and_then(|d| d.checked_add((v.milliseconds as i64).checked_mul(1_000_000)?))
                .map(Some)
                .ok_or(overflow),
            ScalarValue::IntervalYearMonth(Some(0)) => Ok(Some(0)),
            ScalarValue::IntervalYearMonth(Some(_)) => Err(TemporalError::CalendarInterval),
            ScalarValue::DurationSecond(Some(s)) => s.checked_mul(1_000_000_000).map(Some).ok_or(overflow),
            ScalarValue::DurationMillisecond(Some(s)) => s.checked_mul(1_000_000).map(Some).ok_or(overflow),
            ScalarValue::DurationMicrosecond(Some(s)) => s.checked_mul(1_000).map(Some).ok_or(overflow),
            ScalarValue::DurationNanosecond(Some(s)) => Ok(Some(*s)),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// A fixed length of time written as an interval's text (`'90 days'`, `'12 hours'`,
/// `'1 day 6 hours'`), in nanoseconds: positive, with no months or years (their length
/// depends on the date). The error says what is wrong, for the caller to place.
pub fn fixed_interval_nanos(text: &str) -> Result<i64, String> {
    use datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;
    let v = parse_interval_month_day_nano(text).map_err(|e| format!("not an interval: {e}"))?;
    // The same rule as an INTERVAL in a time condition: no months or years.
    let literal = Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), None);
    let nanos = interval_nanos(&literal).map_err(|e| e.message())?.unwrap_or_default();
    if nanos <= 0 {
        return Err("the interval must be longer than zero".into());
    }
    Ok(nanos)
}

/// `2 days 3 hours`, `5 minutes`, `1 nanosecond`.
pub fn format_duration(nanos: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (NANOS_PER_DAY, "day"),
        (3_600_000_000_000, "hour"),
        (60_000_000_000, "minute"),
        (1_000_000_000, "second"),
        (1_000_000, "millisecond"),
        (1, "nanosecond"),
    ];
    if nanos == 0 {
        return "0 seconds".into();
    }
    let mut rest = nanos;
    let mut parts = Vec::new();
    for (size, unit) in UNITS {
        let n = rest / size;
        if n != 0 {
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
            rest -= n * size;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_intervals() {
        assert_eq!(format_duration(3 * 3_600_000_000_000), "3 hours");
        assert_eq!(format_duration(2 * NANOS_PER_DAY + 1), "2 days 1 nanosecond");
        assert_eq!(format_duration(300_000_000_000), "5 minutes");
    }

    #[test]
    fn retention_lengths_are_fixed_and_positive() {
        assert_eq!(fixed_interval_nanos("90 days"), Ok(90 * NANOS_PER_DAY));
        assert_eq!(fixed_interval_nanos("1 day 6 hours"), Ok(30 * 3_600_000_000_000));
        assert_eq!(fixed_interval_nanos("2 weeks"), Ok(14 * NANOS_PER_DAY));
        assert!(fixed_interval_nanos("3 months").unwrap_err().contains("no fixed length"));
        assert!(fixed_interval_nanos("0 days").unwrap_err().contains("longer than zero"));
        assert!(fixed_interval_nanos("soon").unwrap_err().starts_with("not an interval"));
    }
}
