//! Dataframe operations against pandas' results on the same files
//! (`tests/fixtures/expected.json`, written by `tests/fixtures/make_fixtures.py`
//! with pandas 3.1.1), on the Sync and Threads schedulers. Counts, keys and
//! ids are compared exactly; floats to 1e-9 relative (summation order
//! differs); missing values must be missing on both sides.

use std::path::PathBuf;

use polars::prelude::*;
use rask_core::{with_scheduler, Scheduler};
use rask_dataframe::{
    compute_frames, read_csv, read_parquet, CsvOptions, DataFrame, FrameError, How, ParquetOptions,
};
use serde_json::Value;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

/// The CSV files in blocks of ~1 KB (several partitions per file).
fn sales_csv() -> DataFrame {
    let options = CsvOptions { blocksize: Some(1000), ..CsvOptions::default() };
    let df = read_csv(&[&fixture("sales_*.csv")], &options).unwrap();
    assert!(df.npartitions() > 3, "{}", df.npartitions());
    df
}

/// The Parquet files, one partition per row group.
fn sales_parquet() -> DataFrame {
    let options = ParquetOptions { split_row_groups: true, ..ParquetOptions::default() };
    let df = read_parquet(&[&fixture("sales_*.parquet")], &options).unwrap();
    assert_eq!(df.npartitions(), 6);
    df
}

fn customers() -> DataFrame {
    read_csv(&[&fixture("customers.csv")], &CsvOptions::default()).unwrap()
}

fn floats(df: &polars::prelude::DataFrame, c: &str) -> Vec<Option<f64>> {
    df.column(c).unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().iter().collect()
}

fn strings(df: &polars::prelude::DataFrame, c: &str) -> Vec<Option<String>> {
    df.column(c).unwrap().str().unwrap().iter().map(|s| s.map(String::from)).collect()
}

fn expected_floats(v: &Value) -> Vec<Option<f64>> {
    v.as_array().unwrap().iter().map(Value::as_f64).collect()
}

fn expected_strings(v: &Value) -> Vec<Option<String>> {
    v.as_array().unwrap().iter().map(|s| s.as_str().map(String::from)).collect()
}

/// Equal, or both missing, or within 1e-9 relative.
fn assert_close(what: &str, got: &[Option<f64>], want: &[Option<f64>]) {
    assert_eq!(got.len(), want.len(), "{what}: {} values, pandas has {}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                let tol = 1e-9 * w.abs().max(1.0);
                assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs pandas {w}");
            }
            _ => panic!("{what}[{i}]: {g:?} vs pandas {w:?}"),
        }
    }
}

/// Compares the named columns of `got` with pandas' records.
fn assert_records(what: &str, got: &polars::prelude::DataFrame, want: &Value, columns: &[&str]) {
    for c in columns {
        let w = &want[*c];
        let what = format!("{what}.{c}");
        if w.as_array().unwrap().iter().any(Value::is_string) {
            assert_eq!(strings(got, c), expected_strings(w), "{what}");
        } else {
            assert_close(&what, &floats(got, c), &expected_floats(w));
        }
    }
}

fn on_each_scheduler(test: impl Fn()) {
    for scheduler in [Scheduler::Sync, Scheduler::Threads { workers: 2 }] {
        with_scheduler(scheduler, &test);
    }
}

fn decomposable() -> Vec<Expr> {
    vec![
        col("value").sum().alias("value_sum"),
        col("value").mean().alias("value_mean"),
        col("value").count().alias("value_count"),
        col("value").min().alias("value_min"),
        col("value").max().alias("value_max"),
        col("value").std(1).alias("value_std"),
        col("value").var(1).alias("value_var"),
        col("qty").first().alias("qty_first"),
        col("qty").last().alias("qty_last"),
        len().alias("rows"),
    ]
}

const DECOMPOSABLE: [&str; 11] = [
    "key",
    "value_sum",
    "value_mean",
    "value_count",
    "value_min",
    "value_max",
    "value_std",
    "value_var",
    "qty_first",
    "qty_last",
    "rows",
];

