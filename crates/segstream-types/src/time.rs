use std::fmt;

use datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime;

/// An instant of the segstream clock, in nanoseconds since 1970-01-01 00:00:00 UTC.
///
/// Nanoseconds because that is what DataFusion gives `NOW()` and `TIMESTAMP '...'`
/// literals: the engine and the batch SQL that judges it then compare equal values,
/// never values rounded differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Where a manual clock starts.
    pub const EPOCH: Timestamp = Timestamp(0);

    pub fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    /// `None` when the sum leaves the range a timestamp can hold (about 1677..2262).
    pub fn checked_add_nanos(self, nanos: i64) -> Option<Self> {
        self.0.checked_add(nanos).map(Self)
    }
}

impl fmt::Display for Timestamp {
    /// `1970-01-01 00:00:00` style, with a fraction only when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match timestamp_ns_to_datetime(self.0) {
            Some(dt) if self.0 % 1_000_000_000 == 0 => write!(f, "{}", dt.format("%Y-%m-%d %H:%M:%S")),
            Some(dt) => write!(f, "{}", dt.format("%Y-%m-%d %H:%M:%S%.f")),
            None => write!(f, "{}ns", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_sql_timestamps() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01 00:00:00");
        assert_eq!(Timestamp(1_500_000_000).to_string(), "1970-01-01 00:00:01.500");
        assert_eq!(Timestamp(i64::MAX).checked_add_nanos(1), None);
    }
}
