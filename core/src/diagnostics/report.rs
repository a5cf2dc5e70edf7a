//! Performance reports, as Dask's `performance_report`: one self-contained
//! HTML file (inline SVG and CSS; no scripts, no network) with the task
//! stream, where the time went per task prefix, and memory over time.
//! [`performance_report`] records a local computation; the distributed
//! runtime fills a [`ReportData`] from the scheduler (`rask_distributed::report`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

use super::{Callback, TaskInfo};

/// One task run in the report's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRun {
    /// Its lane: a worker (thread) label.
    pub lane: String,
    /// Its task prefix (or op).
    pub prefix: String,
    /// Start and stop, seconds since the report began.
    pub start: f64,
    /// See `start`.
    pub stop: f64,
}

/// One task prefix's line in the report's table.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixTime {
    /// The prefix (or op).
    pub prefix: String,
    /// Seconds of compute.
    pub seconds: f64,
    /// Tasks run.
    pub tasks: u64,
    /// Result bytes, where known.
    pub nbytes: Option<u64>,
}

/// What a report shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportData {
    /// Where the computation ran (scheduler name or address).
    pub scheduler: String,
    /// Wall time of the computation, seconds.
    pub seconds: f64,
    /// The task runs.
    pub stream: Vec<StreamRun>,
    /// Time per prefix.
    pub prefixes: Vec<PrefixTime>,
    /// Memory samples: (seconds since the start, bytes).
    pub memory: Vec<(f64, u64)>,
    /// What the memory is (e.g. "cluster managed memory", "process resident memory").
    pub memory_label: String,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn color(prefix: &str) -> String {
    let h = prefix.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    format!("hsl({}, 62%, 52%)", h % 360)
}

impl ReportData {
    /// The report as an HTML document.
    pub fn to_html(&self) -> String {
        let mut lanes: Vec<&str> = self.stream.iter().map(|r| r.lane.as_str()).collect();
        lanes.sort_unstable();
        lanes.dedup();
        let lane_of: BTreeMap<&str, usize> =
            lanes.iter().enumerate().map(|(i, l)| (*l, i)).collect();
        let t_end = self
            .stream
            .iter()
            .map(|r| r.stop)
            .chain(self.memory.iter().map(|m| m.0))
            .fold(self.seconds, f64::max)
            .max(1e-9);
        let (width, left, row, top) = (1100.0, 120.0, 22.0, 10.0);
        let scale = (width - left - 20.0) / t_end;
        let height = top + row * lanes.len().max(1) as f64 + 30.0;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg id="task-stream" data-tasks="{}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">"#,
            self.stream.len()
        );
        for (i, l) in lanes.iter().enumerate() {
            let y = top + row * i as f64 + row * 0.7;
            let _ = write!(svg, r#"<text x="4" y="{y:.1}" font-size="12">{}</text>"#, esc(l));
        }
        for r in &self.stream {
            let y = top + row * lane_of[r.lane.as_str()] as f64 + 2.0;
            let x = left + r.start * scale;
            let w = ((r.stop - r.start) * scale).max(0.5);
            let _ = write!(
                svg,
                r#"<rect class="run" x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{:.1}" fill="{}"><title>{} {:.3} ms</title></rect>"#,
                row - 4.0,
                color(&r.prefix),
                esc(&r.prefix),
                (r.stop - r.start) * 1e3
            );
        }
        let axis_y = height - 12.0;
        for k in 0..=5 {
            let t = t_end * k as f64 / 5.0;
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{axis_y}" font-size="11" fill="#6b7280">{t:.2} s</text>"##,
                left + t * scale - 10.0
            );
        }
        svg.push_str("</svg>");

        let mut table = String::from(
            "<table id=\"prefixes\"><tr><th>task prefix</th><th>compute (s)</th><th>share</th><th>tasks</th><th>mean (ms)</th><th>result bytes</th></tr>",
        );
        let total: f64 = self.prefixes.iter().map(|p| p.seconds).sum::<f64>().max(1e-12);
        let mut prefixes = self.prefixes.clone();
        prefixes.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        for p in &prefixes {
            let _ = write!(
                table,
                "<tr><td><i style=\"background:{}\"></i>{}</td><td>{:.3}</td><td>{:.1}%</td><td>{}</td><td>{:.3}</td><td>{}</td></tr>",
                color(&p.prefix),
                esc(&p.prefix),
                p.seconds,
                100.0 * p.seconds / total,
                p.tasks,
                if p.tasks > 0 { 1e3 * p.seconds / p.tasks as f64 } else { 0.0 },
                p.nbytes.map_or("".into(), |b| b.to_string())
            );
        }
        table.push_str("</table>");

