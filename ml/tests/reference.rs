//! Reference-value tests against scikit-learn 1.9.1.
//!
//! Inputs and scikit-learn's outputs come from `tests/fixtures/ml/reference.json`,
//! made by `tests/fixtures/ml/make_fixtures.py`. Each test states its tolerance.

use std::sync::OnceLock;

use ndarray::{s, Array1, Array2};
use rask_ml::cluster::{KMeans, KMeansParams};
use rask_ml::decomposition::{PcaParams, PCA};
use rask_ml::linear_model::*;
use rask_ml::metrics::{self, Average};
use rask_ml::model_selection::Splitter;
use rask_ml::naive_bayes::GaussianNB;
use rask_ml::neighbors::{KNeighborsClassifier, KNeighborsParams};
use rask_ml::preprocessing::*;
use rask_ml::svm::{Gamma, LinearSVC, LinearSvcParams, SvcParams, SVC};
use rask_ml::tree::{
    DecisionTreeClassifier, DecisionTreeParams, DecisionTreeRegressor, DecisionTreeRegressorParams,
    ForestClassifierParams, RandomForestClassifier, RandomForestRegressor,
};
use rask_ml::{Estimator, ParamValue};
use serde_json::Value;

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ml/reference.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture file"))
            .expect("fixture JSON")
    })
}

fn arr1(v: &Value) -> Array1<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn arr2(v: &Value) -> Array2<f64> {
    let rows: Vec<Array1<f64>> = v.as_array().expect("array").iter().map(arr1).collect();
    let (n, m) = (rows.len(), rows[0].len());
    Array2::from_shape_fn((n, m), |(i, j)| rows[i][j])
}

fn num(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

/// (X_train, y_train, X_test, y_test) of a fixture data set.
fn data(name: &str, n_train: usize) -> (Array2<f64>, Array1<f64>, Array2<f64>, Array1<f64>) {
    let d = &fixture()[name];
    let (x, y) = (arr2(&d["X"]), arr1(&d["y"]));
    (
        x.slice(s![..n_train, ..]).to_owned(),
        y.slice(s![..n_train]).to_owned(),
        x.slice(s![n_train.., ..]).to_owned(),
        y.slice(s![n_train..]).to_owned(),
    )
}

fn model(name: &str) -> &'static Value {
    &fixture()["models"][name]
}

fn max_abs_diff<D: ndarray::Dimension>(
    a: &ndarray::Array<f64, D>,
    b: &ndarray::Array<f64, D>,
) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn fit(est: &mut dyn Estimator, x: &Array2<f64>, y: &Array1<f64>) {
    est.fit(x.view(), Some(y.view())).unwrap();
}

#[test]
fn logistic_regression_binary_matches_sklearn() {
    // Same optimum: at tol 1e-10, probabilities within 1e-6 of scikit-learn's
    // tight solution (tol 1e-12) and 1e-3 of its default-tol one;
    // training log-loss within 1e-6 relative of the tight one, 1e-4 of the default one.
    let (xt, yt, xs, _) = data("binary", 200);
    let r = model("logreg_binary");
    let mut m = LogisticRegression::with_params(
        LogisticRegressionParams::default().c(num(&r["C"])).tol(1e-10),
    );
    fit(&mut m, &xt, &yt);
    let p = m.predict_proba(xs.view()).unwrap();
    let d = max_abs_diff(&p, &arr2(&r["proba_test_tight"]));
    assert!(d < 1e-6, "proba differ from the tight optimum by {d}");
    assert!(max_abs_diff(&p, &arr2(&r["proba_test"])) < 1e-3);
    let coef = m.fitted().unwrap().coef.row(0).to_owned();
    assert!(max_abs_diff(&coef, &arr1(&r["coef_tight"])) < 1e-5);
    let ll = metrics::log_loss(yt.view(), m.predict_proba(xt.view()).unwrap().view(), &[0.0, 1.0])
        .unwrap();
    let tight = num(&r["train_logloss_tight"]);
    assert!(((ll - tight) / tight).abs() < 1e-6, "{ll} vs {tight}");
    let default_tol = num(&r["train_logloss"]);
    assert!(((ll - default_tol) / default_tol).abs() < 1e-4, "{ll} vs {default_tol}");
}

