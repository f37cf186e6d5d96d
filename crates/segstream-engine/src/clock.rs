//! The clock that `NOW()` reads.

use std::fmt;
use std::str::FromStr;

use segstream_types::Timestamp;

/// `wall` follows UTC (the server default); `manual` moves only by `ADVANCE TIME`, starts
/// at 1970-01-01 00:00:00 UTC and never goes backwards (fixtures and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockMode {
    #[default]
    Wall,
    Manual,
}

impl FromStr for ClockMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "wall" => Ok(Self::Wall),
            "manual" => Ok(Self::Manual),
            other => Err(format!("unknown clock `{other}`: use `wall` or `manual`")),
        }
    }
}

impl fmt::Display for ClockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wall => "wall",
            Self::Manual => "manual",
        })
    }
}

pub(crate) struct Clock {
    pub(crate) mode: ClockMode,
    /// The engine's instant: moved by ADVANCE TIME (manual), or to the wall clock at
    /// the start of each statement (wall), so one statement sees one instant.
    pub(crate) manual: Timestamp,
}

impl Clock {
    /// The instant of the current statement.
    pub(crate) fn now(&self) -> Timestamp {
        self.manual
    }

    /// UTC now, from the system clock.
    pub(crate) fn wall() -> Timestamp {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(nanos)
    }
}
