use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use super::{Callback, TaskInfo};

/// One task as the profiler saw it. Times are seconds since the computation started.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// The task's key, as text.
    pub key: String,
    /// Its op.
    pub op: String,
    /// Worker thread index.
    pub worker: usize,
    /// Start, in seconds since the computation started.
    pub start: f64,
    /// End, in seconds since the computation started.
    pub end: f64,
    /// Whether it succeeded.
    pub ok: bool,
}

#[derive(Default)]
struct State {
    origin: Option<Instant>,
    records: Vec<TaskRecord>,
}

/// Records every task's start, end and worker thread, and writes a
/// self-contained HTML timeline (inline SVG, no scripts or network) with a
/// per-op summary. Add it to a computation's callbacks.
#[derive(Default)]
pub struct Profiler {
    state: Mutex<State>,
}

impl Profiler {
    /// An empty profiler.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records so far, by start time.
    pub fn records(&self) -> Vec<TaskRecord> {
        let mut r = self.state.lock().unwrap_or_else(|p| p.into_inner()).records.clone();
        r.sort_by(|a, b| a.start.total_cmp(&b.start));
        r
    }

    /// The timeline as an HTML document.
    pub fn to_html(&self) -> String {
        let records = self.records();
        let workers = records.iter().map(|r| r.worker + 1).max().unwrap_or(1);
        let t_end = records.iter().map(|r| r.end).fold(0.0f64, f64::max).max(1e-9);
        let (width, row, left, top) = (1100.0, 28.0, 90.0, 30.0);
        let scale = (width - left - 20.0) / t_end;
        let height = top + row * workers as f64 + 40.0;

        let mut ops: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
        for r in &records {
            let e = ops.entry(r.op.as_str()).or_default();
            e.0 += 1;
            e.1 += r.end - r.start;
        }
        let color = |op: &str| {
            let h = op.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32)) % 360;
            format!("hsl({h},65%,55%)")
        };

        let mut svg = String::new();
        let _ = write!(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">");
        for w in 0..workers {
            let y = top + row * w as f64;
            let _ = write!(svg, "<text x=\"4\" y=\"{}\">worker {w}</text>", y + row * 0.65);
            let _ = write!(
                svg,
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#ddd\"/>",
                width - 20.0,
                y + row,
                y + row
            );
        }
        for r in &records {
            let x = left + r.start * scale;
            let w = ((r.end - r.start) * scale).max(0.5);
            let y = top + row * r.worker as f64 + 3.0;
            let fill = if r.ok { color(&r.op) } else { "#d00".to_string() };
            let _ = write!(
                svg,
                "<rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{}\" fill=\"{fill}\"><title>{} ({})\n{:.3} ms{}</title></rect>",
                row - 6.0,
                html_escape(&r.key),
                html_escape(&r.op),
                (r.end - r.start) * 1e3,
                if r.ok { "" } else { "\nFAILED" }
            );
        }
        let axis_y = top + row * workers as f64 + 18.0;
        for i in 0..=5 {
            let t = t_end * i as f64 / 5.0;
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{axis_y}\" text-anchor=\"middle\">{:.3} s</text>",
                left + t * scale,
                t
            );
        }
        svg.push_str("</svg>");

        let mut table = String::from(
            "<table><tr><th>op</th><th>tasks</th><th>total s</th><th>mean ms</th></tr>",
        );
        for (op, (n, total)) in &ops {
            let _ = write!(
                table,
                "<tr><td><span style=\"background:{}\">&nbsp;&nbsp;</span> {}</td><td>{n}</td><td>{total:.4}</td><td>{:.4}</td></tr>",
                color(op),
                html_escape(op),
                total / *n as f64 * 1e3
            );
        }
        table.push_str("</table>");
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Rask profile</title>\
             <style>body{{font-family:sans-serif;margin:1em}}td,th{{padding:2px 8px;text-align:left}}</style></head>\
             <body><h1>Rask profile</h1><p>{} tasks on {} worker(s), {:.4} s wall</p>{}<h2>By op</h2>{}</body></html>\n",
            records.len(),
            workers,
            t_end,
            svg,
            table
        )
    }

    /// Writes [`Profiler::to_html`] to `path`.
    pub fn write_html(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_html())
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Callback for Profiler {
    fn on_start(&self, _n_tasks: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.origin = Some(Instant::now());
        st.records.clear();
    }

    fn on_task_finish(&self, task: &TaskInfo<'_>, started: Instant, finished: Instant, ok: bool) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let origin = *st.origin.get_or_insert(started);
        let since = |t: Instant| t.saturating_duration_since(origin).as_secs_f64();
        st.records.push(TaskRecord {
            key: task.key.to_string(),
            op: task.op.to_string(),
            worker: task.worker,
            start: since(started),
            end: since(finished),
            ok,
        });
    }
}