#[test]
fn logistic_regression_multinomial_matches_sklearn() {
    // Multinomial (softmax) with the same penalty; probabilities within 1e-6 of
    // scikit-learn's tight solution, 1e-3 of its default-tol one.
    let (xt, yt, xs, _) = data("multi", 200);
    let r = model("logreg_multi");
    let mut m = LogisticRegression::with_params(
        LogisticRegressionParams::default().c(num(&r["C"])).max_iter(1000).tol(1e-10),
    );
    fit(&mut m, &xt, &yt);
    let p = m.predict_proba(xs.view()).unwrap();
    let d = max_abs_diff(&p, &arr2(&r["proba_test_tight"]));
    assert!(d < 1e-6, "proba differ from the tight optimum by {d}");
    assert!(max_abs_diff(&p, &arr2(&r["proba_test"])) < 1e-3);
    assert_eq!(m.classes().unwrap(), vec![0.0, 1.0, 2.0]);
}

#[test]
fn linear_models_match_sklearn() {
    let (xt, yt, xs, _) = data("regression", 150);
    // Exact least squares: 1e-8.
    let mut m = LinearRegression::new();
    fit(&mut m, &xt, &yt);
    let f = m.fitted().unwrap();
    assert!(max_abs_diff(&f.coef, &arr1(&model("linear")["coef"])) < 1e-8);
    assert!((f.intercept - num(&model("linear")["intercept"])).abs() < 1e-8);
    assert!(
        max_abs_diff(&m.predict(xs.view()).unwrap(), &arr1(&model("linear")["pred_test"])) < 1e-7
    );
    // Ridge: Cholesky on both sides: 1e-8.
    let mut m = Ridge::with_params(RidgeParams::default().alpha(num(&model("ridge")["alpha"])));
    fit(&mut m, &xt, &yt);
    let f = m.fitted().unwrap();
    assert!(max_abs_diff(&f.coef, &arr1(&model("ridge")["coef"])) < 1e-8, "{:?}", f.coef);
    assert!((f.intercept - num(&model("ridge")["intercept"])).abs() < 1e-8);
    // Lasso / elastic net: scikit-learn's coordinate descent and stopping
    // rule (on the Gram matrix here, on X there): the same iterates, 1e-8.
    let mut m = Lasso::with_params(LassoParams::default().alpha(num(&model("lasso")["alpha"])));
    fit(&mut m, &xt, &yt);
    assert!(max_abs_diff(&m.fitted().unwrap().coef, &arr1(&model("lasso")["coef"])) < 1e-8);
    let r = model("elasticnet");
    let mut m = ElasticNet::with_params(
        ElasticNetParams::default().alpha(num(&r["alpha"])).l1_ratio(num(&r["l1_ratio"])),
    );
    fit(&mut m, &xt, &yt);
    assert!(max_abs_diff(&m.fitted().unwrap().coef, &arr1(&r["coef"])) < 1e-8);
    assert!((m.fitted().unwrap().intercept - num(&r["intercept"])).abs() < 1e-8);
}

#[test]
fn scalers_match_sklearn() {
    // Closed-form statistics: 1e-10 (1e-12 on the small constant-column case).
    let (xt, _, xs, _) = data("binary", 200);
    let mut m = StandardScaler::new();
    m.fit(xt.view(), None).unwrap();
    assert!(
        max_abs_diff(&m.transform(xs.view()).unwrap(), &arr2(&model("standard_scaler")["test"]))
            < 1e-10
    );
    let mut m = MinMaxScaler::with_params(
        MinMaxScalerParams::default().feature_range_min(-1.0).feature_range_max(2.0),
    );
    m.fit(xt.view(), None).unwrap();
    assert!(
        max_abs_diff(&m.transform(xs.view()).unwrap(), &arr2(&model("minmax_scaler")["test"]))
            < 1e-10
    );
    // A constant column: centered, not scaled (scikit-learn's constant-feature rule).
    let r = model("scalers_constant_column");
    let x = arr2(&r["X"]);
    let mut m = StandardScaler::new();
    m.fit(x.view(), None).unwrap();
    assert!(max_abs_diff(&m.transform(x.view()).unwrap(), &arr2(&r["standard"])) < 1e-12);
    let mut m = MinMaxScaler::new();
    m.fit(x.view(), None).unwrap();
    assert!(max_abs_diff(&m.transform(x.view()).unwrap(), &arr2(&r["minmax"])) < 1e-12);
}