#[test]
fn group_by_matches_pandas_tree_and_shuffle() {
    let want = expected();
    on_each_scheduler(|| {
        for df in [sales_csv(), sales_parquet()] {
            // Tree reduction of partial aggregates.
            let g = df.group_by(["key"]).agg(decomposable()).unwrap();
            assert_eq!(g.npartitions(), 1);
            assert_records(
                "groupby tree",
                &g.compute().unwrap(),
                &want["groupby_key"],
                &DECOMPOSABLE,
            );
            // Shuffled partials, then sorted here by key.
            let g = df.group_by(["key"]).split_out(3).agg(decomposable()).unwrap();
            assert_eq!(g.npartitions(), 3);
            let got = g.compute().unwrap().sort(["key"], Default::default()).unwrap();
            assert_records("groupby split_out", &got, &want["groupby_key"], &DECOMPOSABLE);
            // With n_unique and median: whole groups after a shuffle.
            let mut aggs = decomposable();
            aggs.push(col("qty").n_unique().alias("qty_nunique"));
            aggs.push(col("qty").median().alias("qty_median"));
            for split_out in [1, 4] {
                let g = df.group_by(["key"]).split_out(split_out).agg(aggs.clone()).unwrap();
                let got = g.compute().unwrap().sort(["key"], Default::default()).unwrap();
                let mut cols = DECOMPOSABLE.to_vec();
                cols.extend(["qty_nunique", "qty_median"]);
                assert_records("groupby whole", &got, &want["groupby_key"], &cols);
            }
            // By the column of known divisions: partition by partition, in
            // key order without a sort here, and the divisions kept.
            let keyed = df.set_index("key").unwrap();
            let mut whole = DECOMPOSABLE.to_vec();
            whole.extend(["qty_nunique", "qty_median"]);
            for (aggs, cols) in [(decomposable(), DECOMPOSABLE.to_vec()), (aggs.clone(), whole)] {
                let g = keyed.group_by(["key"]).agg(aggs).unwrap();
                assert_eq!(g.npartitions(), keyed.npartitions());
                let (d, kept) = (keyed.divisions().unwrap(), g.divisions().unwrap());
                assert!(d.column == kept.column && d.bounds.equals_missing(&kept.bounds));
                assert!(!shuffles(&g, "hash_split") && !shuffles(&g, "agg_combine"));
                assert_records(
                    "groupby by divisions",
                    &g.compute().unwrap(),
                    &want["groupby_key"],
                    &cols,
                );
            }
            // Two keys.
            let g = df
                .group_by(["category", "key"])
                .agg([col("qty").sum().alias("qty_sum"), col("value").mean().alias("value_mean")])
                .unwrap();
            assert_records(
                "groupby two keys",
                &g.compute().unwrap(),
                &want["groupby_category_key"],
                &["category", "key", "qty_sum", "value_mean"],
            );
        }
    });
}

#[test]
fn merges_match_pandas_broadcast_and_shuffled() {
    let want = expected();
    let cols = ["id", "key", "category", "value", "qty", "segment", "weight"];
    on_each_scheduler(|| {
        let sales = sales_csv();
        let one = customers();
        assert_eq!(one.npartitions(), 1);
        let two = one.repartition(2).unwrap();
        for (how, name) in [
            (How::Inner, "merge_inner"),
            (How::Left, "merge_left"),
            (How::Right, "merge_right"),
            (How::Full, "merge_outer"),
        ] {
            for right in [&one, &two] {
                let m = sales.merge(right, &["key"], &["key"], how).unwrap();
                let got = m
                    .compute()
                    .unwrap()
                    .sort(["id", "key"], SortMultipleOptions::default().with_nulls_last(true))
                    .unwrap();
                assert_records(name, &got, &want[name], &cols);
            }
        }
        // With known divisions: the right side aligned to the left's, or
        // range-split to them; neither merge hash-shuffles.
        let keyed = sales.set_index("key").unwrap();
        let bounds = keyed.divisions().unwrap().bounds.clone();
        let aligned = two.set_index_with("key", bounds).unwrap();
        assert!(shuffles(&sales.merge(&two, &["key"], &["key"], How::Full).unwrap(), "hash_split"));
        for (how, name) in [
            (How::Inner, "merge_inner"),
            (How::Left, "merge_left"),
            (How::Right, "merge_right"),
            (How::Full, "merge_outer"),
        ] {
            for right in [&aligned, &two] {
                let m = keyed.merge(right, &["key"], &["key"], how).unwrap();
                assert!(!shuffles(&m, "hash_split"), "{name}");
                assert_eq!(m.divisions().unwrap().column, "key");
                let got = m
                    .compute()
                    .unwrap()
                    .sort(["id", "key"], SortMultipleOptions::default().with_nulls_last(true))
                    .unwrap();
                assert_records(name, &got, &want[name], &cols);
            }
        }
    });
}

