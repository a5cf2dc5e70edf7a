//! `cv_results`: scikit-learn's table of a search, printable and exportable.

use std::fmt;

use rask_ml::{ParamValue, Params};
use serde_json::{json, Value};

/// Per-candidate results of a search, with scikit-learn's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct CvResults {
    /// The candidates' parameters, in candidate order.
    pub params: Vec<Params>,
    /// Scorer names (one for a single metric).
    pub scorers: Vec<String>,
    /// `split_test[s][c][f]`: scorer s, candidate c, fold f.
    pub split_test: Vec<Vec<Vec<f64>>>,
    /// Same for train scores (empty unless asked).
    pub split_train: Vec<Vec<Vec<f64>>>,
    /// Fit seconds per candidate and fold.
    pub fit_time: Vec<Vec<f64>>,
    /// Score seconds per candidate and fold.
    pub score_time: Vec<Vec<f64>>,
    /// The first error of each candidate, if it failed (with a numeric `error_score`).
    pub errors: Vec<Option<String>>,
}

/// A parameter value as plain JSON (`0.1`, `30`, `"rbf"`, `null`).
pub fn param_json(v: &ParamValue) -> Value {
    match v {
        ParamValue::F64(x) => json!(x),
        ParamValue::I64(x) => json!(x),
        ParamValue::Bool(x) => json!(x),
        ParamValue::Str(x) => json!(x),
        ParamValue::None => Value::Null,
    }
}

/// Parameters as a JSON object.
pub fn params_json(p: &Params) -> Value {
    Value::Object(p.iter().map(|(k, v)| (k.clone(), param_json(v))).collect())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
}

/// Scores closer than this rank equal (scikit-learn's and dask-ml's means of the
/// same fold scores can differ in the last bit).
const TIE: f64 = 1e-12;

impl CvResults {
    /// Number of candidates.
    pub fn n_candidates(&self) -> usize {
        self.params.len()
    }

    /// Number of folds.
    pub fn n_splits(&self) -> usize {
        self.fit_time.first().map_or(0, Vec::len)
    }

    /// Mean test score of each candidate for scorer `s`.
    pub fn mean_test(&self, s: usize) -> Vec<f64> {
        self.split_test[s].iter().map(|f| mean(f)).collect()
    }

    /// Standard deviation (population) of the test scores for scorer `s`.
    pub fn std_test(&self, s: usize) -> Vec<f64> {
        self.split_test[s].iter().map(|f| std(f)).collect()
    }

    /// Ranks for scorer `s` (1 = best; ties share the lowest rank; NaN last).
    pub fn rank_test(&self, s: usize) -> Vec<usize> {
        let m = self.mean_test(s);
        m.iter()
            .map(|&x| {
                if x.is_nan() {
                    return m.iter().filter(|y| !y.is_nan()).count() + 1;
                }
                1 + m.iter().filter(|&&y| !y.is_nan() && y > x + TIE).count()
            })
            .collect()
    }

    /// Index of the best candidate for scorer `s` (the first of the best ranked).
    pub fn best_index(&self, s: usize) -> usize {
        let r = self.rank_test(s);
        (0..r.len()).min_by_key(|&i| (r[i], i)).unwrap_or(0)
    }

    fn suffix(&self, s: usize) -> String {
        if self.scorers.len() == 1 {
            "score".into()
        } else {
            self.scorers[s].clone()
        }
    }

