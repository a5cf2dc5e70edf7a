//! The dynamic layer's contract: serialization round trips for every registered
//! estimator, pipelines with `step__param` addressing, cross-validation, data
//! loading, and a clear error (never a panic) for every kind of bad input.

use ndarray::{array, Array1, Array2};
use rask_ml::datasets::{self, load_csv_xy, load_npy_xy, make_classification, make_regression};
use rask_ml::linear_model::LogisticRegression;
use rask_ml::model_selection::{cross_val_score, Splitter};
use rask_ml::{
    config_token, create, load, registered_estimators, save, Estimator, Kind, MlError, ParamValue,
    Pipeline,
};

fn classification() -> (Array2<f64>, Array1<f64>) {
    make_classification(240, 6, 4, 3, 11)
}

fn fitted(name: &str) -> Box<dyn Estimator> {
    let mut e = create(name).unwrap();
    // Small, fast settings where defaults would not fit the toy data.
    if name == "PCA" {
        e.set_param("n_components", ParamValue::I64(3)).unwrap();
    }
    if name == "KMeans" {
        e.set_param("n_clusters", ParamValue::I64(3)).unwrap();
    }
    if name.starts_with("RandomForest") {
        e.set_param("n_estimators", ParamValue::I64(10)).unwrap();
    }
    let (x, y) = if e.kind() == Kind::Regressor {
        let (x, y, _) = make_regression(120, 6, 4, 1.0, 3);
        (x, y)
    } else {
        classification()
    };
    if name == "OneHotEncoder" {
        let xi = x.mapv(|v| (v.round()).clamp(-2.0, 2.0));
        e.fit(xi.view(), None).unwrap();
        return e;
    }
    e.fit(x.view(), Some(y.view())).unwrap();
    e
}

fn outputs(e: &dyn Estimator) -> Vec<Array2<f64>> {
    let (x, _) = classification();
    let x =
        if e.type_name() == "OneHotEncoder" { x.mapv(|v| (v.round()).clamp(-2.0, 2.0)) } else { x };
    let mut out = Vec::new();
    if let Ok(p) = e.predict(x.view()) {
        out.push(p.insert_axis(ndarray::Axis(1)));
    }
    if let Ok(p) = e.predict_proba(x.view()) {
        out.push(p);
    }
    match e.transform(x.view()) {
        Ok(t) => out.push(t),
        Err(err) => eprintln!("{}: {err}", e.type_name()),
    }
    assert!(!out.is_empty(), "{} produced nothing", e.type_name());
    out
}

#[test]
fn every_registered_estimator_round_trips() {
    let names = registered_estimators();
    assert!(names.len() >= 18, "{names:?}");
    for name in names.iter().filter(|n| *n != "Pipeline") {
        let e = fitted(name);
        let bytes = save(e.as_ref()).unwrap();
        // "Another process": only the bytes cross, through the registry.
        let back = load(&bytes).unwrap();
        assert_eq!(back.type_name(), name.as_str());
        assert_eq!(back.get_params(), e.get_params(), "{name}");
        assert!(back.is_fitted(), "{name}");
        assert_eq!(
            outputs(back.as_ref()),
            outputs(e.as_ref()),
            "{name} predicts differently after a round trip"
        );
        // Unfitted estimators round-trip too.
        let u = load(&save(e.clone_unfitted().as_ref()).unwrap()).unwrap();
        assert!(!u.is_fitted());
        assert_eq!(config_token(u.as_ref()), config_token(e.as_ref()), "{name}");
    }
}

fn pipeline() -> Pipeline {
    Pipeline::of(vec![
        ("scale", create("StandardScaler").unwrap()),
        ("pca", create("PCA").unwrap()),
        ("logreg", create("LogisticRegression").unwrap()),
    ])
    .unwrap()
}

