//! XGBClassifier and XGBRegressor through the real libxgboost: created by
//! name with parameters as data, fitted here, saved in XGBoost's JSON, and
//! loaded by Python's `xgboost` 3.2 (the test command's virtualenv), which
//! predicts the same values (tolerance 1e-6: the same library, f32 outputs).
#![cfg(feature = "xgboost")]

use std::path::PathBuf;
use std::process::Command;

use ndarray::{Array1, Array2};
use rask_integrations::xgboost::{FittedXgb, XGBClassifier, XGBRegressor};
use rask_ml::estimator::{create, load, save};
use rask_ml::{Estimator, ParamValue};

/// The virtualenv's Python (`cargo xtask test` sets `RASK_PYTHON`).
fn python() -> PathBuf {
    let path = std::env::var_os("RASK_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/rask/venv/bin/python")
    });
    assert!(path.is_file(), "{} is missing: run `cargo xtask provision`", path.display());
    path
}

/// 600 rows × 5 features, deterministic; labels of 2 or 3 classes and a
/// continuous target.
fn data() -> (Array2<f64>, Array1<f64>, Array1<f64>, Array1<f64>) {
    let x = Array2::from_shape_fn((600, 5), |(i, j)| {
        let v = ((i * 7919 + j * 104_729) % 1009) as f64 / 1009.0;
        (v - 0.5) * (j + 1) as f64
    });
    let score = x.map_axis(ndarray::Axis(1), |r| r[0] - 0.5 * r[1] + 0.3 * r[2] * r[3]);
    let two = score.mapv(|s| f64::from(s > 0.0));
    let three = score.mapv(|s| {
        if s < -0.3 {
            0.0
        } else if s < 0.3 {
            1.0
        } else {
            2.0
        }
    });
    let y = score.mapv(|s| 2.0 * s + 1.0);
    (x, two, three, y)
}

