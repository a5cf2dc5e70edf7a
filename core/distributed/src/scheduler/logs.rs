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
/// ending in `…` when cut.
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max - '…'.len_utf8();
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// One line a member printed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogLine {
    /// The member's role (`worker`, `chief`, `ps`, …).
    pub role: String,
    /// Its rank.
    pub rank: u32,
    /// Whether it came from standard error.
    pub stderr: bool,
    /// The line, without its end.
    pub text: String,
    /// When the scheduler received it (ms, scheduler time).
    pub at_ms: u64,
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
    /// The most recent lines, oldest first.
    pub lines: VecDeque<LogLine>,
}

/// The jobs' lines.
#[derive(Debug, Default)]
pub struct JobLogs {
    jobs: VecDeque<JobLog>,
}

impl JobLogs {
    /// Adds `lines` of `job`, received at `now_ms`.
    pub fn add(&mut self, job: &str, lines: impl IntoIterator<Item = LogLine>, now_ms: u64) {
        let i = match self.jobs.iter().position(|j| j.job == job) {
            Some(i) => i,
            None => {
                if self.jobs.len() == JOBS {
                    self.jobs.pop_front();
                }
                self.jobs.push_back(JobLog {
                    job: cut(job.to_string(), 256),
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
            line.at_ms = now_ms;
            log.total += 1;
            if log.lines.len() == LINES_PER_JOB {
                log.lines.pop_front();
            }
            log.lines.push_back(line);
        }
    }

    /// Every kept job, the most recent first.
    pub fn jobs(&self) -> Vec<JobLog> {
        self.jobs.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(rank: u32, text: &str) -> LogLine {
        LogLine { role: "worker".into(), rank, stderr: false, text: text.into(), at_ms: 0 }
    }

    #[test]
    fn keeps_the_latest_lines_of_the_latest_jobs() {
        let mut logs = JobLogs::default();
        logs.add("a", (0..LINES_PER_JOB + 5).map(|i| line(0, &i.to_string())), 7);
        let a = &logs.jobs()[0];
        assert_eq!(a.total, LINES_PER_JOB as u64 + 5);
        assert_eq!(a.lines.len(), LINES_PER_JOB);
        assert_eq!(a.lines[0].text, "5");
        assert_eq!(a.lines[0].at_ms, 7);
        for j in 0..JOBS {
            logs.add(&format!("j{j}"), [line(1, "x")], 9);
        }
        let jobs = logs.jobs();
        assert_eq!(jobs.len(), JOBS);
        assert_eq!(jobs[0].job, format!("j{}", JOBS - 1));
        assert!(jobs.iter().all(|j| j.job != "a"), "the oldest job went first");
        // A later batch of a kept job joins it.
        logs.add("j3", [line(2, "y")], 11);
        let j3 = logs.jobs().into_iter().find(|j| j.job == "j3").unwrap();
        assert_eq!(j3.lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(j3.first_ms, 9);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut logs = JobLogs::default();
        // Two-byte characters, and a cut that would split one.
        logs.add("a", [line(0, &format!("x{}", "é".repeat(LINE_BYTES)))], 0);
        let text = &logs.jobs()[0].lines[0].text;
        assert!(text.len() <= LINE_BYTES, "{}", text.len());
        assert!(text.starts_with("xé") && text.ends_with("é…"));
        // Cutting again (client, then scheduler) changes nothing.
        assert_eq!(&cut(text.clone(), LINE_BYTES), text);
    }
}