    /// Sorted names of every parameter that appears in some candidate.
    pub fn param_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.params.iter().flat_map(|p| p.keys().cloned()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The columns, in scikit-learn's names and order.
    pub fn columns(&self) -> Vec<(String, Vec<Value>)> {
        let n = self.n_candidates();
        let pv = param_json;
        let num = |v: &[f64]| {
            v.iter().map(|x| if x.is_finite() { json!(x) } else { Value::Null }).collect::<Vec<_>>()
        };
        let mut cols: Vec<(String, Vec<Value>)> = Vec::new();
        let ft: Vec<f64> = self.fit_time.iter().map(|f| mean(f)).collect();
        let fs: Vec<f64> = self.fit_time.iter().map(|f| std(f)).collect();
        let st: Vec<f64> = self.score_time.iter().map(|f| mean(f)).collect();
        let ss: Vec<f64> = self.score_time.iter().map(|f| std(f)).collect();
        cols.push(("mean_fit_time".into(), num(&ft)));
        cols.push(("std_fit_time".into(), num(&fs)));
        cols.push(("mean_score_time".into(), num(&st)));
        cols.push(("std_score_time".into(), num(&ss)));
        for name in self.param_names() {
            cols.push((
                format!("param_{name}"),
                self.params.iter().map(|p| p.get(&name).map_or(Value::Null, pv)).collect(),
            ));
        }
        cols.push(("params".into(), self.params.iter().map(params_json).collect()));
        for s in 0..self.scorers.len() {
            let sfx = self.suffix(s);
            for f in 0..self.n_splits() {
                cols.push((
                    format!("split{f}_test_{sfx}"),
                    num(&(0..n).map(|c| self.split_test[s][c][f]).collect::<Vec<_>>()),
                ));
            }
            cols.push((format!("mean_test_{sfx}"), num(&self.mean_test(s))));
            cols.push((format!("std_test_{sfx}"), num(&self.std_test(s))));
            cols.push((
                format!("rank_test_{sfx}"),
                self.rank_test(s).into_iter().map(|r| json!(r)).collect(),
            ));
            if !self.split_train.is_empty() {
                for f in 0..self.n_splits() {
                    cols.push((
                        format!("split{f}_train_{sfx}"),
                        num(&(0..n).map(|c| self.split_train[s][c][f]).collect::<Vec<_>>()),
                    ));
                }
                let m: Vec<f64> = self.split_train[s].iter().map(|f| mean(f)).collect();
                let d: Vec<f64> = self.split_train[s].iter().map(|f| std(f)).collect();
                cols.push((format!("mean_train_{sfx}"), num(&m)));
                cols.push((format!("std_train_{sfx}"), num(&d)));
            }
        }
        cols.push((
            "error".into(),
            self.errors.iter().map(|e| e.as_ref().map_or(Value::Null, |e| json!(e))).collect(),
        ));
        cols
    }

    /// scikit-learn's `cv_results_` as a JSON object of columns.
    pub fn to_json(&self) -> Value {
        Value::Object(self.columns().into_iter().map(|(k, v)| (k, Value::Array(v))).collect())
    }

    /// One row per candidate, one column per field (params as JSON), RFC 4180 quoting.
    pub fn to_csv(&self) -> String {
        let cols = self.columns();
        let cell = |v: &Value| -> String {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s
            }
        };
        let mut out = cols.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>().join(",");
        out.push('\n');
        for c in 0..self.n_candidates() {
            out.push_str(&cols.iter().map(|(_, v)| cell(&v[c])).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for CvResults {
    /// A ranked table: rank, mean ± std of the first scorer, fit time, parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, s, r) = (self.mean_test(0), self.std_test(0), self.rank_test(0));
        let mut order: Vec<usize> = (0..self.n_candidates()).collect();
        order.sort_by_key(|&i| (r[i], i));
        writeln!(
            f,
            "{:>4}  {:>10}  {:>9}  {:>9}  params",
            "rank",
            format!("mean {}", self.scorers[0]),
            "std",
            "fit (s)"
        )?;
        for i in order {
            let params: Vec<String> =
                self.params[i].iter().map(|(k, v)| format!("{k}={v}")).collect();
            let ft = mean(&self.fit_time[i]);
            write!(
                f,
                "{:>4}  {:>10.5}  {:>9.5}  {:>9.4}  {}",
                r[i],
                m[i],
                s[i],
                ft,
                params.join(" ")
            )?;
            if let Some(e) = &self.errors[i] {
                write!(f, "  ERROR: {e}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