#[test]
fn pca_matches_sklearn() {
    // Same covariance eigendecomposition and sign convention: 1e-8.
    let (xt, _, xs, _) = data("binary", 200);
    let r = model("pca");
    let mut m = PCA::with_params(PcaParams::default().n_components(Some(3)));
    m.fit(xt.view(), None).unwrap();
    let f = m.fitted().unwrap();
    assert!(max_abs_diff(&f.components, &arr2(&r["components"])) < 1e-8);
    assert!(max_abs_diff(&f.explained_variance, &arr1(&r["explained_variance"])) < 1e-8);
    assert!(
        max_abs_diff(&f.explained_variance_ratio, &arr1(&r["explained_variance_ratio"])) < 1e-10
    );
    assert!(max_abs_diff(&m.transform(xs.view()).unwrap(), &arr2(&r["test"])) < 1e-8);
    let mut w = PCA::with_params(PcaParams::default().n_components(Some(2)).whiten(true));
    w.fit(xt.view(), None).unwrap();
    assert!(
        max_abs_diff(&w.transform(xs.view()).unwrap(), &arr2(&model("pca_whiten")["test"])) < 1e-8
    );
}

#[test]
fn encoders_match_sklearn_exactly() {
    let r = model("onehot");
    let mut m = OneHotEncoder::new();
    m.fit(arr2(&r["X"]).view(), None).unwrap();
    let t = m.transform(ndarray::array![[2.0, 3.0], [0.0, 0.0]].view()).unwrap();
    assert_eq!(t, arr2(&r["test"]));
    let err = m.transform(ndarray::array![[5.0, 1.0]].view()).unwrap_err().to_string();
    assert!(err.contains("unknown category 5") && err.contains("handle_unknown"), "{err}");
    let r = model("poly");
    let x = arr2(&r["X"]);
    let mut p = PolynomialFeatures::new();
    p.fit(x.view(), None).unwrap();
    assert!(max_abs_diff(&p.transform(x.view()).unwrap(), &arr2(&r["deg2"])) < 1e-14);
    let mut p = PolynomialFeatures::with_params(
        PolynomialFeaturesParams::default().degree(3).interaction_only(true).include_bias(false),
    );
    p.fit(x.view(), None).unwrap();
    assert!(
        max_abs_diff(&p.transform(x.view()).unwrap(), &arr2(&r["deg3_interaction_nobias"])) < 1e-14
    );
}

#[test]
fn gaussian_nb_matches_sklearn() {
    // Closed-form model: probabilities within 1e-9, identical predictions.
    let (xt, yt, xs, _) = data("multi", 200);
    let mut m = GaussianNB::new();
    fit(&mut m, &xt, &yt);
    let d = max_abs_diff(
        &m.predict_proba(xs.view()).unwrap(),
        &arr2(&model("gaussian_nb")["proba_test"]),
    );
    assert!(d < 1e-9, "{d}");
    assert_eq!(m.predict(xs.view()).unwrap(), arr1(&model("gaussian_nb")["pred_test"]));
}

#[test]
fn knn_matches_sklearn_exactly() {
    let (xt, yt, xs, _) = data("multi", 200);
    let mut m = KNeighborsClassifier::new();
    fit(&mut m, &xt, &yt);
    assert_eq!(m.predict(xs.view()).unwrap(), arr1(&model("knn")["pred_test"]));
    assert!(
        max_abs_diff(&m.predict_proba(xs.view()).unwrap(), &arr2(&model("knn")["proba_test"]))
            < 1e-15
    );
    let (xt, yt, xs, _) = data("binary", 200);
    let mut m = KNeighborsClassifier::with_params(
        KNeighborsParams::default().n_neighbors(7).weights("distance".into()),
    );
    fit(&mut m, &xt, &yt);
    assert_eq!(m.predict(xs.view()).unwrap(), arr1(&model("knn_distance")["pred_test"]));
}