/// Whether computing `df` runs a task of op `op`.
fn shuffles(df: &DataFrame, op: &str) -> bool {
    let parts: Vec<_> = df.partitions().iter().map(|p| p.erase()).collect();
    rask_core::graph_of(&parts).iter().any(|(k, _)| k.prefix().contains(op))
}

#[test]
fn set_index_sorts_into_known_ranges() {
    on_each_scheduler(|| {
        let df = sales_csv();
        let keyed = df.set_index("key").unwrap();
        let d = keyed.divisions().unwrap().clone();
        assert_eq!(d.bounds.len() + 1, keyed.npartitions());
        assert!(keyed.npartitions() > 1);
        let bounds: Vec<i64> =
            d.bounds.cast(&DataType::Int64).unwrap().i64().unwrap().into_no_null_iter().collect();
        let mut all = Vec::new();
        for (i, p) in keyed.partitions().iter().enumerate() {
            let keys: Vec<i64> = p
                .compute()
                .unwrap()
                .0
                .column("key")
                .unwrap()
                .cast(&DataType::Int64)
                .unwrap()
                .i64()
                .unwrap()
                .into_no_null_iter()
                .collect();
            assert!(keys.windows(2).all(|w| w[0] <= w[1]), "partition {i} is not sorted");
            for k in &keys {
                assert!(i == 0 || *k > bounds[i - 1], "partition {i}: {k} <= {}", bounds[i - 1]);
                assert!(i == bounds.len() || *k <= bounds[i], "partition {i}: {k} > {}", bounds[i]);
            }
            all.extend(keys);
        }
        assert_eq!(all.len(), 600);
        // A filter keeps the ranges; redefining the column drops them; a
        // sort by it is a sort within each partition.
        assert!(keyed.filter(col("qty").gt(lit(1))).unwrap().divisions().is_some());
        assert!(keyed.with_columns([col("qty") * lit(2)]).unwrap().divisions().is_some());
        assert!(keyed.with_columns([col("key") * lit(2)]).unwrap().divisions().is_none());
        assert!(keyed
            .with_columns([polars::prelude::all().as_expr().fill_null(lit(0))])
            .unwrap()
            .divisions()
            .is_none());
        let sorted = keyed.sort(&["key", "id"], &[false]).unwrap();
        assert!(!shuffles(&sorted, "sort_boundaries"));
        assert!(shuffles(&df.sort(&["key", "id"], &[false]).unwrap(), "sort_boundaries"));
        let want = df.compute().unwrap().sort(["key", "id"], Default::default()).unwrap();
        assert!(sorted.compute().unwrap().equals_missing(&want));
    });
    let df = sales_csv();
    let bad = |s: Series| df.set_index_with("key", s).unwrap_err().to_string();
    assert!(bad(Series::new("key".into(), [30i64, 20])).contains("ascending"));
    assert!(bad(Series::new("key".into(), [1.5f64])).contains("cast"));
    assert!(matches!(df.set_index("nope"), Err(FrameError::MissingColumn { .. })));
}

#[test]
fn sorts_match_pandas() {
    let want = expected();
    on_each_scheduler(|| {
        for df in [sales_csv(), sales_parquet()] {
            let s = df.sort(&["value", "id"], &[false]).unwrap();
            assert!(s.npartitions() > 1);
            let ids: Vec<Option<f64>> = floats(&s.compute().unwrap(), "id");
            assert_close("sort value,id", &ids, &expected_floats(&want["sort_value_id"]));
            let s = df.sort(&["qty", "id"], &[true]).unwrap();
            let ids: Vec<Option<f64>> = floats(&s.compute().unwrap(), "id");
            assert_close("sort qty,id desc", &ids, &expected_floats(&want["sort_qty_id_desc"]));
        }
    });
}

