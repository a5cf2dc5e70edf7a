//! General-purpose ops compiled into the `rask` binary, so that every `rask
//! worker` can run them: building blocks for demos and benchmarks (slow
//! tasks, sums, checksums, string functions for bags), and, with the `test-ops` feature only, the
//! failure ops that the cluster tests use.

use std::time::Duration;

rask_core::op! {
    /// Sleeps `ms` milliseconds, then returns `x` (a stand-in for real work).
    pub fn sleep_then(ms: u64, x: i64) -> i64 {
        std::thread::sleep(Duration::from_millis(ms));
        x
    }

    /// Sums a list.
    pub fn sum_i64(xs: Vec<i64>) -> i64 { xs.iter().sum() }

    /// A checksum of bytes (sum of the bytes times their position, wrapping).
    pub fn checksum(data: Vec<u8>) -> u64 {
        data.iter().enumerate().fold(0u64, |acc, (i, &b)| acc.wrapping_add((i as u64 + 1).wrapping_mul(b as u64)))
    }

    /// The length of a string in bytes (a bag element op: `bag.map_op::<u64>(&str_len::OP)`).
    pub fn str_len(s: String) -> u64 { s.len() as u64 }

    /// A string in lower case.
    pub fn str_lower(s: String) -> String { s.to_lowercase() }

    /// The whitespace-separated words of a string (`bag.flat_map_op::<String>(&split_words::OP)`).
    pub fn split_words(s: String) -> Vec<String> { s.split_whitespace().map(String::from).collect() }

    /// Whether a string holds a decimal digit (`bag.filter_op(&has_digit::OP)`).
    pub fn has_digit(s: String) -> bool { s.bytes().any(|b| b.is_ascii_digit()) }

    /// The first character of a string, as a string (a key for `foldby_op` / `groupby_op`).
    pub fn str_initial(s: String) -> String { s.chars().next().map(String::from).unwrap_or_default() }

    /// A count plus one (the `binop` of a count per key: `foldby_op(&str_initial::OP, 0u64, &count_item::OP, &add_u64::OP)`).
    pub fn count_item(acc: u64, _s: String) -> u64 { acc + 1 }

    /// A total plus a string's length in bytes (a `fold_op` binop).
    pub fn add_len(acc: u64, s: String) -> u64 { acc + s.len() as u64 }

    /// The sum of two counts (a `combine`).
    pub fn add_u64(a: u64, b: u64) -> u64 { a + b }
}

/// Ops for testing cluster failure handling: a flaky task, a large value, a
/// task that kills its worker. Only builds with the `test-ops` feature (the
/// test command's `--all-features`) have them; release builds do not, so no
/// client can crash a production worker or make it allocate at will.
#[cfg(feature = "test-ops")]
mod test_ops {
    rask_core::op! {
    /// Fails the first `times` calls, counted in the file at `path` (shared by
    /// every process on the machine), then returns `x`: a flaky task for retries.
    pub fn fail_times(path: String, times: u64, x: i64) -> Result<i64, String> {
        let n: u64 = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        std::fs::write(&path, (n + 1).to_string()).map_err(|e| format!("cannot write {path}: {e}"))?;
        if n < times {
            Err(format!("flaky failure {} of {times}", n + 1))
        } else {
            Ok(x)
        }
    }

    /// `n` pseudo-random bytes from `seed` (a large value to move around).
    pub fn make_bytes(n: u64, seed: u64) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n).map(|_| { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 24) as u8 }).collect()
    }

    /// The lines, after sleeping `50` ms: a slow partition op, so that a
    /// test can kill a worker while a bag computation runs.
    pub fn slow_lines(lines: Vec<String>) -> Vec<String> {
        std::thread::sleep(std::time::Duration::from_millis(50));
        lines
    }

    /// Ends the whole worker process at once: a task that kills its worker.
    pub fn abort_process(x: i64) -> i64 {
        if x >= 0 {
            std::process::abort();
        }
        x
    }
    }
}

#[cfg(feature = "test-ops")]
pub use test_ops::{abort_process, fail_times, make_bytes, slow_lines};