/// Fits an SVC and compares it with a scikit-learn fixture: the same support
/// vectors, decision values within `tol`, the same predictions; returns the
/// iterations per machine.
fn check_svc(
    params: SvcParams,
    data_name: &str,
    n_train: usize,
    r: &Value,
    tol: f64,
) -> Vec<usize> {
    let (xt, yt, xs, _) = data(data_name, n_train);
    let mut m = SVC::with_params(params);
    fit(&mut m, &xt, &yt);
    let f = m.fitted().unwrap();
    let support: Vec<usize> = arr1(&r["support"]).iter().map(|&i| i as usize).collect();
    let mut got = f.support().to_vec();
    let mut want = support.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "support vectors");
    let d = f.decision_function(xs.view());
    let want = &r["decision_test"];
    let want =
        if want[0].is_array() { arr2(want) } else { arr1(want).insert_axis(ndarray::Axis(1)) };
    let diff = max_abs_diff(&d, &want);
    assert!(diff <= tol, "decision values differ by {diff}");
    assert_eq!(m.predict(xs.view()).unwrap(), arr1(&r["pred_test"]));
    f.n_iter.clone()
}

#[test]
fn svc_is_libsvms() {
    // libsvm's solver step for step: the same iterations (scikit-learn's
    // n_iter_), support vectors and predictions; decision values within 1e-3
    // at the default tol (the solvers stop at the same point, differing only
    // in rounding), 1e-6 at tol=1e-10.
    let iters = check_svc(SvcParams::default(), "binary", 200, model("svc_rbf"), 1e-3);
    assert_eq!(iters, vec![num(&model("svc_rbf")["n_iter"][0]) as usize]);
    check_svc(SvcParams::default().tol(1e-10), "binary", 200, model("svc_rbf_tight"), 1e-6);
    let r = model("svc_rbf_multi");
    let iters = check_svc(SvcParams::default(), "multi", 200, r, 1e-3);
    let want: Vec<usize> = arr1(&r["n_iter"]).iter().map(|&v| v as usize).collect();
    assert_eq!(iters, want);
    let k = &model("svc_kernels");
    let tight = || SvcParams::default().tol(1e-10);
    check_svc(tight().c(0.5).kernel("linear".into()), "binary", 200, &k["linear"], 1e-6);
    let poly = tight().c(2.0).kernel("poly".into()).degree(2).gamma(Gamma::Auto).coef0(1.0);
    check_svc(poly, "binary", 200, &k["poly"], 1e-6);
    let sigmoid = tight().kernel("sigmoid".into()).gamma(Gamma::Value(0.05)).coef0(-1.0);
    check_svc(sigmoid, "binary", 200, &k["sigmoid"], 1e-6);
}

#[test]
fn linear_svc_is_liblinears() {
    // LinearSVC: liblinear's problem (squared hinge, regularized intercept)
    // and stopping rule; Newton with a line search here, its trust-region
    // Newton there. At tol 1e-10
    // the coefficients are within 1e-6 of scikit-learn's tight solution;
    // at the defaults (tol 1e-4 on different criteria) within 1e-3, with
    // the same predictions.
    let (xt, yt, xs, ys) = data("binary", 200);
    let r = model("linear_svc");
    let mut tight = LinearSVC::with_params(LinearSvcParams::default().tol(1e-10).max_iter(100_000));
    fit(&mut tight, &xt, &yt);
    let d = max_abs_diff(&tight.fitted().unwrap().coef, &arr2(&r["tight_coef"]));
    assert!(d < 1e-6, "tight coefficients differ by {d}");
    let mut m = LinearSVC::new();
    fit(&mut m, &xt, &yt);
    let f = m.fitted().unwrap();
    assert!(max_abs_diff(&f.coef, &arr2(&r["coef"])) < 1e-3);
    assert!(max_abs_diff(&f.intercept, &arr1(&r["intercept"])) < 1e-3);
    let p = m.predict(xs.view()).unwrap();
    assert_eq!(p, arr1(&r["pred_test"]));
    assert!((metrics::accuracy(ys.view(), p.view()) - num(&r["test_accuracy"])).abs() < 1e-12);
    // One-vs-rest on three classes (C = 0.5).
    let (xt, yt, xs, _) = data("multi", 200);
    let r = model("linear_svc_multi");
    let mut m = LinearSVC::with_params(LinearSvcParams::default().c(0.5));
    fit(&mut m, &xt, &yt);
    let f = m.fitted().unwrap();
    assert!(max_abs_diff(&f.coef, &arr2(&r["coef"])) < 1e-3, "{}", f.coef);
    assert!(max_abs_diff(&f.intercept, &arr1(&r["intercept"])) < 1e-3);
    assert_eq!(m.predict(xs.view()).unwrap(), arr1(&r["pred_test"]));
}

