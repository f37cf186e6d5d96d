//! Shared vocabulary of segstream: clock instants, positions in statement text and the
//! error type every layer returns.
//!
//! It sits at the bottom of the crate graph (`types <- sql <- engine`, `types <- state`)
//! so that an error raised while planning and one raised while storing look the same to
//! the analyst who reads them.

mod delta;
mod error;
mod position;
mod time;

pub use delta::DeltaBatch;
pub use error::{Error, Result};
pub use position::Position;
pub use time::Timestamp;