#[test]
fn counts_uniques_and_row_steps_match_pandas() {
    let want = expected();
    on_each_scheduler(|| {
        let df = sales_csv();
        assert_eq!(df.len().compute().unwrap(), want["n_rows"].as_u64().unwrap());
        let vc = df.value_counts("category").unwrap().compute().unwrap();
        assert_records("value_counts", &vc, &want["value_counts_category"], &["category", "count"]);
        assert_eq!(
            df.nunique("category").unwrap().compute().unwrap(),
            want["nunique_category"].as_u64().unwrap()
        );
        let dd = df.drop_duplicates(Some(vec!["category".into(), "key".into()])).unwrap();
        assert_eq!(
            dd.len().compute().unwrap(),
            want["drop_duplicates_category_key"].as_u64().unwrap()
        );
        let f = df
            .filter(col("value").gt(lit(20.0)))
            .unwrap()
            .with_columns([(col("value") * col("qty")).alias("total")])
            .unwrap();
        assert_eq!(f.len().compute().unwrap(), want["filtered_rows"].as_u64().unwrap());
        let total = f.select([col("total").sum()]).unwrap().compute().unwrap();
        let got: f64 = floats(&total, "total").iter().flatten().sum();
        assert_close("filtered total", &[Some(got)], &[want["filtered_total"].as_f64()]);
        // Parquet with pushdown: the same filter, read with the predicate.
        let options = ParquetOptions {
            columns: Some(vec!["id".into(), "value".into()]),
            filter: Some(col("value").gt(lit(20.0))),
            split_row_groups: false,
        };
        let p = read_parquet(&[&fixture("sales_*.parquet")], &options).unwrap();
        assert_eq!(p.columns(), ["id", "value"]);
        assert_eq!(p.len().compute().unwrap(), want["filtered_rows"].as_u64().unwrap());
    });
}

#[test]
fn describe_matches_pandas() {
    let want = expected();
    on_each_scheduler(|| {
        // Partitions of at most 101 rows: the quartile sketches are exact.
        let d = sales_csv().describe().unwrap();
        assert_eq!(strings(&d, "statistic")[5].as_deref(), Some("25%"));
        for c in ["id", "key", "value", "qty"] {
            let got = floats(&d, c);
            let w = expected_floats(&want["describe"][c]);
            // count, then (skipping null_count) mean .. max.
            let mut picked = vec![got[0]];
            picked.extend(&got[2..]);
            assert_close(&format!("describe {c}"), &picked, &w);
        }
        let nulls = floats(&d, "value")[1].unwrap();
        assert_eq!(
            nulls as u64,
            want["n_rows"].as_u64().unwrap()
                - want["describe"]["value"][0].as_f64().unwrap() as u64
        );
    });
}

#[test]
fn two_results_of_one_read_compute_together() {
    let df = sales_csv();
    let a = df.group_by(["key"]).agg([col("qty").sum()]).unwrap();
    let b = df.group_by(["category"]).agg([col("value").mean()]).unwrap();
    let out = compute_frames(&[&a, &b]).unwrap();
    assert_eq!(out[0].height(), 50);
    assert_eq!(out[1].height(), 6);
}

#[test]
fn to_array_gives_the_numeric_columns_by_row_chunk() {
    let df = sales_parquet();
    let a = df.to_array(Some(&["id", "qty"])).unwrap();
    assert_eq!(a.shape(), vec![600, 2]);
    assert_eq!(a.chunks()[0].len(), 6);
    let x = a.compute().unwrap();
    let all = df.compute().unwrap();
    let ids = floats(&all, "id");
    let qty = floats(&all, "qty");
    for i in 0..600 {
        assert_eq!(Some(x[[i, 0]]), ids[i]);
        assert_eq!(Some(x[[i, 1]]), qty[i]);
    }
    // Lengths unknown after a filter: computed first. Missing values are NaN.
    let f = sales_csv().filter(col("qty").gt(lit(4))).unwrap().to_array(Some(&["value"])).unwrap();
    let v = f.compute().unwrap();
    assert!(v.iter().any(|x| x.is_nan()));
    assert!(matches!(df.to_array(Some(&["category"])), Err(FrameError::Invalid { .. })));
}