/// Python's predictions of `model_json` at `x` (`predict` of a Booster).
fn python_predict(model_json: &[u8], x: &Array2<f64>) -> Vec<f64> {
    let dir = std::env::temp_dir().join(format!("rask-xgb-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join(format!("model-{}.json", x.len()));
    std::fs::write(&model, model_json).unwrap();
    let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
    let xs = dir.join("x.json");
    std::fs::write(&xs, serde_json::to_string(&rows).unwrap()).unwrap();
    let script = "import json, sys, numpy as np, xgboost as xgb\n\
                  b = xgb.Booster(model_file=sys.argv[1])\n\
                  x = np.array(json.load(open(sys.argv[2])), dtype=np.float32)\n\
                  print(json.dumps(b.predict(xgb.DMatrix(x)).ravel().astype(float).tolist()))";
    let out = Command::new(python()).arg("-c").arg(script).arg(&model).arg(&xs).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The estimator of `name` through the registry, parameters set by name.
fn configured(name: &str) -> Box<dyn Estimator> {
    let mut e = create(name).unwrap();
    e.set_param("n_estimators", ParamValue::I64(20)).unwrap();
    e.set_param("max_depth", ParamValue::I64(4)).unwrap();
    e.set_param("learning_rate", ParamValue::F64(0.2)).unwrap();
    e.set_param("nthread", ParamValue::I64(2)).unwrap();
    e
}

/// Python's view of a fitted model, compared with Rask's predictions.
fn check_in_python(name: &str, f: &FittedXgb, ours: Vec<f64>, x: &Array2<f64>) {
    let theirs = python_predict(&f.to_json().unwrap(), x);
    let d = max_diff(&ours, &theirs);
    let classes = f.classes.as_ref().map_or(0, |c| c.len());
    assert!(d <= 1e-6, "{name} ({classes} classes): Python predicts {d:e} apart");
}

#[test]
fn python_xgboost_loads_rask_models_and_predicts_the_same() {
    let (x, two, three, y) = data();
    for target in [&two, &three] {
        let mut e = configured("XGBClassifier");
        e.fit(x.view(), Some(target.view())).unwrap();
        // The same configuration, typed, read back from the registry's state.
        let typed: XGBClassifier =
            rask_ml::estimator::decode_state("XGBClassifier", &e.state().unwrap()).unwrap();
        let f = typed.fitted().unwrap();
        let p = e.predict_proba(x.view()).unwrap();
        // Python's binary predict is P(class 1); multi:softprob gives every column.
        let ours = if p.ncols() == 2 { p.column(1).to_vec() } else { p.iter().copied().collect() };
        check_in_python("XGBClassifier", f, ours, &x);
        let accuracy = e.score(x.view(), target.view()).unwrap();
        assert!(accuracy > 0.8, "training accuracy {accuracy}");
        // Saved and loaded, it predicts the same.
        let back = load(&save(e.as_ref()).unwrap()).unwrap();
        assert_eq!(back.predict(x.view()).unwrap(), e.predict(x.view()).unwrap());
    }
    let mut r = configured("XGBRegressor");
    r.fit(x.view(), Some(y.view())).unwrap();
    let typed: XGBRegressor =
        rask_ml::estimator::decode_state("XGBRegressor", &r.state().unwrap()).unwrap();
    check_in_python(
        "XGBRegressor",
        typed.fitted().unwrap(),
        r.predict(x.view()).unwrap().to_vec(),
        &x,
    );
    let r2 = r.score(x.view(), y.view()).unwrap();
    assert!(r2 > 0.8, "training R² {r2}");
}

#[test]
fn xgboosts_own_errors_name_the_parameter() {
    let (x, two, _, y) = data();
    let mut e = create("XGBClassifier").unwrap();
    e.set_param("objective", ParamValue::Str("binary:nonsense".into())).unwrap();
    let err = e.fit(x.view(), Some(two.view())).unwrap_err().to_string();
    assert!(err.contains("objective") && err.contains("nonsense"), "{err}");
    // Labels outside the objective's range: XGBoost's message, surfaced.
    let mut r = create("XGBRegressor").unwrap();
    r.set_param("objective", ParamValue::Str("binary:logistic".into())).unwrap();
    let err = r.fit(x.view(), Some(y.view())).unwrap_err().to_string();
    assert!(err.contains("label"), "{err}");
    // Parameters are checked before XGBoost sees them.
    let err = e.set_param("tree_method", ParamValue::Str("histo".into())).unwrap_err().to_string();
    assert!(err.contains("tree_method") && err.contains("hist"), "{err}");
    let err = e.set_param("subsample", ParamValue::F64(0.0)).unwrap_err().to_string();
    assert!(err.contains("subsample"), "{err}");
    // An unknown XGBoost parameter (XGBoost itself only warns) is an error
    // naming it, with the closest parameter XGBoost knows.
    let d =
        rask_integrations::xgboost::dmatrix(x.view(), Some(two.as_slice().unwrap()), 1).unwrap();
    let params = [("objective", "binary:logistic"), ("max_dept", "3")];
    let err = rask_integrations::xgboost::train(&d, &[], &params, 2, None, |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`max_dept`") && err.contains("did you mean `max_depth`"), "{err}");
}

/// Predictions over a chunked array, block by block, equal the in-memory
/// ones (exactly: the same library on the same rows), on Sync and Threads.
#[test]
fn chunked_predictions_equal_in_memory_ones() {
    use rask_core::array::create::from_array;
    let (x, two, three, y) = data();
    let xa = from_array(&x.clone().into_dyn(), [128, 5]).unwrap();
    for (name, target) in [("XGBClassifier", &two), ("XGBClassifier", &three), ("XGBRegressor", &y)]
    {
        let mut e = configured(name);
        e.fit(x.view(), Some(target.view())).unwrap();
        let f: FittedXgb = match name {
            "XGBClassifier" => {
                rask_ml::estimator::decode_state::<XGBClassifier>(name, &e.state().unwrap())
                    .unwrap()
                    .fitted()
                    .unwrap()
                    .clone()
            }
            _ => rask_ml::estimator::decode_state::<XGBRegressor>(name, &e.state().unwrap())
                .unwrap()
                .fitted()
                .unwrap()
                .clone(),
        };
        for scheduler in [rask_core::Scheduler::Sync, rask_core::Scheduler::threads_n(2)] {
            let opts = rask_core::ComputeOptions::default();
            let got = f.predict_chunked(&xa).unwrap().compute_with(&scheduler, &opts).unwrap();
            assert_eq!(got.as_slice().unwrap(), e.predict(x.view()).unwrap().as_slice().unwrap());
            if name == "XGBClassifier" {
                let p =
                    f.predict_proba_chunked(&xa).unwrap().compute_with(&scheduler, &opts).unwrap();
                let want = e.predict_proba(x.view()).unwrap();
                assert_eq!(p.shape(), want.shape());
                assert_eq!(
                    p.iter().copied().collect::<Vec<_>>(),
                    want.iter().copied().collect::<Vec<_>>()
                );
            } else {
                assert!(f.predict_proba_chunked(&xa).is_err());
            }
        }
    }
}

/// Model files both ways: Rask's `.json` and `.ubj` load back with the same
/// predictions, and a model Python trained and saved loads in Rask and
/// predicts what Python predicts (1e-6).
#[test]
fn model_files_round_trip_and_python_models_load() {
    let (x, two, _, _) = data();
    let mut e = configured("XGBClassifier");
    e.fit(x.view(), Some(two.view())).unwrap();
    let f = rask_ml::estimator::decode_state::<XGBClassifier>("XGBClassifier", &e.state().unwrap())
        .unwrap()
        .fitted()
        .unwrap()
        .clone();
    let dir = std::env::temp_dir().join(format!("rask-xgb-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (want, _) = f.raw_predict(x.view()).unwrap();
    for file in ["m.json", "m.ubj"] {
        f.save_model(&dir.join(file)).unwrap();
        let back = FittedXgb::load_model(&dir.join(file), f.classes.clone()).unwrap();
        assert_eq!(back.n_features, 5);
        assert_eq!(back.raw_predict(x.view()).unwrap().0, want, "{file}");
    }
    assert!(f.save_model(&dir.join("m.bin")).unwrap_err().to_string().contains(".json"));
    // Python trains and saves; Rask loads and predicts.
    let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
    std::fs::write(dir.join("x.json"), serde_json::to_string(&rows).unwrap()).unwrap();
    std::fs::write(dir.join("y.json"), serde_json::to_string(&two.to_vec()).unwrap()).unwrap();
    let script = "import json, sys, numpy as np, xgboost as xgb\n\
                  d = sys.argv[1]\n\
                  x = np.array(json.load(open(d + '/x.json')), dtype=np.float32)\n\
                  y = np.array(json.load(open(d + '/y.json')))\n\
                  b = xgb.train({'objective': 'binary:logistic', 'max_depth': 3, 'nthread': 1}, xgb.DMatrix(x, y), 10)\n\
                  b.save_model(d + '/py.ubj')\n\
                  print(json.dumps(b.predict(xgb.DMatrix(x)).astype(float).tolist()))";
    let out = Command::new(python()).arg("-c").arg(script).arg(&dir).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();
    let ours = FittedXgb::load_model(&dir.join("py.ubj"), Some(vec![0.0, 1.0])).unwrap();
    let (p, _) = ours.raw_predict(x.view()).unwrap();
    let p: Vec<f64> = p.into_iter().map(f64::from).collect();
    assert!(max_diff(&p, &theirs) <= 1e-6);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The DMatrix builder refuses what XGBoost would take silently or answer
/// obscurely: NaN labels (naming the row), a label count that is not the row
/// count, and zero rows.
#[test]
fn bad_training_data_is_named() {
    use rask_integrations::xgboost::dmatrix;
    let (x, _, _, y) = data();
    let mut labels = y.to_vec();
    labels[3] = f64::NAN;
    let err = dmatrix(x.view(), Some(&labels), 1).err().unwrap().to_string();
    assert!(err.contains("row 3") && err.contains("NaN"), "{err}");
    let err = dmatrix(x.view(), Some(&labels[..10]), 1).err().unwrap().to_string();
    assert!(err.contains("10 labels for 600 rows"), "{err}");
    let none = x.slice(ndarray::s![..0, ..]);
    let err = dmatrix(none, None, 1).err().unwrap().to_string();
    assert!(err.contains("no rows"), "{err}");
}
