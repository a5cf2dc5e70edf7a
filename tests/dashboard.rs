//! The scheduler's dashboard, served by a real LocalCluster: the JSON API and
//! the Prometheus metrics against the scheduler's state after a known
//! computation, a launched job's lines, the token check, and the page itself
//! in headless Chromium driven through chromedriver (WebDriver).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rask::distributed::{ClusterOptions, LocalCluster, SubmitOptions};
use rask::ops::{fail_times, sleep_then, sum_i64};
use rask::Delayed;

#[path = "common/http.rs"]
mod http;

// Clients set the process-wide default scheduler: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn cluster(token: Option<&str>) -> LocalCluster {
    LocalCluster::with_options(ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        token: token.map(String::from),
        ..ClusterOptions::default()
    })
    .expect("cluster starts")
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs`.
fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A task that fails (its first 1,000 calls), without retries.
fn failing(dir: &Path) -> Delayed<i64> {
    fail_times(dir.join("fails").display().to_string(), 1000, 7)
}

/// Runs a 2-member job that prints a line on stdout and one on stderr per
/// member, with its lines kept quiet here; returns the job's command.
fn launch_printing_job(client: &rask::distributed::Client) -> Vec<String> {
    use rask::dl::{launch, start_cluster, DlOptions, LaunchOptions, Roles};
    let spec = start_cluster(client, &Roles::World(2), &DlOptions::default()).unwrap();
    let script = "echo \"hello from rank $RANK\"; echo \"warning from rank $RANK\" >&2";
    let command: Vec<String> = ["sh", "-c", script].map(String::from).to_vec();
    let quiet = LaunchOptions { on_line: Some(Box::new(|_, _, _, _| {})), ..Default::default() };
    let report = launch(client, &spec, &command, quiet).unwrap();
    assert!(report.failed.is_none(), "{report:?}");
    command
}

#[test]
fn the_json_api_and_metrics_match_the_scheduler() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster(None);
    let client = c.client().unwrap();
    let url = client.dashboard_link().expect("LocalCluster serves a dashboard");
    assert_eq!(Some(url.as_str()), c.dashboard_link());
    assert_eq!(http::get(&format!("{url}health")).body, "ok");

    // 12 tasks of 5 ms held in memory, their sum (which fetches the ones
    // the other worker ran), and one that fails.
    let leaves: Vec<Delayed<i64>> = (0..12).map(|i| sleep_then(5, i)).collect();
    let held = client.map(&leaves).unwrap();
    client.gather(&held).unwrap();
    let total = client.submit(&sum_i64(leaves.clone())).unwrap();
    assert_eq!(total.result().unwrap(), 66);
    let dir = tempfile::tempdir().unwrap();
    let bad = client
        .submit_with(&failing(dir.path()), &SubmitOptions { retries: 0, ..Default::default() })
        .unwrap();
    assert!(bad.result().is_err());

    // The next update carries it all.
    // The transfers come with the workers' next heartbeats.
    let counts = until(10, "counts and transfers", || {
        let v = http::get(&format!("{url}api/v1/tasks/counts")).json();
        let moved = v["groups"]
            .as_array()?
            .iter()
            .find(|g| g["prefix"] == "sleep_then")
            .is_some_and(|g| g["transfers"].as_u64() > Some(0));
        (v["total"]["memory"] == 13 && v["total"]["erred"] == 1 && moved).then_some(v)
    });
    let groups = counts["groups"].as_array().unwrap();
    let sleep = groups.iter().find(|g| g["prefix"] == "sleep_then").expect("a sleep_then group");
    assert_eq!(sleep["finished"], 12);
    assert!(sleep["compute_seconds"].as_f64().unwrap() >= 12.0 * 0.005);
    // Each sleep_then value is an 8-byte integer in an envelope; the sum
    // fetched at most 11 of them (the rest were on its own worker).
    let (moves, moved) =
        (sleep["transfers"].as_u64().unwrap(), sleep["transfer_bytes"].as_u64().unwrap());
    assert!((1..=11).contains(&moves), "{sleep}");
    assert!(moved >= 8 * moves && moved < 1024 * moves, "{sleep}");
    assert!(sleep["transfer_seconds"].as_f64().unwrap() > 0.0, "{sleep}");

    let workers = http::get(&format!("{url}api/v1/workers")).json();
    assert_eq!(workers.as_array().unwrap().len(), 2);

    // One worker's page: its row and the keys it holds.
    let w0 = &workers[0];
    let page = http::get(&format!("{url}api/v1/worker/{}", w0["id"])).json();
    assert_eq!(page["row"]["name"], w0["name"]);
    let holding = page["holding"].as_array().unwrap();
    assert_eq!(holding.len() as u64, page["row"]["keys"].as_u64().unwrap());
    assert!(holding.iter().all(|k| k.as_str().unwrap().contains('-')), "{page}");
    assert_eq!(http::get(&format!("{url}api/v1/worker/999")).status, 404);
    assert_eq!(http::get(&format!("{url}api/v1/worker/x")).status, 400);

    // The graph: small, so task by task, with the sum's 12 edges.
    let graph = http::get(&format!("{url}api/v1/graph")).json();
    assert_eq!(graph["kind"], "tasks");
    let nodes = graph["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 14, "12 leaves, their sum and the failed task");
    let edges = graph["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 12);
    let sum_at = nodes.iter().position(|n| n["prefix"] == "sum_i64").unwrap();
    assert!(edges.iter().all(|e| e[1] == sum_at), "{graph}");
    assert!(nodes.iter().any(|n| n["state"] == "erred"));

    // Prometheus: parsed by a real text-format parser.
    let text = http::get(&format!("{url}metrics")).body;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in\n{text}"));
        match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(value("dask_scheduler_workers", None), 2.0);
    assert_eq!(value("dask_scheduler_tasks", Some(("state", "memory"))), 13.0);
    assert_eq!(value("dask_scheduler_tasks", Some(("state", "erred"))), 1.0);
    assert_eq!(value("dask_scheduler_tasks", Some(("state", "processing"))), 0.0);
    assert!(
        value(
            "dask_scheduler_tasks_compute_seconds_total",
            Some(("task_prefix_name", "sleep_then"))
        ) > 0.0
    );
    assert!(value("dask_scheduler_tasks_erred_total", None) >= 1.0);
    // (A later heartbeat may have brought more of the sum's fetches.)
    assert!(
        value(
            "rask_scheduler_tasks_transfer_bytes_total",
            Some(("task_prefix_name", "sleep_then"))
        ) >= moved as f64
    );
    // The workers' heartbeats bring unmanaged memory and transfers.
    until(10, "worker heartbeats", || {
        let w = http::get(&format!("{url}api/v1/workers")).json();
        w.as_array().unwrap().iter().all(|w| w["unmanaged"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let text = http::get(&format!("{url}metrics")).body;
    for family in [
        "dask_worker_transfer_incoming_bytes_total",
        "dask_worker_transfer_outgoing_bytes_total",
        "rask_worker_cpu_percent",
    ] {
        assert!(text.contains(family), "{family} missing");
    }
    assert!(text.contains("type=\"unmanaged\""));

    // The failure, with its message, and the key's story.
    let failures = http::get(&format!("{url}api/v1/failures")).json();
    let f = &failures[0];
    assert!(f["message"].as_str().unwrap().contains("flaky failure"), "{f}");
    assert!(f["op"].as_str().unwrap().ends_with("fail_times"), "{f}");
    let task = http::get(&format!("{url}api/v1/task/{}", f["key"].as_str().unwrap())).json();
    assert_eq!(task["state"], "erred");
    assert!(task["story"].as_array().unwrap().iter().any(|t| t["to"] == "erred"), "{task}");
    assert_eq!(http::get(&format!("{url}api/v1/task/not-a-key")).status, 400);

    // A launched job's lines, forwarded by its client, kept by the scheduler.
    let command = launch_printing_job(&client);
    let jobs = until(10, "the job's lines", || {
        let v = http::get(&format!("{url}api/v1/logs")).json();
        (v[0]["total"] == 4).then_some(v)
    });
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    let job = &jobs[0];
    assert!(job["job"].as_str().unwrap().ends_with(&command.join(" ")), "{job}");
    let mut lines: Vec<(String, u64, bool, String)> = job["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap().to_string();
            (s("role"), l["rank"].as_u64().unwrap(), l["stderr"].as_bool().unwrap(), s("text"))
        })
        .collect();
    lines.sort();
    let want: Vec<(String, u64, bool, String)> = (0..2u64)
        .flat_map(|r| {
            [
                ("worker".to_string(), r, false, format!("hello from rank {r}")),
                ("worker".to_string(), r, true, format!("warning from rank {r}")),
            ]
        })
        .collect();
    assert_eq!(lines, want);
    // A viewer asks only for the lines after the last it has.
    let last = job["lines"].as_array().unwrap().iter().map(|l| l["seq"].as_u64().unwrap()).max();
    let after = http::get(&format!("{url}api/v1/logs?since={}", last.unwrap())).json();
    assert_eq!(after[0]["total"], 4, "{after}");
    assert_eq!(after[0]["lines"].as_array().map(Vec::len), Some(0), "{after}");
    assert_eq!(http::get(&format!("{url}api/v1/logs?since=x")).status, 400);

    // The page and its script are served from the binary.
    let page = http::get(&url);
    assert!(page.body.contains("task-stream") && page.body.contains("app.js"));
    assert!(http::get(&format!("{url}app.js")).body.contains("EventSource"));
    drop(held);
}

#[test]
fn with_a_token_the_dashboard_asks_for_it() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let token = "dashboard-test-token-0123456789abcdef";
    let c = cluster(Some(token));
    let url = c.dashboard_link().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "loopback: {url}");
    let refused = http::get(&format!("{url}api/v1/workers"));
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("token"), "{}", refused.body);
    assert_eq!(http::get(&format!("{url}metrics")).status, 401);
    let bearer = format!("Bearer {token}");
    let ok =
        http::request("GET", &format!("{url}api/v1/workers"), None, &[("Authorization", &bearer)])
            .unwrap();
    assert_eq!(ok.status, 200);
    let wrong = http::request(
        "GET",
        &format!("{url}api/v1/workers"),
        None,
        &[("Authorization", "Bearer nope")],
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    // ?token= once sets a cookie that the page's own requests carry.
    let first = http::get(&format!("{url}?token={token}"));
    assert_eq!(first.status, 200);
    let cookie =
        first.header("set-cookie").expect("a cookie").split(';').next().unwrap().to_string();
    let again =
        http::request("GET", &format!("{url}api/v1/snapshot"), None, &[("Cookie", &cookie)])
            .unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(http::get(&format!("{url}health")).status, 200, "health needs no token");
}

// ------------------------------------------------------------- the browser

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Driver {
    child: Child,
    base: String,
    session: String,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        until(20, "chromedriver", || {
            http::request("GET", &format!("{base}/status"), None, &[])
                .ok()
                .filter(|r| r.status == 200)
        });
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000", "--no-first-run"]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let r = http::request("POST", &format!("{base}/session"), Some(&caps), &[]).unwrap();
        let v = r.json();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {}", r.body))
            .to_string();
        Driver { child, base, session }
    }

    fn cmd(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let body = (method != "GET").then_some(&body);
        let r = http::request(method, &url, body, &[]).unwrap();
        let v = r.json();
        assert!(r.status == 200, "{method} {path}: {}", r.body);
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "url", serde_json::json!({ "url": url }));
    }

    fn js(&self, script: &str) -> serde_json::Value {
        self.cmd("POST", "execute/sync", serde_json::json!({ "script": script, "args": [] }))
    }

    /// Browser console entries at SEVERE level (errors).
    fn console_errors(&self) -> Vec<String> {
        let v = self.cmd("POST", "se/log", serde_json::json!({ "type": "browser" }));
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Driver {
    /// Saves a screenshot of the page to `target/tmp/<name>.png` (to look at).
    fn save_screenshot(&self, name: &str) -> PathBuf {
        let png = self.cmd("GET", "screenshot", serde_json::json!({}));
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            png.as_str().expect("base64 PNG"),
        )
        .unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
        std::fs::write(&out, &bytes).unwrap();
        out
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = http::request("DELETE", &url, None, &[]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_dashboard_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromium-driver are missing in CI: `cargo xtask provision` installs them"
        );
        eprintln!(
            "NOT RUN: the browser test needs chromium and chromium-driver (cargo xtask provision)"
        );
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster(None);
    let client = c.client().unwrap();
    let url = client.dashboard_link().unwrap();
    let driver = Driver::start();
    driver.go(&url);

    // Two worker rows.
    until(30, "two worker rows", || {
        (driver.js("return document.querySelectorAll('.worker-row').length") == 2).then_some(())
    });

    // A computation of 160 tasks of 25 ms on 2 workers (about 2 s), under a
    // performance report: the progress of its group rises to completion (the
    // results are held, so the group stays on the page once done).
    let leaves: Vec<Delayed<i64>> = (0..160).map(|i| sleep_then(25, i)).collect();
    let held = client.map(&leaves).unwrap();
    let report = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("performance-report.html");
    let reporting = {
        let (client, held, report) = (client.clone(), held.clone(), report.clone());
        std::thread::spawn(move || {
            rask::distributed::performance_report(&client, &report, || client.gather(&held))
        })
    };
    let progress = "const r = document.querySelector('.group-row[data-prefix=\"sleep_then\"]'); \
                    return r ? [Number(r.dataset.done), Number(r.dataset.total)] : null";
    let mut seen: Vec<i64> = Vec::new();
    let mut screenshot = None;
    until(60, "progress to reach 160 of 160", || {
        let v = driver.js(progress);
        if let Some(a) = v.as_array() {
            let (done, total) = (a[0].as_i64().unwrap(), a[1].as_i64().unwrap());
            if screenshot.is_none() && (40..120).contains(&done) {
                // Mid-computation: the status page's picture for the README.
                screenshot = Some(driver.cmd("GET", "screenshot", serde_json::json!({})));
            }
            assert!(
                seen.last().is_none_or(|&last| done >= last),
                "progress went back: {seen:?} then {done}"
            );
            if seen.last() != Some(&done) {
                seen.push(done);
            }
            return (done == 160 && total == 160).then_some(());
        }
        None
    });
    assert!(seen.len() >= 3, "progress seen at only {seen:?}");
    let stream = driver.js("return window.raskDashboard.streamCount").as_i64().unwrap();
    assert!(stream >= 160, "the task stream got {stream} entries");
    assert_eq!(client.gather(&held).unwrap(), (0..160).collect::<Vec<i64>>());
    let gathered = reporting.join().unwrap().expect("the report is written");
    assert_eq!(gathered.unwrap().len(), 160);

    // The status page's screenshot (the README's picture), taken mid-run.
    let png = screenshot.expect("a screenshot while the computation ran");
    let bytes = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        png.as_str().expect("base64 PNG"),
    )
    .unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-status.png");
    std::fs::write(&out, &bytes).unwrap();
    if std::env::var_os("RASK_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard.png"), &bytes).unwrap();
    }
    eprintln!("screenshot: {}", out.display());

    // Their sum fetches the values the other worker holds: transfers reach
    // the page's task stream with the next heartbeats.
    let total = client.submit(&sum_i64(leaves.clone())).unwrap();
    assert_eq!(total.result().unwrap(), (0..160).sum::<i64>());
    until(20, "transfers in the task stream", || {
        (driver.js("return window.raskDashboard.kinds.transfer || 0").as_i64() > Some(0))
            .then_some(())
    });

    // The graph page draws the 161 tasks one by one.
    driver.go(&format!("{url}#graph"));
    until(20, "the graph drawn", || {
        (driver.js("return window.raskDashboard.graphNodes || 0").as_i64() == Some(161))
            .then_some(())
    });
    let summary = driver.js("return document.querySelector('#graph-summary').textContent");
    assert!(summary.as_str().unwrap().contains("161 tasks"), "{summary}");
    driver.save_screenshot("dashboard-graph");

    // A worker's page, reached from the workers table.
    driver.go(&format!("{url}#workers"));
    let href = until(20, "the workers table", || {
        let v = driver.js("const a = document.querySelector('#workers-table a'); return a ? a.getAttribute('href') : null");
        v.as_str().map(String::from)
    });
    assert!(href.starts_with("#worker/"), "{href}");
    driver.go(&format!("{url}{href}"));
    until(20, "the worker page", || {
        let v = driver.js(
            "return [document.querySelector('#worker-title').textContent, document.querySelector('#worker-holding').textContent]",
        );
        let title = v[0].as_str().unwrap_or("");
        let holding = v[1].as_str().unwrap_or("");
        (title.contains("127.0.0.1") && holding.contains("sleep_then-")).then_some(())
    });
    driver.save_screenshot("dashboard-worker");
    drop(total);

    // An erred task shows on the failures page with its message.
    let dir = tempfile::tempdir().unwrap();
    let bad = client
        .submit_with(&failing(dir.path()), &SubmitOptions { retries: 0, ..Default::default() })
        .unwrap();
    assert!(bad.result().is_err());
    driver.go(&format!("{url}#failures"));
    let text = until(30, "the failure on the failures page", || {
        let t = driver
            .js("const f = document.querySelector('.failure'); return f ? f.textContent : null");
        t.as_str().filter(|t| t.contains("flaky failure") && t.contains("erred")).map(String::from)
    });
    assert!(text.contains("fail_times"), "{text}");

    // A launched job's lines on the logs page, stderr in red.
    launch_printing_job(&client);
    driver.go(&format!("{url}#logs"));
    let (text, errs) = until(20, "the job's lines on the logs page", || {
        let v = driver.js("const j = document.querySelector('.job'); \
             return j ? [j.textContent, j.querySelectorAll('.err').length] : null");
        let text = v[0].as_str()?.to_string();
        text.contains("[worker 1] warning from rank 1").then(|| (text, v[1].as_i64()))
    });
    for r in 0..2 {
        assert!(text.contains(&format!("[worker {r}] hello from rank {r}")), "{text}");
    }
    assert_eq!(errs, Some(2), "{text}");
    driver.save_screenshot("dashboard-logs");

    // The performance report opens in the browser and holds the task stream.
    driver.go(&format!("file://{}", report.display()));
    let runs = driver.js("return document.querySelectorAll('#task-stream rect.run').length");
    assert!(runs.as_i64().unwrap() >= 100, "the report's task stream has {runs} runs");
    let table = driver.js("return document.querySelector('#prefixes').textContent");
    assert!(table.as_str().unwrap().contains("sleep_then"), "{table}");

    let errors = driver.console_errors();
    assert!(errors.is_empty(), "JavaScript console errors: {errors:?}");
    drop(held);
}

// ------------------------------------------------ 200 workers, 1M tasks

/// The scheduler's state machine with `workers` simulated workers (4 threads
/// each) and a graph of `tasks` tasks in chains across 50 task groups (task
/// `i` of group `i % 50` needs task `i - 1`), as the real scheduler holds it.
fn simulated(
    workers: u64,
    tasks: u128,
) -> (rask::distributed::scheduler::SchedulerState, Vec<rask::distributed::scheduler::Command>) {
    use rask::distributed::scheduler::*;
    use rask_core::key::Token;
    use rask_core::Key;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    let mut s =
        SchedulerState::new(SchedulerConfig { log_capacity: 0, ..SchedulerConfig::default() });
    let ops: Arc<BTreeSet<String>> = Arc::new(["inc".to_string()].into());
    for w in 0..workers {
        s.handle(
            Event::WorkerJoined {
                worker: WorkerId(w),
                name: format!("sim-{w}"),
                addr: format!("10.0.{}.{}:9000", w / 250, w % 250),
                nthreads: 4,
                memory_limit: 8 << 30,
                ops: ops.clone(),
                resources: BTreeMap::new(),
            },
            0,
        );
    }
    let keys: Vec<Key> =
        (0..tasks).map(|i| Key::new(format!("stage{:02}", i % 50), Token(i))).collect();
    let specs: Vec<TaskSpec> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| TaskSpec {
            key: k.clone(),
            op: "inc".into(),
            payload: Arc::new(vec![]),
            deps: if i % 50 == 0 { vec![] } else { vec![keys[i - 1].clone()] },
            priority: 0,
            graph_order: i as u32,
            retries: 0,
            workers: vec![],
            allow_other_workers: false,
            resources: vec![],
            gang: None,
        })
        .collect();
    let wanted = keys.iter().skip(49).step_by(50).cloned().collect();
    let out = s.handle(Event::GraphSubmitted { client: ClientId(1), tasks: specs, wanted }, 1);
    (s, out)
}

#[test]
fn the_page_stays_responsive_with_200_workers_and_a_million_tasks() {
    use rask::distributed::dashboard::{self, snapshot, DashQuery, Published};
    use rask::distributed::scheduler::{Command as SchedCommand, Event};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        assert!(std::env::var_os("CI").is_none(), "chromium and chromium-driver are missing in CI");
        eprintln!("NOT RUN: needs chromium and chromium-driver (cargo xtask provision)");
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = Instant::now();
    let (mut state, mut pending) = simulated(200, 1_000_000);
    let setup = t.elapsed();

    // The real dashboard server, fed as the scheduler's event loop feeds it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (listener, url) = runtime
        .block_on(dashboard::bind("127.0.0.1:0", "127.0.0.1", false))
        .expect("the dashboard binds");
    let url = url.split_whitespace().next().unwrap().to_string();
    let first = snapshot::build(&state, 0, 1);
    let json = serde_json::to_string(&first).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Published { snapshot: first, json }));
    let (queries, mut asked) = tokio::sync::mpsc::unbounded_channel::<DashQuery>();
    let logs = rask::distributed::scheduler::logs::JobLogs::default();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            runtime.block_on(dashboard::serve(listener, rx, queries, String::new(), async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }))
        })
    };
    // Every 250 ms: 2,000 tasks finish on their workers, and an update goes out.
    let feeder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut since, mut now, mut updates) = (0, 2, 0u32);
            let (mut build_ms, mut max_bytes) = (Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<SchedCommand> = pending.drain(..pending.len().min(2000)).collect();
                for c in batch {
                    if let SchedCommand::Compute { worker, key, .. } = c {
                        now += 1;
                        let ev = Event::TaskFinished { worker, key, nbytes: 8, micros: 1500 };
                        pending.extend(state.handle(ev, now));
                    }
                }
                while let Ok(q) = asked.try_recv() {
                    q.answer(&state, &logs);
                }
                let t = Instant::now();
                let snap = snapshot::build(&state, since, 1);
                since = snap.stream_next;
                let json = serde_json::to_string(&snap).unwrap();
                build_ms.push(t.elapsed().as_secs_f64() * 1e3);
                max_bytes = max_bytes.max(json.len());
                let _ = tx.send(Arc::new(Published { snapshot: snap, json }));
                updates += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            (updates, build_ms, max_bytes)
        })
    };

    let driver = Driver::start();
    driver.go(&url);
    // Above 100 workers the per-worker bars become histograms.
    until(60, "the histograms", || {
        (driver.js("return document.querySelectorAll('#worker-bars canvas').length") == 2)
            .then_some(())
    });
    let total = driver.js("return document.querySelector('#total-memory b').textContent");
    assert!(total.as_str().is_some(), "{total}");
    // Responsive: the page keeps up with the updates (each one redrawn).
    let before = driver.js("return window.raskDashboard.updates").as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let n = driver.js("return window.raskDashboard.updates").as_i64().unwrap();
        if n >= before + 12 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(after >= before + 12, "the page took {} updates in 60 s", after - before);
    let render = driver.js("const d = window.raskDashboard; return [d.renderMs, d.renderMsMax]");
    driver.save_screenshot("dashboard-200-workers");
    // The workers table: 200 rows.
    driver.go(&format!("{url}#workers"));
    until(30, "200 worker rows", || {
        (driver.js("return document.querySelectorAll('#workers-table tbody tr').length") == 200)
            .then_some(())
    });
    let workers_render = driver.js("return window.raskDashboard.renderMs");
    driver.save_screenshot("dashboard-200-workers-table");
    // The graph: a million tasks are drawn as their 50 task groups.
    driver.go(&format!("{url}#graph"));
    until(30, "the group graph", || {
        (driver.js("return window.raskDashboard.graphNodes || 0").as_i64() == Some(50))
            .then_some(())
    });
    let summary = driver.js("return document.querySelector('#graph-summary').textContent");
    assert!(summary.as_str().unwrap().contains("task groups"), "{summary}");
    driver.save_screenshot("dashboard-group-graph");
    let errors = driver.console_errors();
    assert!(errors.is_empty(), "JavaScript console errors: {errors:?}");

    stop.store(true, Ordering::Relaxed);
    let (updates, build_ms, max_bytes) = feeder.join().unwrap();
    server.join().unwrap().unwrap();
    let mean = build_ms.iter().sum::<f64>() / build_ms.len().max(1) as f64;
    let max = build_ms.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "200 workers, 1,000,000 tasks: {updates} updates of at most {max_bytes} bytes; scheduler side {mean:.2} ms mean, \
         {max:.2} ms max per update (snapshot and JSON); page redraw {:.1} ms last, {:.1} ms max on the status page, {:.1} ms for the 200-row table; \
         state set up in {:.1} s",
        render[0].as_f64().unwrap_or(0.0),
        render[1].as_f64().unwrap_or(0.0),
        workers_render.as_f64().unwrap_or(0.0),
        setup.as_secs_f64()
    );
}