#[test]
fn pipeline_addresses_steps_and_round_trips() {
    let (x, y) = classification();
    let mut p = pipeline();
    p.set_param("pca__n_components", ParamValue::I64(4)).unwrap();
    p.set_param("logreg__C", ParamValue::F64(0.5)).unwrap();
    let params = p.get_params();
    assert_eq!(params["pca__n_components"], ParamValue::I64(4));
    assert_eq!(params["logreg__C"], ParamValue::F64(0.5));
    p.fit(x.view(), Some(y.view())).unwrap();
    let acc = p.score(x.view(), y.view()).unwrap();
    assert!(acc > 0.6, "{acc}");
    assert_eq!(p.classes().unwrap(), vec![0.0, 1.0, 2.0]);
    assert_eq!(p.predict_proba(x.view()).unwrap().ncols(), 3);
    let back = load(&save(&p).unwrap()).unwrap();
    assert_eq!(back.predict(x.view()).unwrap(), p.predict(x.view()).unwrap());
    // The same steps and parameters by hand give the same predictions.
    let mut scale = create("StandardScaler").unwrap();
    scale.fit(x.view(), None).unwrap();
    let xs = scale.transform(x.view()).unwrap();
    let mut pca = create("PCA").unwrap();
    pca.set_param("n_components", 4i64.into()).unwrap();
    pca.fit(xs.view(), None).unwrap();
    let xp = pca.transform(xs.view()).unwrap();
    let mut lr = create("LogisticRegression").unwrap();
    lr.set_param("C", 0.5.into()).unwrap();
    lr.fit(xp.view(), Some(y.view())).unwrap();
    assert_eq!(lr.predict(xp.view()).unwrap(), p.predict(x.view()).unwrap());
    // Changing a parameter invalidates the fitted state downstream.
    p.set_param("pca__n_components", ParamValue::I64(2)).unwrap();
    assert!(!p.is_fitted());
}

