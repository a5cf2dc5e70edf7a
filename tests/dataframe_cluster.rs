//! Dataframes on a 2-worker LocalCluster: every operation gives the same
//! frame as on Sync and Threads (partitions move between worker processes
//! as Arrow IPC); a merge of two 10-million-row frames runs under worker
//! memory limits smaller than the data, spills, and gives the right answer,
//! also when a worker is SIGKILLed during the shuffle.

use std::path::PathBuf;

use rask::dataframe::polars::prelude::*;
use rask::dataframe::{read_csv, read_parquet, CsvOptions, DataFrame as Ddf, How, ParquetOptions};
use rask::distributed::{ClusterOptions, LocalCluster};
use rask::{with_scheduler, Scheduler};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("collections/dataframe/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn cluster(n_workers: usize, memory_limit: Option<&str>) -> LocalCluster {
    LocalCluster::with_options(ClusterOptions {
        n_workers,
        threads_per_worker: 1,
        memory_limit: memory_limit.map(String::from),
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        ..ClusterOptions::default()
    })
    .expect("cluster starts")
}

/// Sorted by every column, so that frames compare whatever their row order.
fn canonical(df: DataFrame) -> DataFrame {
    let cols: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
    df.sort(cols, SortMultipleOptions::default().with_nulls_last(true)).unwrap()
}

/// Every operation's result, computed on the current scheduler.
fn every_operation() -> Vec<DataFrame> {
    let sales = read_csv(
        &[&fixture("sales_*.csv")],
        &CsvOptions { blocksize: Some(1000), ..CsvOptions::default() },
    )
    .unwrap();
    let pq = read_parquet(
        &[&fixture("sales_*.parquet")],
        &ParquetOptions {
            split_row_groups: true,
            filter: Some(col("qty").gt(lit(2))),
            ..ParquetOptions::default()
        },
    )
    .unwrap();
    let customers = read_csv(&[&fixture("customers.csv")], &CsvOptions::default()).unwrap();
    let aggs = || {
        vec![
            col("value").sum().alias("s"),
            col("value").mean().alias("m"),
            col("value").std(1).alias("sd"),
            col("qty").max().alias("mx"),
            col("qty").first().alias("f"),
            len().alias("n"),
        ]
    };
    let mut whole = aggs();
    whole.push(col("qty").n_unique().alias("u"));
    let frames: Vec<Ddf> = vec![
        sales
            .filter(col("value").gt(lit(10.0)))
            .unwrap()
            .with_columns([(col("value") * col("qty")).alias("t")])
            .unwrap(),
        sales.group_by(["key"]).agg(aggs()).unwrap(),
        sales.group_by(["key"]).split_out(3).agg(aggs()).unwrap(),
        pq.group_by(["category"]).split_out(2).agg(whole).unwrap(),
        sales.merge(&customers, &["key"], &["key"], How::Inner).unwrap(),
        sales.merge(&customers.repartition(2).unwrap(), &["key"], &["key"], How::Full).unwrap(),
        sales.merge(&customers, &["key"], &["key"], How::Left).unwrap(),
        sales.sort(&["value", "id"], &[false]).unwrap(),
        sales.value_counts("category").unwrap(),
        sales.drop_duplicates(Some(vec!["category".into(), "key".into()])).unwrap(),
        pq.repartition(4).unwrap(),
        sales.select([col("id"), col("qty")]).unwrap(),
        sales.set_index("key").unwrap(),
        // Known divisions: the right side is range-split to the left's.
        sales
            .set_index("key")
            .unwrap()
            .merge(&customers.repartition(2).unwrap(), &["key"], &["key"], How::Full)
            .unwrap(),
        sales.merge(&customers.repartition(2).unwrap(), &["key"], &["key"], How::Right).unwrap(),
        // Grouped by the column of known divisions: partition by partition.
        sales.set_index("key").unwrap().group_by(["key"]).agg(aggs()).unwrap(),
    ];
    let refs: Vec<&Ddf> = frames.iter().collect();
    let mut out: Vec<DataFrame> = rask::dataframe::compute_frames(&refs).unwrap();
    // The sort's row order is its result: keep it as is; the others compare sorted.
    for (i, df) in out.iter_mut().enumerate() {
        if i != 7 {
            *df = canonical(std::mem::take(df));
        }
    }
    let n = sales.nunique("category").unwrap().compute().unwrap();
    out.push(df!("nunique" => [n]).unwrap());
    out.push(sales.describe().unwrap());
    let a = pq.to_array(Some(&["id", "qty"])).unwrap().compute().unwrap();
    out.push(df!("array_sum" => [a.sum()]).unwrap());
    out
}

#[test]
fn every_dataframe_operation_gives_the_same_frames_on_a_cluster() {
    let want = with_scheduler(Scheduler::Sync, every_operation);
    let threads = with_scheduler(Scheduler::Threads { workers: 2 }, every_operation);
    let c = cluster(2, None);
    let client = c.client().unwrap();
    let on_cluster = with_scheduler(client.scheduler(), every_operation);
    for (i, ((w, t), c)) in want.iter().zip(&threads).zip(&on_cluster).enumerate() {
        assert!(w.equals_missing(t), "operation {i}: threads differ\n{w}\n{t}");
        assert!(w.equals_missing(c), "operation {i}: the cluster differs\n{w}\n{c}");
    }
    // Files written by the workers read back the same.
    let dir = tempfile::tempdir().unwrap();
    let sales = read_csv(&[&fixture("sales_*.csv")], &CsvOptions::default()).unwrap();
    let written = with_scheduler(client.scheduler(), || {
        sales.to_parquet(dir.path()).unwrap().compute().unwrap()
    });
    assert_eq!(written, 600);
    let back =
        read_parquet(&[&format!("{}/*.parquet", dir.path().display())], &ParquetOptions::default())
            .unwrap();
    assert!(canonical(back.compute().unwrap()).equals_missing(&canonical(sales.compute().unwrap())));
}