#[test]
fn to_xy_chunks_features_and_target_alike() {
    let f = sales_csv().filter(col("qty").gt(lit(4))).unwrap();
    let (x, y) = f.to_xy(&["id", "qty"], "value").unwrap();
    assert_eq!(x.chunks()[0], y.chunks()[0], "the same row chunks");
    let (x, y) = (x.compute().unwrap(), y.compute().unwrap());
    let all = f.compute().unwrap();
    let (ids, values) = (floats(&all, "id"), floats(&all, "value"));
    assert_eq!(x.shape()[0], all.height());
    for i in 0..all.height() {
        assert_eq!(Some(x[[i, 0]]), ids[i]);
        assert_eq!(values[i].unwrap_or(f64::NAN).to_bits(), y[[i]].to_bits());
    }
    let e = f.to_xy(&["id", "nope"], "value").unwrap_err();
    assert!(matches!(e, FrameError::MissingColumn { .. }), "{e}");
    let e = f.to_xy(&["id"], "category").unwrap_err();
    assert!(matches!(e, FrameError::Invalid { .. }), "{e}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let df = sales_csv();
    // A missing column: polars' message, and the columns there are.
    let e = df.filter(col("nope").gt(lit(1))).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("category"), "{e}");
    let e = df.group_by(["nope"]).agg([col("qty").sum()]).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("qty"), "{e}");
    // Merge keys of different types.
    let c = customers().with_columns([col("key").cast(DataType::String)]).unwrap();
    let e = df.merge(&c, &["key"], &["key"], How::Inner).unwrap_err();
    assert!(matches!(e, FrameError::KeyTypes { .. }), "{e}");
    assert!(e.to_string().contains("cast one side"), "{e}");
    // No such files.
    let e = read_csv(&["/nonexistent/*.csv"], &CsvOptions::default()).unwrap_err();
    assert!(matches!(e, FrameError::NoFiles { .. }), "{e}");
    let dir = tempfile::tempdir().unwrap();
    // A file whose header differs from the first file's.
    std::fs::write(dir.path().join("a.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(dir.path().join("b.csv"), "x,z\n1,2\n").unwrap();
    let e = read_csv(&[&format!("{}/*.csv", dir.path().display())], &CsvOptions::default())
        .unwrap_err();
    let m = e.to_string();
    assert!(m.contains("b.csv") && m.contains("\"z\"") && m.contains("\"y\""), "{m}");
    // A malformed row: the file and the line.
    // (past the rows the schema is inferred from, in a later block).
    let bad = dir.path().join("bad.csv");
    let mut text = String::from("x,y\n");
    for i in 0..1100 {
        text.push_str(&format!("{i},{}\n", 2 * i));
    }
    text.push_str("5,oops\n7,8\n");
    std::fs::write(&bad, text).unwrap();
    let options = CsvOptions { blocksize: Some(2000), ..CsvOptions::default() };
    let e = read_csv(&[bad.to_str().unwrap()], &options).unwrap().compute().unwrap_err();
    let m = e.to_string();
    assert!(m.contains("bad.csv") && m.contains("line 1102") && m.contains("oops"), "{m}");
    // Parquet files with different schemas.
    let p = dir.path().join("p");
    std::fs::create_dir(&p).unwrap();
    let mut a = df!("x" => [1i64, 2]).unwrap();
    ParquetWriter::new(std::fs::File::create(p.join("a.parquet")).unwrap()).finish(&mut a).unwrap();
    let mut b = df!("x" => [1.5f64, 2.5]).unwrap();
    ParquetWriter::new(std::fs::File::create(p.join("b.parquet")).unwrap()).finish(&mut b).unwrap();
    let e = read_parquet(&[&format!("{}/*.parquet", p.display())], &ParquetOptions::default())
        .unwrap_err();
    let m = e.to_string();
    assert!(m.contains("b.parquet") && m.contains("\"x\""), "{m}");
    // Parameters.
    assert!(matches!(df.repartition(0), Err(FrameError::Invalid { .. })));
    assert!(matches!(
        df.group_by(["key"]).split_out(0).agg([len()]),
        Err(FrameError::Invalid { .. })
    ));
}

#[test]
fn written_files_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let df = sales_csv();
    let n = df.to_parquet(dir.path().join("pq")).unwrap().compute().unwrap();
    assert_eq!(n, 600);
    let back = read_parquet(
        &[&format!("{}/pq/*.parquet", dir.path().display())],
        &ParquetOptions::default(),
    )
    .unwrap();
    let n = back.to_csv(dir.path().join("csv")).unwrap().compute().unwrap();
    assert_eq!(n, 600);
    let again = read_csv(&[&format!("{}/csv/*.csv", dir.path().display())], &CsvOptions::default())
        .unwrap();
    let a = df.compute().unwrap().sort(["id"], Default::default()).unwrap();
    let b = again.compute().unwrap().sort(["id"], Default::default()).unwrap();
    assert!(a.equals_missing(&b));
}

