//! The lines of launched jobs (`rask::dl::launch`), kept for the dashboard's
//! logs page: the last [`LINES_PER_JOB`] lines of each of the last
//! [`JOBS`] jobs, each line cut at [`LINE_BYTES`] bytes (at most 64 MiB in
//! all, whatever clients send). The client
//! that launched a job forwards its members' lines here; a scheduler that
//! restarts starts empty.

use std::collections::VecDeque;

use serde::Serialize;

/// Jobs kept (the oldest goes first).
pub const JOBS: usize = 16;
/// Lines kept per job (its oldest go first).
pub const LINES_PER_JOB: usize = 2_000;
/// Longest line kept, in bytes (cut at a character boundary).
pub const LINE_BYTES: usize = 2_048;

/// `s` cut to at most `max` bytes (at least 3), at a character boundary,
/// ending in `…` when cut. The result owns no more memory than it needs (a
/// decoded string's buffer can be its whole message's size).
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max - '…'.len_utf8();
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut kept = String::with_capacity(end + '…'.len_utf8());
        kept.push_str(&s[..end]);
        kept.push('…');
        return kept;
    }
    s.shrink_to_fit();
    s
}

/// One line a member printed, as its client sends it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberLine {
    /// The member's role (`worker`, `chief`, `ps`, …).
    pub role: String,
    /// Its rank.
    pub rank: u32,
    /// Whether it came from standard error.
    pub stderr: bool,
    /// The line, without its end.
    pub text: String,
}

/// A line as the scheduler keeps it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogLine {
    /// The line.
    #[serde(flatten)]
    pub line: MemberLine,
    /// When the scheduler received it (ms, scheduler time).
    pub at_ms: u64,
    /// Its number among every line the scheduler received (from 1): a
    /// viewer asks for the lines after the last it has.
    pub seq: u64,
}

/// One job's recent lines.
#[derive(Clone, Debug, Serialize)]
pub struct JobLog {
    /// The job's name (its gang's).
    pub job: String,
    /// When its first line arrived (ms, scheduler time).
    pub first_ms: u64,
    /// Lines received in all, kept or not.
    pub total: u64,
    /// The kept lines (all, or those after a number), oldest first.
    pub lines: VecDeque<LogLine>,
}

/// The jobs' lines.
#[derive(Debug, Default)]
pub struct JobLogs {
    jobs: VecDeque<JobLog>,
    /// The last line's number.
    seq: u64,
}

/// Longest job name kept.
const JOB_NAME_BYTES: usize = 256;

impl JobLogs {
    /// Adds `lines` of `job`, received at `now_ms`.
    pub fn add(&mut self, job: &str, lines: impl IntoIterator<Item = MemberLine>, now_ms: u64) {
        // Names are kept cut, so they are looked up cut.
        let job = cut(job.to_string(), JOB_NAME_BYTES);
        let i = match self.jobs.iter().position(|j| j.job == job) {
            Some(i) => i,
            None => {
                if self.jobs.len() == JOBS {
                    self.jobs.pop_front();
                }
                self.jobs.push_back(JobLog {
                    job,
                    first_ms: now_ms,
                    total: 0,
                    lines: VecDeque::new(),
                });
                self.jobs.len() - 1
            }
        };
        let log = &mut self.jobs[i];
        for mut line in lines {
            line.text = cut(line.text, LINE_BYTES);
            line.role = cut(line.role, 64);
            self.seq += 1;
            log.total += 1;
            if log.lines.len() == LINES_PER_JOB {
                log.lines.pop_front();
            }
            log.lines.push_back(LogLine { line, at_ms: now_ms, seq: self.seq });
        }
    }

    /// Every kept job, the most recent first, with its kept lines numbered
    /// above `since` (0: all of them).
    pub fn jobs(&self, since: u64) -> Vec<JobLog> {
        self.jobs
            .iter()
            .rev()
            .map(|j| JobLog {
                job: j.job.clone(),
                first_ms: j.first_ms,
                total: j.total,
                lines: j.lines.iter().filter(|l| l.seq > since).cloned().collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(rank: u32, text: &str) -> MemberLine {
        MemberLine { role: "worker".into(), rank, stderr: false, text: text.into() }
    }

    #[test]
    fn keeps_the_latest_lines_of_the_latest_jobs() {
        let mut logs = JobLogs::default();
        logs.add("a", (0..LINES_PER_JOB + 5).map(|i| line(0, &i.to_string())), 7);
        let a = &logs.jobs(0)[0];
        assert_eq!(a.total, LINES_PER_JOB as u64 + 5);
        assert_eq!(a.lines.len(), LINES_PER_JOB);
        assert_eq!(a.lines[0].line.text, "5");
        assert_eq!(a.lines[0].at_ms, 7);
        for j in 0..JOBS {
            logs.add(&format!("j{j}"), [line(1, "x")], 9);
        }
        let jobs = logs.jobs(0);
        assert_eq!(jobs.len(), JOBS);
        assert_eq!(jobs[0].job, format!("j{}", JOBS - 1));
        assert!(jobs.iter().all(|j| j.job != "a"), "the oldest job went first");
        let last = jobs.iter().flat_map(|j| &j.lines).map(|l| l.seq).max().unwrap();
        // A later batch of a kept job joins it.
        logs.add("j3", [line(2, "y")], 11);
        let j3 = logs.jobs(0).into_iter().find(|j| j.job == "j3").unwrap();
        assert_eq!(j3.lines.iter().map(|l| l.line.text.as_str()).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(j3.first_ms, 9);
        // Only the lines after a number: every job, and the new line.
        let after = logs.jobs(last);
        assert_eq!(after.len(), JOBS);
        let new: Vec<&str> =
            after.iter().flat_map(|j| &j.lines).map(|l| l.line.text.as_str()).collect();
        assert_eq!(new, ["y"]);
    }

    #[test]
    fn a_long_job_name_finds_its_job_again() {
        let mut logs = JobLogs::default();
        let name = "n".repeat(1_000);
        logs.add(&name, [line(0, "a")], 0);
        logs.add(&name, [line(0, "b")], 1);
        let jobs = logs.jobs(0);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].total, 2);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut logs = JobLogs::default();
        // Two-byte characters, and a cut that would split one.
        logs.add("a", [line(0, &format!("x{}", "é".repeat(LINE_BYTES)))], 0);
        let text = &logs.jobs(0)[0].lines[0].line.text;
        assert!(text.len() <= LINE_BYTES, "{}", text.len());
        assert!(text.starts_with("xé") && text.ends_with("é…"));
        // Cutting again (client, then scheduler) changes nothing.
        assert_eq!(&cut(text.clone(), LINE_BYTES), text);
        // A cut line does not keep its sender's buffer.
        let mut big = String::with_capacity(1 << 20);
        big.push_str(&"x".repeat(LINE_BYTES + 1));
        assert!(cut(big, LINE_BYTES).capacity() <= LINE_BYTES);
        let mut small = String::with_capacity(1 << 20);
        small.push_str("short");
        assert!(cut(small, LINE_BYTES).capacity() < 64);
    }
}
