//! The `rask` binary as a newcomer runs it: the demo and the benchmark harness.

use std::process::Command;

fn rask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rask"))
}

#[test]
fn demo_estimates_pi_and_writes_a_profile() {
    let dir = std::env::temp_dir().join(format!("rask-demo-test-{}", std::process::id()));
    let out = rask()
        .args([
            "demo",
            "--pi",
            "--chunks",
            "64",
            "--samples-per-chunk",
            "20000",
            "--no-progress",
            "--out",
        ])
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
    assert!(
        stdout.contains("LocalCluster") && stdout.contains("15 candidates x 5 folds"),
        "{stdout}"
    );
    assert!(stdout.contains("best: "), "{stdout}");
    // 1 data + 5 splits + 5 scaler + 15 PCA + 75 final fits.
    assert!(stdout.contains("the graph had 101 tasks"), "{stdout}");
    let csv = std::fs::read_to_string(dir.join("cv_results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 16);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cv_results.json")).unwrap())
            .unwrap();
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
    let schedulers: Vec<_> =
        recs.iter().map(|r| r["config"]["scheduler"].as_str().unwrap().to_string()).collect();
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

fn write_search_data(dir: &std::path::Path) {
    let (x, y) = rask::ml::datasets::make_classification(300, 5, 3, 2, 5);
    let mut csv = String::from("a,b,c,d,e,label\n");
    for (row, t) in x.rows().into_iter().zip(y.iter()) {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        csv.push_str(&format!("{},{t}\n", cells.join(",")));
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("data.csv"), csv).unwrap();
}

const SPEC: &str = r#"
[data]
csv = "data.csv"
target = "label"

[[steps]]
name = "scaler"
type = "StandardScaler"

[[steps]]
name = "pca"
type = "PCA"

[[steps]]
name = "logreg"
type = "LogisticRegression"
params = { max_iter = 500 }

[grid]
pca__n_components = [2, 4]
logreg__C = [0.01, 1.0]

[search]
cv = 3
scoring = ["accuracy", "roc_auc"]
refit = "roc_auc"
scheduler = "SCHEDULER"

[output]
dir = "out"
"#;