const ROWS: usize = 10_000_000;

/// Two 10M-row tables in 10 Parquet files each: `left` (id, key, x) with
/// random keys, `right` (key, y) with every key once. Returns the expected
/// inner-join row count and sum of x·y (computed by polars in this process).
fn write_tables(dir: &std::path::Path) -> (u64, f64) {
    let per = ROWS / 10;
    let mut expect_rows = 0u64;
    let mut left_all = Vec::new();
    for i in 0..10 {
        let ids: Vec<i64> = ((i * per) as i64..((i + 1) * per) as i64).collect();
        // A fixed mix of the id: deterministic, spread over [0, ROWS + ROWS/10).
        let keys: Vec<i64> = ids
            .iter()
            .map(|&v| {
                ((v as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) % (ROWS as u64 + ROWS as u64 / 10))
                    as i64
            })
            .collect();
        let x: Vec<f64> = ids.iter().map(|&v| (v % 1000) as f64 / 1000.0).collect();
        let mut l = df!("id" => ids, "key" => keys, "x" => x).unwrap();
        ParquetWriter::new(
            std::fs::File::create(dir.join(format!("left_{i:02}.parquet"))).unwrap(),
        )
        .finish(&mut l)
        .unwrap();
        left_all.push(l);
        let rk: Vec<i64> = ((i * per) as i64..((i + 1) * per) as i64).collect();
        let y: Vec<f64> = rk.iter().map(|&k| (k % 7) as f64).collect();
        let mut r = df!("key" => rk, "y" => y).unwrap();
        ParquetWriter::new(
            std::fs::File::create(dir.join(format!("right_{i:02}.parquet"))).unwrap(),
        )
        .finish(&mut r)
        .unwrap();
    }
    let mut left = left_all.remove(0);
    for l in left_all {
        left.vstack_mut_owned(l).unwrap();
    }
    let m = left
        .lazy()
        .filter(col("key").lt(lit(ROWS as i64)))
        .select([
            len().alias("n"),
            (col("x") * (col("key") % lit(7)).cast(DataType::Float64)).sum().alias("xy"),
        ])
        .collect()
        .unwrap();
    expect_rows +=
        m.column("n").unwrap().cast(&DataType::UInt64).unwrap().u64().unwrap().get(0).unwrap();
    let xy = m.column("xy").unwrap().f64().unwrap().get(0).unwrap();
    (expect_rows, xy)
}

/// The join's row count and Σ x·y, computed on the cluster.
fn join_checksum(dir: &std::path::Path) -> (u64, f64) {
    let l =
        read_parquet(&[&format!("{}/left_*.parquet", dir.display())], &ParquetOptions::default())
            .unwrap();
    let r =
        read_parquet(&[&format!("{}/right_*.parquet", dir.display())], &ParquetOptions::default())
            .unwrap();
    let m = l.merge(&r, &["key"], &["key"], How::Inner).unwrap();
    let totals = m
        .with_columns([(col("x") * col("y")).alias("xy")])
        .unwrap()
        .agg([len().alias("n"), col("xy").sum().alias("xy")])
        .unwrap()
        .compute()
        .unwrap();
    let n =
        totals.column("n").unwrap().cast(&DataType::UInt64).unwrap().u64().unwrap().get(0).unwrap();
    let xy = totals.column("xy").unwrap().f64().unwrap().get(0).unwrap();
    (n, xy)
}

#[test]
fn a_merge_of_two_10m_row_frames_spills_under_a_memory_limit_and_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, xy) = write_tables(dir.path());
    assert!(rows > 9_000_000, "{rows}");
    // 400 MB of columns in, more through the shuffle; workers may hold 150 MB each.
    let mut c = cluster(3, Some("150MB"));
    let client = c.client().unwrap();
    let s = client.scheduler();
    let path = dir.path().to_path_buf();
    let running = std::thread::spawn(move || with_scheduler(s, || join_checksum(&path)));
    // Killed once the shuffle is under way: some partitions split, not all.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let activity = client.activity(0).unwrap();
        let split = activity["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["prefix"].as_str().is_some_and(|p| p.ends_with("hash_split")))
            .map(|g| g["finished"].as_u64().unwrap_or(0))
            .sum::<u64>();
        if split >= 1 {
            assert!(split < 20, "the shuffle must still run when the worker dies ({split} splits)");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the shuffle did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.kill_worker(1).unwrap();
    let (n, got) = running.join().unwrap();
    assert_eq!(n, rows);
    assert!((got - xy).abs() <= 1e-9 * xy.abs(), "{got} vs {xy}");
    // The workers spilled (each logs its spills).
    let spills: usize = (0..3)
        .map(|i| {
            std::fs::read_to_string(c.log_dir().join(format!("worker-{i}.err"))).unwrap_or_default()
        })
        .map(|log| log.matches("spilled").count())
        .sum();
    assert!(spills > 0, "no worker spilled");
    eprintln!("{spills} spills");
}