/// A filter skips the row groups whose statistics rule it out, and the rows
/// read are exactly polars' eager filter of the whole file.
#[test]
fn parquet_filters_skip_row_groups_by_their_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.parquet");
    let ids: Vec<i64> = (0..1000).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("n{i:04}")).collect();
    // NaN only in row groups 5..9 (polars then writes NaN min/max there).
    let x: Vec<f64> =
        ids.iter().map(|&i| if i >= 500 && i % 97 == 0 { f64::NAN } else { i as f64 }).collect();
    let mut whole = df!("id" => &ids, "name" => &names, "x" => &x).unwrap();
    ParquetWriter::new(std::fs::File::create(&path).unwrap())
        .with_row_group_size(Some(100))
        .finish(&mut whole)
        .unwrap();
    let read = |filter: Expr, split: bool| {
        let options = ParquetOptions {
            filter: Some(filter),
            split_row_groups: split,
            ..ParquetOptions::default()
        };
        read_parquet(&[path.to_str().unwrap()], &options).unwrap()
    };
    let cases: Vec<(Expr, bool, usize)> = vec![
        (col("id").gt_eq(lit(850)), true, 2),
        (col("id").lt(lit(50)).or(col("id").gt(lit(980))), true, 2),
        (col("name").eq(lit("n0421")), true, 1),
        (col("id").gt_eq(lit(300)).and(col("id").lt_eq(lit(420))), false, 1),
        (col("id").gt(lit(5000)), true, 1),
        // NaN sorts above every number: a `>` on floats prunes nothing, and
        // row groups with NaN statistics are kept.
        (col("x").gt(lit(1e9)), true, 10),
        (col("x").lt(lit(150.0)), true, 7),
        (col("x").eq(lit(250.0)), true, 6),
    ];
    for (filter, split, parts) in cases {
        let df = read(filter.clone(), split);
        assert_eq!(df.npartitions(), parts, "{filter:?}");
        let want = whole.clone().lazy().filter(filter.clone()).collect().unwrap();
        let got = df.compute().unwrap();
        assert!(got.equals_missing(&want), "{filter:?}: {got} vs {want}");
    }
    // The span of one partition per file covers only the row groups kept.
    let df = read(col("id").gt_eq(lit(300)).and(col("id").lt_eq(lit(420))), false);
    assert_eq!(df.compute().unwrap().height(), 121);
}

/// Quoted fields that hold newlines and separators: with `quoted_newlines`
/// the blocks start at true row starts and every row reads back as polars
/// reads the whole file; without it, a block boundary inside a quoted field
/// breaks the rows (the reason for the option).
#[test]
fn csv_blocks_respect_quoted_newlines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.csv");
    let mut text = String::from("id,note,x\n");
    for i in 0..2000 {
        if i % 3 == 0 {
            text.push_str(&format!("{i},\"two\nlines, and \"\"quotes\"\"\",{}.5\n", i % 7));
        } else {
            text.push_str(&format!("{i},plain,{}.5\n", i % 7));
        }
    }
    std::fs::write(&path, &text).unwrap();
    let want = CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(path.clone()))
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(want.height(), 2000);
    let read = |quoted_newlines: bool| {
        let options = CsvOptions { blocksize: Some(700), quoted_newlines, ..CsvOptions::default() };
        read_csv(&[path.to_str().unwrap()], &options).unwrap()
    };
    on_each_scheduler(|| {
        let df = read(true);
        assert!(df.npartitions() > 20, "{}", df.npartitions());
        assert!(df.compute().unwrap().equals_missing(&want));
    });
    let naive = read(false).compute().map(|d| d.height());
    assert!(!matches!(naive, Ok(2000)), "{naive:?}");
}