#[test]
fn search_spec_runs_and_writes_results() {
    for scheduler in ["threads", "local:2"] {
        let dir = std::env::temp_dir().join(format!(
            "rask-spec-{}-{}",
            std::process::id(),
            scheduler.replace(':', "")
        ));
        write_search_data(&dir);
        std::fs::write(dir.join("spec.toml"), SPEC.replace("SCHEDULER", scheduler)).unwrap();
        let out = rask()
            .args(["search", "--no-progress", "--spec"])
            .arg(dir.join("spec.toml"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{scheduler}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("searching 4 candidates on 300 rows x 5 features"), "{stdout}");
        assert!(stdout.contains("best: "), "{stdout}");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("out/cv_results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["mean_test_roc_auc"].as_array().unwrap().len(), 4);
        assert_eq!(json["split2_test_accuracy"].as_array().unwrap().len(), 4);
        assert_eq!(
            std::fs::read_to_string(dir.join("out/cv_results.csv")).unwrap().lines().count(),
            5
        );
        let model =
            rask::ml::load(&std::fs::read(dir.join("out/best_estimator.rske")).unwrap()).unwrap();
        assert!(model.is_fitted() && model.type_name() == "Pipeline");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn invalid_specs_point_at_the_offending_key() {
    let dir = std::env::temp_dir().join(format!("rask-badspec-{}", std::process::id()));
    write_search_data(&dir);
    let spec = SPEC.replace("SCHEDULER", "threads");
    for (from, to, expect) in [
        (
            "type = \"PCA\"",
            "type = \"PCAA\"",
            "steps[1].type: no estimator is registered as `PCAA`; did you mean `PCA`?",
        ),
        (
            "pca__n_components = [2, 4]",
            "pca__n_component = [2, 4]",
            "grid[0].pca__n_component: unknown parameter \"pca__n_component\"; did you mean \
             `pca__n_components`?",
        ),
        ("params = { max_iter = 500 }", "params = { max_iter = 0 }", "steps[2].params.max_iter"),
        ("scheduler = \"threads\"", "scheduler = \"gpu\"", "search.scheduler"),
        ("[output]", "[outptu]", "outptu: unknown key; did you mean `output`?"),
        // Wrongly typed and unknown fields are errors, never silent defaults.
        (
            "cv = 3",
            "cv = { splitter = \"kfold\", n_splits = 3, shuffle = \"yes\" }",
            "search.cv.shuffle: expected true or false, found string",
        ),
        (
            "cv = 3",
            "cv = { n_splits = 3, shufle = true }",
            "search.cv.shufle: unknown key; did you mean `shuffle`?",
        ),
        ("cv = 3", "cv = 3\nn_iter = 5", "search.n_iter: unknown key"),
        ("dir = \"out\"", "dir = 7", "output.dir: expected a string, found integer"),
        (
            "name = \"pca\"",
            "name = \"pca\"\nparam = {}",
            "steps[1].param: unknown key; did you mean `params`?",
        ),
        ("target = \"label\"", "target = \"lable\"", "data.csv"),
        ("scoring = [\"accuracy\", \"roc_auc\"]", "scoring = [\"acc\"]", "search.scoring"),
    ] {
        std::fs::write(dir.join("bad.toml"), spec.replace(from, to)).unwrap();
        let out = rask()
            .args(["search", "--no-progress", "--spec"])
            .arg(dir.join("bad.toml"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.toml") && err.contains(expect), "expected {expect:?} in {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_one_step_pipeline_addresses_parameters_as_step_param() {
    let dir = std::env::temp_dir().join(format!("rask-onestep-{}", std::process::id()));
    write_search_data(&dir);
    let spec = r#"
[data]
csv = "data.csv"
target = "label"

[[steps]]
name = "logreg"
type = "LogisticRegression"

[grid]
logreg__C = [0.1, 1.0]

[search]
cv = 3
"#;
    std::fs::write(dir.join("one.toml"), spec).unwrap();
    let out = rask()
        .args(["search", "--no-progress", "--spec"])
        .arg(dir.join("one.toml"))
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("searching 2 candidates"), "{stdout}");
    // The bare name is not a parameter of the pipeline.
    std::fs::write(dir.join("bare.toml"), spec.replace("logreg__C", "C")).unwrap();
    let out = rask()
        .args(["search", "--no-progress", "--spec"])
        .arg(dir.join("bare.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("grid[0].C: unknown parameter \"C\""), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn glm_spec_fits_chunk_files_and_writes_the_model() {
    use rask::glm::data::InMemory;
    use rask::glm::solve::{fit, Model, Options, Solver};
    use rask::glm::{Family, Penalty};
    let dir = std::env::temp_dir().join(format!("rask-glm-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 3 000 rows x 3 features in 3 chunk files; targets from the row sums.
    let x = rask::array::create::standard_normal(5, &[3000, 3], [1000, 3]).unwrap();
    let xm = x.compute().unwrap().into_dimensionality::<ndarray::Ix2>().unwrap();
    let ym = xm.map_axis(ndarray::Axis(1), |r| f64::from(r.sum() > 0.3));
    let y = rask::array::create::from_array(&ym.clone().into_dyn(), 1000).unwrap();
    x.to_npy_stack(dir.join("x")).unwrap();
    y.to_npy_stack(dir.join("y")).unwrap();
    let spec = r#"
[data]
x = "x"
y = "y"

[model]
family = "logistic"
C = 0.5

[solver]
name = "newton"
tol = 1e-10
scheduler = "sync"

[output]
dir = "out"
"#;
    std::fs::write(dir.join("glm.toml"), spec).unwrap();
    let out = rask().args(["glm", "--spec"]).arg(dir.join("glm.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("on 3000 rows x 3 features in 3 chunks with newton"), "{stdout}");
    assert!(stdout.contains("  iter    1  objective"), "per-iteration progress: {stdout}");
    assert!(stdout.contains("converged after"), "{stdout}");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/model.json")).unwrap())
            .unwrap();
    // The same fit in this process: LogisticRegression(C=0.5) is λ = 1/(C·n).
    let data = InMemory::new(Family::Logistic, xm.view(), ym.view(), None, 1000).unwrap();
    let penalty = Penalty::l2(1.0 / (0.5 * 3000.0)).unwrap();
    let m = Model { family: Family::Logistic, penalty, fit_intercept: true };
    let want = fit(&data, m, Solver::Newton, Options { max_iter: 100, tol: 1e-10 }).unwrap();
    let got: Vec<f64> = serde_json::from_value(model["coef"].clone()).unwrap();
    for (g, w) in got.iter().zip(&want.coef) {
        assert!((g - w).abs() < 1e-9, "{got:?} vs {:?}", want.coef);
    }
    assert!((model["intercept"].as_f64().unwrap() - want.intercept).abs() < 1e-9);
    // Bad specs name their key.
    for (from, to, expect) in [
        (
            "name = \"newton\"",
            "name = \"newtn\"",
            "solver.name: unknown solver \"newtn\"; did you mean `newton`?",
        ),
        (
            "family = \"logistic\"",
            "family = \"poisson\"",
            "model.C: C is LogisticRegression's parameter",
        ),
        (
            "C = 0.5",
            "C = 0.5\nl1ratio = 0.5",
            "model.l1ratio: unknown key; did you mean `l1_ratio`?",
        ),
        ("tol = 1e-10", "tol = \"tight\"", "solver.tol: expected a number, found string"),
        ("x = \"x\"", "x = \"nowhere\"", "data.x"),
    ] {
        std::fs::write(dir.join("bad.toml"), spec.replace(from, to)).unwrap();
        let out = rask().args(["glm", "--spec"]).arg(dir.join("bad.toml")).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "expected {expect:?} in {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// `family = "multinomial"` with `classes`: model.json holds a K × p
/// coefficient matrix and K intercepts, equal to the in-process fit (1e-9).
#[test]
fn glm_spec_fits_a_multinomial_model() {
    use rask::glm::data::InMemory;
    use rask::glm::solve::{fit, Model, Options, Solver};
    use rask::glm::{Family, Penalty};
    let dir = std::env::temp_dir().join(format!("rask-glm-multi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = rask::array::create::standard_normal(9, &[1500, 3], [500, 3]).unwrap();
    let xm = x.compute().unwrap().into_dimensionality::<ndarray::Ix2>().unwrap();
    // Three classes from the sign pattern of two columns.
    let ym =
        xm.map_axis(ndarray::Axis(1), |r| f64::from(r[0] > 0.0) + f64::from(r[1] + r[2] > 0.5));
    let y = rask::array::create::from_array(&ym.clone().into_dyn(), 500).unwrap();
    x.to_npy_stack(dir.join("x")).unwrap();
    y.to_npy_stack(dir.join("y")).unwrap();
    let spec = "[data]\nx = \"x\"\ny = \"y\"\n\n[model]\nfamily = \"multinomial\"\nclasses = 3\nC = 2.0\n\n\
                [solver]\nname = \"newton\"\ntol = 1e-10\nscheduler = \"sync\"\n\n[output]\ndir = \"out\"\n";
    std::fs::write(dir.join("glm.toml"), spec).unwrap();
    let out = rask().args(["glm", "--spec"]).arg(dir.join("glm.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("fitting multinomial"), "{stdout}");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/model.json")).unwrap())
            .unwrap();
    let got: Vec<Vec<f64>> = serde_json::from_value(model["coef"].clone()).unwrap();
    let got_b: Vec<f64> = serde_json::from_value(model["intercept"].clone()).unwrap();
    assert_eq!((got.len(), got[0].len(), got_b.len()), (3, 3, 3));
    let family = Family::Multinomial { classes: 3 };
    let data = InMemory::new(family, xm.view(), ym.view(), None, 500).unwrap();
    let m =
        Model { family, penalty: Penalty::l2(1.0 / (2.0 * 1500.0)).unwrap(), fit_intercept: true };
    let want = fit(&data, m, Solver::Newton, Options { max_iter: 100, tol: 1e-10 }).unwrap();
    for (g, w) in got.concat().iter().chain(&got_b).zip(want.coef.iter().chain(&want.intercepts)) {
        assert!((g - w).abs() < 1e-9, "{got:?} {got_b:?} vs {want:?}");
    }
    // `classes` is required for multinomial and refused elsewhere.
    for (from, to, expect) in [
        ("classes = 3\n", "", "model.classes: the multinomial family needs classes"),
        (
            "family = \"multinomial\"",
            "family = \"logistic\"",
            "model.classes: classes is for the multinomial family only",
        ),
    ] {
        std::fs::write(dir.join("bad.toml"), spec.replace(from, to)).unwrap();
        let out = rask().args(["glm", "--spec"]).arg(dir.join("bad.toml")).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "expected {expect:?} in {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A singular Hessian (a duplicated column, no penalty): Newton adds a ridge,
/// says so on stderr, and still reaches stationarity.
#[test]
fn glm_spec_says_when_the_hessian_is_singular() {
    let dir = std::env::temp_dir().join(format!("rask-glm-singular-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = rask::array::create::standard_normal(3, &[400, 2], [200, 2]).unwrap();
    let xm = x.compute().unwrap().into_dimensionality::<ndarray::Ix2>().unwrap();
    let twice =
        ndarray::concatenate![ndarray::Axis(1), xm, xm.column(0).insert_axis(ndarray::Axis(1))];
    let ym = twice.map_axis(ndarray::Axis(1), |r| 0.5 * r[0] - r[1] + 0.1 * r[0].sin());
    rask::array::create::from_array(&twice.into_dyn(), [200, 3])
        .unwrap()
        .to_npy_stack(dir.join("x"))
        .unwrap();
    rask::array::create::from_array(&ym.into_dyn(), 200)
        .unwrap()
        .to_npy_stack(dir.join("y"))
        .unwrap();
    let spec = "[data]\nx = \"x\"\ny = \"y\"\n\n[model]\nfamily = \"normal\"\n\n\
                [solver]\nname = \"newton\"\ntol = 1e-8\nscheduler = \"sync\"\n\n[output]\ndir = \"out\"\n";
    std::fs::write(dir.join("glm.toml"), spec).unwrap();
    let out = rask().args(["glm", "--spec"]).arg(dir.join("glm.toml")).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("the Hessian is not positive definite"), "{stderr}");
    assert!(stdout.contains("converged after"), "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `rask xgb --spec`: per-round evaluation lines, early stopping on the
/// evaluation set (the model keeps the rounds up to the best one), and a
/// model.json in XGBoost's format that loads back and predicts.
#[cfg(feature = "xgboost")]
#[test]
fn xgb_spec_trains_with_early_stopping_and_writes_the_model() {
    let dir = std::env::temp_dir().join(format!("rask-xgb-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (x, y) = rask::ml::datasets::make_classification(1200, 6, 4, 2, 3);
    let split = |a: ndarray::ArrayD<f64>, rows: std::ops::Range<usize>| {
        a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(rows)).to_owned()
    };
    let (xd, yd) = (x.into_dyn(), y.into_dyn());
    for (name, a, chunks) in [
        ("x", split(xd.clone(), 0..900), vec![300, 6]),
        ("y", split(yd.clone(), 0..900), vec![300]),
        ("xv", split(xd, 900..1200), vec![300, 6]),
        ("yv", split(yd, 900..1200), vec![300]),
    ] {
        rask::array::create::from_array(&a, chunks.as_slice())
            .unwrap()
            .to_npy_stack(dir.join(name))
            .unwrap();
    }
    let spec = "[data]\nx = \"x\"\ny = \"y\"\neval_x = \"xv\"\neval_y = \"yv\"\n\n\
                [params]\nobjective = \"binary:logistic\"\nmax_depth = 6\neta = 0.8\nnthread = 1\n\
                eval_metric = [\"auc\", \"logloss\"]\n\n\
                [train]\nrounds = 300\nearly_stopping_rounds = 5\n\n[output]\ndir = \"out\"\n";
    std::fs::write(dir.join("xgb.toml"), spec).unwrap();
    let out = rask().args(["xgb", "--spec"]).arg(dir.join("xgb.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("[0]\ttrain-auc:") && stdout.contains("\teval-logloss:"), "{stdout}");
    assert!(
        stdout.contains("stopped after round"),
        "a high eta overfits and stops early: {stdout}"
    );
    let rounds: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rounds: "))
        .and_then(|r| r.parse().ok())
        .expect("the rounds line");
    assert!(rounds < 300, "{stdout}");
    use rask::xgboost::FittedXgb;
    let model = FittedXgb::load_model(&dir.join("out/model.json"), Some(vec![0.0, 1.0])).unwrap();
    assert_eq!(model.n_features, 6);
    // The same on a 2-worker LocalCluster: a gang of XGBoost members on the
    // workers holding the blocks (the one evaluation block is shared by rows).
    let cluster_spec = spec.replace(
        "early_stopping_rounds = 5\n",
        "early_stopping_rounds = 5\nscheduler = \"local:2\"\ncheckpoint_every = 10\n",
    );
    std::fs::write(dir.join("cluster.toml"), &cluster_spec).unwrap();
    let out = rask().args(["xgb", "--spec"]).arg(dir.join("cluster.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("in 3 blocks") && stdout.contains("on 2 workers"), "{stdout}");
    assert!(
        stdout.contains("[0]\ttrain-auc:") && stdout.contains("stopped after round"),
        "{stdout}"
    );
    FittedXgb::load_model(&dir.join("out/model.json"), Some(vec![0.0, 1.0])).unwrap();
    // Bad specs name their key or XGBoost's parameter.
    for (from, to, expect) in [
        ("rounds = 300", "rounds = 300\ncheckpoint_every = 5", "train.checkpoint_every"),
        ("eval_x = \"xv\"\neval_y = \"yv\"\n", "", "train.early_stopping_rounds"),
        ("binary:logistic", "binary:logstic", "objective"),
        ("rounds = 300", "rounds = 0", "train.rounds"),
    ] {
        std::fs::write(dir.join("bad.toml"), spec.replace(from, to)).unwrap();
        let out = rask().args(["xgb", "--spec"]).arg(dir.join("bad.toml")).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "expected {expect:?} in {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