#[test]
fn pipeline_rejects_bad_structure_and_names() {
    let err = Pipeline::of(vec![
        ("lr", create("LogisticRegression").unwrap()),
        ("pca", create("PCA").unwrap()),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a transformer"), "{err}");
    let err = Pipeline::of(vec![("a", create("PCA").unwrap()), ("a", create("PCA").unwrap())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("used twice"), "{err}");
    let mut p = pipeline();
    let err = p.set_param("nope__C", 1.0.into()).unwrap_err().to_string();
    assert!(err.contains("unknown parameter `nope__C`") && err.contains("logreg__C"), "{err}");
    let err = p.set_param("logreg__C", (-1.0).into()).unwrap_err().to_string();
    assert!(
        err.contains("LogisticRegression")
            && err.contains("`C`")
            && err.contains("-1")
            && err.contains("positive"),
        "{err}"
    );
}

#[test]
fn cross_val_score_fits_fresh_copies() {
    let (x, y) = classification();
    let scores =
        cross_val_score(&pipeline(), x.view(), y.view(), &Splitter::stratified(4), "accuracy")
            .unwrap();
    assert_eq!(scores.len(), 4);
    assert!(scores.iter().all(|s| (0.4..=1.0).contains(s)), "{scores:?}");
    let err = cross_val_score(&pipeline(), x.view(), y.view(), &Splitter::kfold(4), "accuracyy")
        .unwrap_err();
    assert!(err.to_string().contains("unknown scorer `accuracyy`"), "{err}");
    let lr = LogisticRegression::new();
    let s = cross_val_score(&lr, x.view(), y.view(), &Splitter::kfold(3), "neg_log_loss").unwrap();
    assert!(s.iter().all(|v| *v < 0.0));
}

#[test]
fn bad_input_gives_clear_errors() {
    let (x, y) = classification();
    let mut lr = LogisticRegression::new();
    // X and y of different lengths.
    let short = y.slice(ndarray::s![..10]).to_owned();
    let err = lr.fit(x.view(), Some(short.view())).unwrap_err();
    assert!(
        matches!(err, MlError::Shape { .. })
            && err.to_string().contains("240 samples but y has 10"),
        "{err}"
    );
    // NaN and infinity in X.
    let mut bad = x.clone();
    bad[[7, 2]] = f64::NAN;
    let err = lr.fit(bad.view(), Some(y.view())).unwrap_err().to_string();
    assert!(err.contains("NaN") && err.contains("row 7") && err.contains("column 2"), "{err}");
    bad[[7, 2]] = f64::INFINITY;
    assert!(lr.fit(bad.view(), Some(y.view())).unwrap_err().to_string().contains("inf"));
    // Predicting before fit.
    let err = lr.predict(x.view()).unwrap_err();
    assert!(
        matches!(err, MlError::NotFitted { .. }) && err.to_string().contains("before `fit`"),
        "{err}"
    );
    // Wrong feature count at predict.
    lr.fit(x.view(), Some(y.view())).unwrap();
    let narrow = x.slice(ndarray::s![.., ..4]).to_owned();
    let err = lr.predict(narrow.view()).unwrap_err().to_string();
    assert!(err.contains("X has 4 features") && err.contains("fitted with 6"), "{err}");
    // Unknown parameter name.
    let err = lr.set_param("alpha", 1.0.into()).unwrap_err().to_string();
    assert!(err.contains("unknown parameter `alpha`") && err.contains("C"), "{err}");
    // Out-of-range and wrongly typed values, on several estimators.
    for (name, param, value, expect) in [
        ("LogisticRegression", "C", ParamValue::F64(0.0), "positive"),
        ("LogisticRegression", "max_iter", ParamValue::I64(0), ">= 1"),
        ("PCA", "n_components", ParamValue::I64(0), ">= 1"),
        ("KMeans", "n_clusters", ParamValue::Str("three".into()), ">= 1"),
        ("ElasticNet", "l1_ratio", ParamValue::F64(1.5), "[0, 1]"),
        ("SVC", "kernel", ParamValue::Str("precomputed".into()), "\"poly\" or \"sigmoid\""),
        ("SVC", "gamma", ParamValue::Str("wide".into()), "\"scale\", \"auto\""),
        ("RandomForestClassifier", "max_features", ParamValue::F64(1.5), "(0, 1]"),
        ("DecisionTreeClassifier", "criterion", ParamValue::Str("mse".into()), "gini"),
        ("KNeighborsClassifier", "n_neighbors", ParamValue::I64(-3), ">= 1"),
    ] {
        let mut e = create(name).unwrap();
        let err = e.set_param(param, value.clone()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, MlError::InvalidParam { .. }), "{text}");
        assert!(text.contains(name) && text.contains(param) && text.contains(expect), "{text}");
    }
    // Values valid alone but not for the data: reported at fit.
    let mut pca = create("PCA").unwrap();
    pca.set_param("n_components", ParamValue::I64(50)).unwrap();
    let err = pca.fit(x.view(), None).unwrap_err().to_string();
    assert!(err.contains("n_components") && err.contains("at most"), "{err}");
    // One class only; continuous labels for a classifier.
    let ones = Array1::ones(x.nrows());
    assert!(lr
        .fit(x.view(), Some(ones.view()))
        .unwrap_err()
        .to_string()
        .contains("at least 2 classes"));
    let cont = y.mapv(|v| v + 0.5);
    assert!(lr
        .fit(x.view(), Some(cont.view()))
        .unwrap_err()
        .to_string()
        .contains("must be integers"));
    // Methods a model does not have.
    let mut ridge = create("Ridge").unwrap();
    let (xr, yr, _) = make_regression(50, 3, 3, 1.0, 1);
    ridge.fit(xr.view(), Some(yr.view())).unwrap();
    assert!(matches!(ridge.predict_proba(xr.view()), Err(MlError::NotSupported { .. })));
    // Empty data.
    let empty = Array2::<f64>::zeros((0, 3));
    assert!(ridge
        .fit(empty.view(), Some(Array1::zeros(0).view()))
        .unwrap_err()
        .to_string()
        .contains("at least one sample"));
    // Unknown estimator and corrupt saved bytes.
    let err = create("LogisticRegresion").unwrap_err().to_string();
    assert!(err.contains("LogisticRegresion") && err.contains("LogisticRegression"), "{err}");
    assert!(load(b"garbage").unwrap_err().to_string().contains("magic"));
    let mut bytes = save(&lr).unwrap();
    bytes.truncate(bytes.len() / 2);
    assert!(matches!(load(&bytes), Err(MlError::Serialization { .. })));
    // Splitters that cannot split.
    assert!(Splitter::kfold(1).split(10, None).unwrap_err().to_string().contains("at least 2"));
    assert!(Splitter::kfold(20)
        .split(10, None)
        .unwrap_err()
        .to_string()
        .contains("cannot split 10 samples"));
    assert!(Splitter::stratified(3).split(10, None).unwrap_err().to_string().contains("needs y"));
}

fn write_npy(path: &std::path::Path, descr: &str, shape: &[usize], body: &[u8]) {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        s => format!("({})", s.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(body);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn datasets_load_npy_and_csv_with_clear_errors() {
    let dir = std::env::temp_dir().join(format!("rask-ml-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let xs: Vec<u8> =
        [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let ys: Vec<u8> = [0i64, 1, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&dir.join("X.npy"), "<f8", &[3, 2], &xs);
    write_npy(&dir.join("y.npy"), "<i8", &[3], &ys);
    let (x, y) = load_npy_xy(dir.join("X.npy"), dir.join("y.npy")).unwrap();
    assert_eq!(x, array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]);
    assert_eq!(y, array![0.0, 1.0, 1.0]);
    // Truncated file, wrong dtype, missing file, mismatched lengths.
    write_npy(&dir.join("T.npy"), "<f8", &[3, 2], &xs[..40]);
    let err = datasets::read_npy(dir.join("T.npy")).unwrap_err().to_string();
    assert!(err.contains("T.npy") && err.contains("truncated"), "{err}");
    write_npy(&dir.join("C.npy"), "<c16", &[1], &[0u8; 16]);
    assert!(datasets::read_npy(dir.join("C.npy"))
        .unwrap_err()
        .to_string()
        .contains("not supported"));
    assert!(datasets::read_npy(dir.join("none.npy"))
        .unwrap_err()
        .to_string()
        .contains("cannot read"));
    write_npy(&dir.join("y2.npy"), "<i8", &[2], &ys[..16]);
    assert!(load_npy_xy(dir.join("X.npy"), dir.join("y2.npy"))
        .unwrap_err()
        .to_string()
        .contains("y has 2 rows"));

    std::fs::write(dir.join("d.csv"), "a,target,b\n1,0,2.5\n3,1,-4\n").unwrap();
    let (x, y, names) = load_csv_xy(dir.join("d.csv"), "target").unwrap();
    assert_eq!(x, array![[1.0, 2.5], [3.0, -4.0]]);
    assert_eq!(y, array![0.0, 1.0]);
    assert_eq!(names, vec!["a", "b"]);
    let err = load_csv_xy(dir.join("d.csv"), "label").unwrap_err().to_string();
    assert!(err.contains("no column named \"label\"") && err.contains("a, target, b"), "{err}");
    std::fs::write(dir.join("bad.csv"), "a,target\n1,0\nx,1\n").unwrap();
    let err = load_csv_xy(dir.join("bad.csv"), "target").unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("\"x\" is not a number"), "{err}");
    std::fs::write(dir.join("ragged.csv"), "a,target\n1,0,9\n").unwrap();
    assert!(load_csv_xy(dir.join("ragged.csv"), "target")
        .unwrap_err()
        .to_string()
        .contains("3 fields"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn logistic_regression_positive_class_is_the_larger_label() {
    // linfa takes the more frequent class as positive; the adapter must still
    // report probabilities of classes[1] in column 1. Make class 0 the majority.
    let (x, y) = make_classification(600, 4, 3, 2, 21);
    let keep: Vec<usize> = (0..x.nrows()).filter(|&i| y[i] == 0.0 || i % 3 == 0).collect();
    let (x, y) = (x.select(ndarray::Axis(0), &keep), y.select(ndarray::Axis(0), &keep));
    assert!(y.iter().filter(|v| **v == 0.0).count() > 2 * y.iter().filter(|v| **v == 1.0).count());
    let mut lr = LogisticRegression::new();
    lr.fit(x.view(), Some(y.view())).unwrap();
    let p = lr.predict_proba(x.view()).unwrap();
    let mean_p1_pos: f64 = (0..y.len()).filter(|&i| y[i] == 1.0).map(|i| p[[i, 1]]).sum::<f64>()
        / y.iter().filter(|v| **v == 1.0).count() as f64;
    assert!(mean_p1_pos > 0.6, "P(class 1) of class-1 samples is {mean_p1_pos}");
    assert!(lr.score(x.view(), y.view()).unwrap() > 0.8);
}

#[test]
fn generators_are_seeded() {
    let (x1, y1) = make_classification(100, 5, 3, 2, 9);
    let (x2, y2) = make_classification(100, 5, 3, 2, 9);
    assert_eq!((x1.clone(), y1.clone()), (x2, y2));
    assert_ne!(make_classification(100, 5, 3, 2, 10).0, x1);
    assert!(y1.iter().all(|v| *v == 0.0 || *v == 1.0));
    let (x, y, w) = make_regression(50, 4, 2, 0.0, 1);
    assert!((x.dot(&w) - &y).iter().all(|d| d.abs() < 1e-9));
    assert_eq!(w[3], 0.0);
}