/// The nodes of a scikit-learn tree fixture as `(feature, threshold)`, `None` for leaves.
fn sklearn_splits(r: &Value) -> Vec<Option<(usize, f64)>> {
    let (f, t) = (arr1(&r["feature"]), arr1(&r["threshold"]));
    f.iter().zip(t.iter()).map(|(&f, &t)| (f >= 0.0).then_some((f as usize, t))).collect()
}

fn assert_same_tree(got: &[Option<(usize, f64)>], want: &[Option<(usize, f64)>]) {
    assert_eq!(got.len(), want.len(), "node count: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (None, None) => {}
            // Thresholds are midpoints of the same two values: equal to rounding.
            (Some((gf, gt)), Some((wf, wt))) if gf == wf && (gt - wt).abs() <= 1e-12 => {}
            _ => panic!("node {i}: {g:?} vs scikit-learn's {w:?}"),
        }
    }
}

#[test]
fn shallow_trees_equal_sklearns() {
    // Near the root no two splits tie, so the trees are scikit-learn's node for
    // node; leaf proportions and predictions within 1e-12.
    let (xt, yt, xs, _) = data("multi", 200);
    let mut m =
        DecisionTreeClassifier::with_params(DecisionTreeParams::default().max_depth(Some(3)));
    fit(&mut m, &xt, &yt);
    let r = model("tree_depth3");
    assert_same_tree(&m.fitted().unwrap().splits(), &sklearn_splits(r));
    assert!(max_abs_diff(&m.predict_proba(xs.view()).unwrap(), &arr2(&r["proba_test"])) < 1e-12);

    let mut m = DecisionTreeClassifier::with_params(
        DecisionTreeParams::default()
            .max_depth(Some(3))
            .criterion("entropy".into())
            .min_samples_leaf(5),
    );
    fit(&mut m, &xt, &yt);
    let r = model("tree_entropy_leaf5");
    assert_same_tree(&m.fitted().unwrap().splits(), &sklearn_splits(r));
    assert_eq!(m.predict(xs.view()).unwrap(), arr1(&r["pred_test"]));

    let (xt, yt, xs, _) = data("regression", 150);
    let mut m = DecisionTreeRegressor::with_params(
        DecisionTreeRegressorParams::default().max_depth(Some(3)),
    );
    fit(&mut m, &xt, &yt);
    let r = model("tree_regressor_depth3");
    assert_same_tree(&m.fitted().unwrap().splits(), &sklearn_splits(r));
    assert!(max_abs_diff(&m.predict(xs.view()).unwrap(), &arr1(&r["pred_test"])) < 1e-9);
}

/// Whether `score` lies within `tol` of the range scikit-learn reaches over its seeds.
fn within_seed_spread(score: f64, seeds: &Value, tol: f64) -> bool {
    let s = arr1(seeds);
    let (lo, hi) =
        (s.fold(f64::INFINITY, |a, &b| a.min(b)), s.fold(f64::NEG_INFINITY, |a, &b| a.max(b)));
    score >= lo - tol && score <= hi + tol
}

#[test]
fn full_trees_and_forests_score_like_sklearn() {
    // Full-depth trees and forests depend on the random stream (tie order,
    // bootstrap, feature draws), and scikit-learn's own scores move with its
    // seed: Rask's score lies within 0.01 of the range over ten sklearn seeds.
    let (xt, yt, xs, ys) = data("multi", 200);
    let mut m = DecisionTreeClassifier::new();
    fit(&mut m, &xt, &yt);
    let acc = m.score(xs.view(), ys.view()).unwrap();
    assert!(within_seed_spread(acc, &model("tree")["test_accuracy_seeds"], 0.01), "{acc}");
    let mut m = RandomForestClassifier::new();
    fit(&mut m, &xt, &yt);
    let acc = m.score(xs.view(), ys.view()).unwrap();
    assert!(within_seed_spread(acc, &model("forest")["test_accuracy_seeds"], 0.01), "{acc}");
    let (xt, yt, xs, ys) = data("regression", 150);
    let mut m = RandomForestRegressor::new();
    fit(&mut m, &xt, &yt);
    let r2 = m.score(xs.view(), ys.view()).unwrap();
    assert!(within_seed_spread(r2, &model("forest_regressor")["test_r2_seeds"], 0.01), "{r2}");
}

