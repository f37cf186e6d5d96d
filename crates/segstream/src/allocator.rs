//! The process's allocator: mimalloc, keeping freed memory a while before returning it
//! to the OS. Shared by the binary and the benches (`#[path]`), so that what is measured
//! is what runs.

use std::os::raw::{c_int, c_long};

/// mimalloc instead of glibc's malloc: each step allocates many small keys and rows.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long freed memory stays with the allocator before it goes back to the OS, in
/// milliseconds. With mimalloc's default (1 s), the buffers of one checkpoint (every 5 s,
/// a hundred-odd MiB at 1M users) went back between one checkpoint and the next, and the
/// kernel zeroed every page again when they returned: 6% of the three-segment bench's
/// samples in `clear_page`, and about 9% more events per CPU-second without it. Longer
/// than the checkpoint interval; memory freed for good still returns within seconds.
const PURGE_DELAY_MS: c_long = 10_000;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (`mimalloc.h`), the version
/// `Cargo.lock` pins (libmimalloc-sys 0.1.49); its default there is 1000.
const MI_OPTION_PURGE_DELAY: c_int = 15;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
}

/// Sets the allocator's options; called first thing in `main` (mimalloc reads them as
/// it goes, so earlier allocations are no concern).
pub fn configure() {
    // SAFETY: sets an option by its index in mimalloc's option table; an index mimalloc
    // does not have is ignored.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index is mimalloc's purge delay: its default is that option's (1000
    /// ms in mimalloc 3), and setting it takes.
    #[test]
    fn the_purge_delay_is_set() {
        // SAFETY: reads an option by index.
        let default = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(default, 1000, "not mimalloc 3's purge delay: check mimalloc.h");
        configure();
        assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, PURGE_DELAY_MS);
    }
}