        let mut mem = String::new();
        let peak = self.memory.iter().map(|m| m.1).max().unwrap_or(0).max(1);
        let (mw, mh) = (width - left - 20.0, 120.0);
        let points: Vec<String> = self
            .memory
            .iter()
            .map(|(t, b)| {
                format!("{:.1},{:.1}", left + t * scale, 10.0 + mh - mh * (*b as f64 / peak as f64))
            })
            .collect();
        let _ = write!(
            mem,
            r##"<svg id="memory" width="{width}" height="{}"><rect x="{left}" y="10" width="{mw}" height="{mh}" fill="#f9fafb"/><polyline fill="none" stroke="#2563eb" stroke-width="2" points="{}"/><text x="4" y="24" font-size="12">{}</text><text x="4" y="{}" font-size="12">0</text></svg>"##,
            mh + 20.0,
            points.join(" "),
            human_bytes(peak),
            10.0 + mh
        );
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Rask performance report</title>
<style>body{{font:13px system-ui,sans-serif;margin:20px;color:#1d2330}} h1{{font-size:18px}} h2{{font-size:14px;margin-top:24px}}
table{{border-collapse:collapse}} td,th{{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:right}} td:first-child,th:first-child{{text-align:left}}
i{{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}} .meta{{color:#6b7280}}</style></head>
<body><h1>Rask performance report</h1>
<p class="meta">{} · {:.3} s · {} tasks · {} lanes</p>
<h2>Task stream</h2>{svg}
<h2>Where the time went</h2>{table}
<h2>Memory over time ({})</h2>{mem}
</body></html>
"#,
            esc(&self.scheduler),
            self.seconds,
            self.stream.len(),
            lanes.len(),
            esc(&self.memory_label),
        )
    }

    /// Writes [`ReportData::to_html`] to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_html())
    }
}

thread_local! {
    static SCOPED: std::cell::RefCell<Vec<Arc<dyn Callback>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The callbacks [`with_callback`] added on this thread (local schedulers
/// call them besides the computation's own).
pub fn scoped_callbacks() -> Vec<Arc<dyn Callback>> {
    SCOPED.with(|s| s.borrow().clone())
}

/// Runs `f` with `callback` observing every local computation started on
/// this thread, as Dask's `with ProgressBar():` does.
pub fn with_callback<R>(callback: Arc<dyn Callback>, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            SCOPED.with(|s| s.borrow_mut().pop());
        }
    }
    SCOPED.with(|s| s.borrow_mut().push(callback));
    let _pop = Pop;
    f()
}

/// Resident memory of this process in bytes (Linux `VmRSS`; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let kb = s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Samples `sample` every 100 ms on a thread until the returned guard stops it.
pub fn sampler(
    start: Instant,
    mut sample: impl FnMut() -> Option<u64> + Send + 'static,
) -> impl FnOnce() -> Vec<(f64, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut out = Vec::new();
        loop {
            if let Some(b) = sample() {
                out.push((start.elapsed().as_secs_f64(), b));
            }
            if flag.load(Ordering::Relaxed) {
                return out;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    move || {
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap_or_default()
    }
}

/// Every task run of every computation while it is installed (unlike the
/// [`super::Profiler`], which keeps one computation).
#[derive(Default)]
struct Recorder {
    runs: Mutex<Vec<(String, usize, Instant, Instant)>>,
}

impl Callback for Recorder {
    fn on_task_finish(&self, task: &TaskInfo<'_>, started: Instant, finished: Instant, _ok: bool) {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).push((
            task.op.to_string(),
            task.worker,
            started,
            finished,
        ));
    }
}

/// Records every local computation `f` runs on this thread (the sync and
/// threaded schedulers) and writes one report to `path`.
pub fn performance_report<R>(path: impl AsRef<Path>, f: impl FnOnce() -> R) -> std::io::Result<R> {
    let recorder = Arc::new(Recorder::default());
    let start = Instant::now();
    let stop_sampling = sampler(start, || Some(resident_bytes()));
    let r = with_callback(recorder.clone(), f);
    let seconds = start.elapsed().as_secs_f64();
    let memory = stop_sampling();
    let runs = std::mem::take(&mut *recorder.runs.lock().unwrap_or_else(|p| p.into_inner()));
    let since = |t: Instant| t.saturating_duration_since(start).as_secs_f64();
    let mut by_op: BTreeMap<String, PrefixTime> = BTreeMap::new();
    let stream = runs
        .into_iter()
        .map(|(op, worker, started, finished)| {
            let p = by_op.entry(op.clone()).or_insert_with(|| PrefixTime {
                prefix: op.clone(),
                seconds: 0.0,
                tasks: 0,
                nbytes: None,
            });
            p.seconds += (finished - started).as_secs_f64();
            p.tasks += 1;
            StreamRun {
                lane: format!("thread {worker}"),
                prefix: op,
                start: since(started),
                stop: since(finished),
            }
        })
        .collect();
    ReportData {
        scheduler: "local".into(),
        seconds,
        stream,
        prefixes: by_op.into_values().collect(),
        memory,
        memory_label: "process resident memory".into(),
    }
    .write(path)?;
    Ok(r)
}
