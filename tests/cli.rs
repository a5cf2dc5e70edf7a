//! The `rask` binary as a newcomer runs it: the demo and the benchmark harness.

use std::process::Command;

fn rask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rask"))
}

#[test]
fn demo_estimates_pi_and_writes_a_profile() {
    let dir = std::env::temp_dir().join(format!("rask-demo-test-{}", std::process::id()));
    let out = rask()
        .args(["demo", "--pi", "--chunks", "64", "--samples-per-chunk", "20000", "--no-progress", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let pi: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("π ≈ "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no estimate in:\n{stdout}"));
    // 1.28M points: the standard error of the estimate is about 0.0015.
    assert!((pi - std::f64::consts::PI).abs() < 0.01, "{pi}");
    assert!(stdout.contains("127 tasks"), "{stdout}");
    let html = std::fs::read_to_string(dir.join("profile.html")).unwrap();
    assert!(html.contains("127 tasks") && html.contains("sample_hits"));
    let dot = std::fs::read_to_string(dir.join("graph.dot")).unwrap();
    assert_eq!(dot.matches(" -> ").count(), 126);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn demo_runs_a_grid_search_on_a_local_cluster() {
    let dir = std::env::temp_dir().join(format!("rask-demo-search-{}", std::process::id()));
    let out = rask()
        .args(["demo", "--samples", "600", "--no-progress", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("LocalCluster") && stdout.contains("15 candidates x 5 folds"), "{stdout}");
    assert!(stdout.contains("best: "), "{stdout}");
    // 1 data + 5 splits + 5 scaler + 15 PCA + 75 final fits.
    assert!(stdout.contains("the graph had 101 tasks"), "{stdout}");
    let csv = std::fs::read_to_string(dir.join("cv_results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 16);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cv_results.json")).unwrap()).unwrap();
    assert_eq!(json["rank_test_accuracy"].as_array().unwrap().len(), 15);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bench_w1_prints_peer_schema_lines() {
    let out = rask()
        .args(["bench", "w1"])
        .env("W1_N_LEAVES", "1001")
        .env("W1_N_CHAIN", "300")
        .env("PEERS_REPEATS", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(lines[0]["workload"], "meta");
    let recs = &lines[1..];
    assert_eq!(recs.len(), 4);
    for r in recs {
        assert_eq!(r["workload"], "w1_overhead");
        assert_eq!(r["system"], "rask");
        assert_eq!(r["correct"], true);
        assert_eq!(r["runs"].as_array().unwrap().len(), 2);
        assert!(r["seconds"].as_f64().unwrap() > 0.0);
        assert!(r["tasks_per_second"].as_f64().unwrap() > 0.0);
        for field in ["note", "loadavg_1m_end", "blas_threads", "blas", "build_seconds"] {
            assert!(r.get(field).is_some(), "missing {field} in {r}");
        }
    }
    let tree: Vec<_> = recs.iter().filter(|r| r["config"]["part"] == "a_tree").collect();
    assert_eq!(tree.len(), 2);
    for r in &tree {
        // 1001 leaves + 1000 additions; sum of 1..=1001.
        assert_eq!(r["config"]["n_tasks"], 2001);
        assert_eq!(r["result"], 501_501);
    }
    let schedulers: Vec<_> = recs.iter().map(|r| r["config"]["scheduler"].as_str().unwrap().to_string()).collect();
    assert_eq!(schedulers, ["sync", "sync", "threads", "threads"]);
    let chain = recs.iter().find(|r| r["config"]["part"] == "c_chain").unwrap();
    assert_eq!(chain["result"], 300);
    assert!(chain["us_per_task"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_rejects_bad_input_clearly() {
    let out = rask().args(["bench", "w99"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown workload `w99`") && err.contains("w1"), "{err}");

    let out = rask().args(["bench", "w1"]).env("PEERS_REPEATS", "three").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PEERS_REPEATS") && err.contains("three"), "{err}");

    let out = rask().args(["bench", "w1", "--data", "/nonexistent/rask-data"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a folder"));
}

#[test]
fn ops_lists_the_registered_ops() {
    let out = rask().arg("ops").output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.lines().any(|l| l == "rask::bench::w1::inc"), "{s}");
    assert!(s.lines().any(|l| l == "rask::demo::sample_hits"), "{s}");
}