/// A fixture of the bag crate (`collections/bag/tests/fixtures`, written by
/// its `make_fixtures.py` with dask.bag).
fn bag_fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../bag/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A record of `people.jsonl` as a struct (its `tags` are left out).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Person {
    name: String,
    age: i64,
    city: String,
}
rask_bag::register_bag_type!(Person => base json);

#[test]
fn bags_of_records_become_dataframes_as_dask_bag_makes_them() {
    use rask_bag::{read_json, read_json_as, TextOptions};
    use rask_dataframe::BagToDataFrame;
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(bag_fixture("expected.json")).unwrap())
            .unwrap();
    let people_columns =
        [("name", DataType::String), ("age", DataType::Int64), ("city", DataType::String)];
    on_each_scheduler(|| {
        let blocks = TextOptions { blocksize: Some(5000) };
        let people = read_json(&[&bag_fixture("people.jsonl")], &blocks, false).unwrap().bag;
        let df = people.to_dataframe(&people_columns).unwrap();
        assert_eq!(df.npartitions(), people.npartitions());
        assert!(df.npartitions() > 1);
        let got = df.compute().unwrap();
        assert_records("people", &got, &e["people_frame"], &["name", "age", "city"]);
        // Into the dataframe's operations: a group-by.
        let by_city = df
            .group_by(["city"])
            .agg([col("age").mean().alias("mean"), col("age").count().alias("count")])
            .unwrap()
            .compute()
            .unwrap()
            .sort(["city"], Default::default())
            .unwrap();
        assert_records(
            "people by city",
            &by_city,
            &e["people_city_age"],
            &["city", "mean", "count"],
        );
        // The same records read into a struct give the same frame.
        let typed = read_json_as::<Person>(&[&bag_fixture("people.jsonl")], &blocks, false)
            .unwrap()
            .bag
            .to_dataframe(&people_columns)
            .unwrap()
            .compute()
            .unwrap();
        assert!(typed.equals(&got));

        // Missing fields and nulls are nulls; integers in a float column are floats.
        let records = read_json(
            &[&bag_fixture("records.jsonl")],
            &TextOptions { blocksize: Some(700) },
            false,
        )
        .unwrap()
        .bag;
        let columns = [
            ("id", DataType::Int64),
            ("score", DataType::Float64),
            ("label", DataType::String),
            ("ok", DataType::Boolean),
        ];
        let got = records.to_dataframe(&columns).unwrap().compute().unwrap();
        let want = &e["records_frame"];
        assert_records("records", &got, want, &["id", "score", "label"]);
        let ok: Vec<Option<bool>> = got.column("ok").unwrap().bool().unwrap().iter().collect();
        let want_ok: Vec<Option<bool>> =
            want["ok"].as_array().unwrap().iter().map(Value::as_bool).collect();
        assert_eq!(ok, want_ok);
        assert!(ok.contains(&None) && floats(&got, "score").contains(&None));
    });
}

#[test]
fn a_record_of_another_type_fails_naming_partition_row_and_column() {
    use rask_dataframe::BagToDataFrame;
    let rows: Vec<rask_bag::Json> = [
        serde_json::json!({"id": 1, "score": 0.5}),
        serde_json::json!({"id": 2, "score": 1}),
        serde_json::json!({"id": 3, "score": "high"}),
    ]
    .into_iter()
    .map(rask_bag::Json)
    .collect();
    let bag = rask_bag::from_sequence(rows, 2).unwrap();
    let df = bag.to_dataframe(&[("id", DataType::Int64), ("score", DataType::Float64)]).unwrap();
    let err = df.compute().unwrap_err().to_string();
    assert!(
        err.contains(
            "partition 1, row 1, column \"score\": expected f64 (a JSON number), found \"high\""
        ),
        "{err}"
    );
    let bad = bag.to_dataframe(&[("when", DataType::Date)]).unwrap_err().to_string();
    assert!(bad.contains("column \"when\" has type date, which is not read from JSON"), "{bad}");
}