#[test]
fn forests_do_not_depend_on_n_jobs() {
    // Each tree's stream depends on (random_state, tree index) only.
    let (xt, yt, xs, _) = data("multi", 200);
    let mut one = RandomForestClassifier::with_params(
        ForestClassifierParams::default().n_estimators(20).n_jobs(Some(1)),
    );
    let mut two = RandomForestClassifier::with_params(
        ForestClassifierParams::default().n_estimators(20).n_jobs(Some(2)),
    );
    fit(&mut one, &xt, &yt);
    fit(&mut two, &xt, &yt);
    assert_eq!(one.predict_proba(xs.view()).unwrap(), two.predict_proba(xs.view()).unwrap());
}

#[test]
fn kmeans_finds_sklearns_optimum() {
    // Well-separated blobs: both reach the same optimum; inertia within 1e-9 relative.
    let x = arr2(&fixture()["blobs"]["X"]);
    let mut m = KMeans::with_params(KMeansParams::default().n_clusters(3));
    m.fit(x.view(), None).unwrap();
    let inertia = m.fitted().unwrap().inertia;
    let want = num(&model("kmeans")["inertia"]);
    assert!(((inertia - want) / want).abs() < 1e-9, "{inertia} vs {want}");
    let y = Array1::zeros(x.nrows());
    assert!((m.score(x.view(), y.view()).unwrap() + inertia).abs() < 1e-9);
}

#[test]
fn metrics_match_sklearn_to_1e12() {
    let m = &fixture()["metrics"];
    let (yt, yp, score) = (arr1(&m["y_true"]), arr1(&m["y_pred"]), arr1(&m["score"]));
    let (ytm, ypm, pm) =
        (arr1(&m["y_true_multi"]), arr1(&m["y_pred_multi"]), arr2(&m["proba_multi"]));
    let close = |a: f64, key: &str| {
        let b = num(&m[key]);
        assert!((a - b).abs() <= 1e-12, "{key}: {a} vs {b}");
    };
    close(metrics::accuracy(yt.view(), yp.view()), "accuracy");
    close(metrics::balanced_accuracy(ytm.view(), ypm.view()), "balanced_accuracy_multi");
    let (p, r, f) =
        metrics::precision_recall_f1(yt.view(), yp.view(), Average::Binary { pos_label: 1.0 });
    close(p, "precision");
    close(r, "recall");
    close(f, "f1");
    for (avg, name) in
        [(Average::Macro, "macro"), (Average::Weighted, "weighted"), (Average::Micro, "micro")]
    {
        let (p, r, f) = metrics::precision_recall_f1(ytm.view(), ypm.view(), avg);
        close(p, &format!("precision_{name}"));
        close(r, &format!("recall_{name}"));
        close(f, &format!("f1_{name}"));
    }
    close(metrics::roc_auc(yt.view(), score.view()).unwrap(), "roc_auc");
    let pb = ndarray::stack![ndarray::Axis(1), score.mapv(|s| 1.0 - s), score];
    close(metrics::log_loss(yt.view(), pb.view(), &[0.0, 1.0]).unwrap(), "log_loss_binary");
    close(metrics::log_loss(ytm.view(), pm.view(), &[0.0, 1.0, 2.0]).unwrap(), "log_loss_multi");
    let (rt, rp) = (arr1(&m["reg_true"]), arr1(&m["reg_pred"]));
    close(metrics::r2(rt.view(), rp.view()), "r2");
    close(metrics::mean_squared_error(rt.view(), rp.view()), "mse");
    close(metrics::mean_absolute_error(rt.view(), rp.view()), "mae");
}

