//! Transfers and disk I/O a worker did, collected for its next heartbeat:
//! the task stream draws them and the task-group table sums them per prefix.
//!
//! At most [`SPANS_PER_HEARTBEAT`] single spans go out per heartbeat; the
//! rest are summed per kind and prefix, so the totals stay exact while a
//! heartbeat stays small however busy the worker is.

use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::protocol::pb;
use pb::span::Kind;

/// Single spans sent per heartbeat (more are summed).
pub const SPANS_PER_HEARTBEAT: usize = 1_000;

struct Single {
    kind: Kind,
    prefix: String,
    start: Instant,
    duration_us: u64,
    nbytes: u64,
}

/// What happened since the last heartbeat.
#[derive(Default)]
pub struct SpanLog {
    singles: Vec<Single>,
    /// (kind, prefix) -> (count, µs, bytes) of the spans beyond the bound.
    summed: FxHashMap<(i32, String), (u64, u64, u64)>,
}

impl SpanLog {
    /// Records a span of `kind` on a value of `prefix`, from `start` to `end`.
    pub fn record(&mut self, kind: Kind, prefix: &str, start: Instant, end: Instant, nbytes: u64) {
        let duration_us = end.saturating_duration_since(start).as_micros() as u64;
        if self.singles.len() < SPANS_PER_HEARTBEAT {
            self.singles.push(Single {
                kind,
                prefix: prefix.to_string(),
                start,
                duration_us,
                nbytes,
            });
            return;
        }
        let s = self.summed.entry((kind as i32, prefix.to_string())).or_default();
        s.0 += 1;
        s.1 += duration_us;
        s.2 += nbytes;
    }

    /// Takes what was recorded, as heartbeat spans with start times relative to `now`.
    pub fn drain(&mut self, now: Instant) -> Vec<pb::Span> {
        let mut out: Vec<pb::Span> = self
            .singles
            .drain(..)
            .map(|s| pb::Span {
                kind: s.kind as i32,
                prefix: s.prefix,
                start_ago_us: now.saturating_duration_since(s.start).as_micros() as u64,
                duration_us: s.duration_us,
                nbytes: s.nbytes,
                count: 0,
            })
            .collect();
        out.extend(self.summed.drain().map(|((kind, prefix), (count, us, nbytes))| pb::Span {
            kind,
            prefix,
            start_ago_us: 0,
            duration_us: us,
            nbytes,
            count,
        }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spans_beyond_the_bound_are_summed_and_nothing_is_lost() {
        let mut log = SpanLog::default();
        let t0 = Instant::now();
        let n = SPANS_PER_HEARTBEAT + 10;
        for i in 0..n {
            let kind = if i % 2 == 0 { Kind::Transfer } else { Kind::DiskWrite };
            log.record(kind, "x", t0, t0 + Duration::from_micros(5), 100);
        }
        let spans = log.drain(t0 + Duration::from_millis(1));
        let singles = spans.iter().filter(|s| s.count == 0).count();
        assert_eq!(singles, SPANS_PER_HEARTBEAT);
        assert_eq!(spans.iter().map(|s| s.count.max(1)).sum::<u64>(), n as u64);
        assert_eq!(spans.iter().map(|s| s.nbytes).sum::<u64>(), 100 * n as u64);
        assert_eq!(spans.iter().map(|s| s.duration_us).sum::<u64>(), 5 * n as u64);
        assert_eq!(spans[0].start_ago_us, 1000);
        assert!(log.drain(t0).is_empty(), "drained");
    }
}