fn expect_splits(got: Vec<(Vec<usize>, Vec<usize>)>, want: &Value) {
    let want = want.as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for ((tr, te), w) in got.iter().zip(want) {
        let idx = |v: &Value| {
            v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect::<Vec<_>>()
        };
        assert_eq!(tr, &idx(&w["train"]));
        assert_eq!(te, &idx(&w["test"]));
    }
}

#[test]
fn splits_are_index_identical_to_sklearn() {
    let s = &fixture()["splits"];
    let ys = arr1(&s["y_strat"]);
    expect_splits(Splitter::kfold(5).split(23, None).unwrap(), &s["kfold_5_n23"]);
    let kf = |k, rs| Splitter::KFold { n_splits: k, shuffle: true, random_state: Some(rs) };
    expect_splits(kf(5, 0).split(23, None).unwrap(), &s["kfold_5_shuffle_rs0_n23"]);
    expect_splits(kf(4, 123).split(1000, None).unwrap(), &s["kfold_4_shuffle_rs123_n1000"]);
    expect_splits(Splitter::stratified(3).split(30, Some(ys.view())).unwrap(), &s["stratified_3"]);
    let sk = Splitter::StratifiedKFold { n_splits: 3, shuffle: true, random_state: Some(42) };
    expect_splits(sk.split(30, Some(ys.view())).unwrap(), &s["stratified_3_shuffle_rs42"]);
    let ss = Splitter::ShuffleSplit {
        n_splits: 4,
        test_size: 0.25,
        train_size: None,
        random_state: Some(7),
    };
    expect_splits(ss.split(20, None).unwrap(), &s["shufflesplit_4_t025_rs7_n20"]);
}

#[test]
fn params_by_name_round_trip() {
    let mut m = LogisticRegression::new();
    m.set_param("C", ParamValue::F64(0.25)).unwrap();
    assert_eq!(m.get_params()["C"], ParamValue::F64(0.25));
    assert_eq!(m.params.c, 0.25);
}

/// Defaults that differ from scikit-learn's on purpose, each stated in
/// `ml/README.md`: `(estimator or "*", parameter)`.
const DOCUMENTED_DEFAULTS: &[(&str, &str)] = &[
    // Seeded with 0, not unseeded: search caches fits by their parameters'
    // content, so a fit must be a function of its parameters.
    ("*", "random_state"),
    // scikit-learn's "auto" means one run for k-means++ initialization, the
    // only initialization Rask has: the same as 1.
    ("KMeans", "n_init"),
];

fn same_value(rask: &ParamValue, sklearn: &Value) -> bool {
    match (rask, sklearn) {
        (ParamValue::None, Value::Null) => true,
        (ParamValue::Bool(a), Value::Bool(b)) => a == b,
        (ParamValue::Str(a), Value::String(b)) => a == b,
        (v, Value::Number(n)) => v.as_f64() == n.as_f64(),
        _ => false,
    }
}

#[test]
fn defaults_are_sklearns() {
    // Every registered estimator's every parameter exists in scikit-learn
    // under the same name (MinMaxScaler's feature_range is split in two)
    // with the same default, except the documented differences above.
    let defaults = &fixture()["defaults"];
    let mut checked = 0;
    for name in rask_ml::registered_estimators() {
        if name == "Pipeline" {
            continue;
        }
        let sk = &defaults[name.as_str()];
        assert!(sk.is_object(), "{name} has no scikit-learn defaults in the fixture");
        for (param, value) in rask_ml::create(&name).unwrap().get_params() {
            if DOCUMENTED_DEFAULTS.iter().any(|&(e, p)| (e == "*" || e == name) && p == param) {
                continue;
            }
            let want = match param.as_str() {
                "feature_range_min" => &sk["feature_range"][0],
                "feature_range_max" => &sk["feature_range"][1],
                _ => &sk[param.as_str()],
            };
            assert!(
                !want.is_null() || sk.get(&param).is_some(),
                "{name}.{param} is not scikit-learn's"
            );
            assert!(same_value(&value, want), "{name}.{param}: Rask {value}, scikit-learn {want}");
            checked += 1;
        }
    }
    assert!(checked >= 70, "only {checked} defaults checked");
}
