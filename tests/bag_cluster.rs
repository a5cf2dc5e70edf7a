//! Bags on a 2-worker LocalCluster: the built-in operations (and
//! `to_dataframe`) run as registered ops on the workers and give the same
//! results as the Threads scheduler; files written by the workers read back the same; a closure is
//! refused at submit with its name; a worker SIGKILLed during a shuffle does
//! not change the answer.

use std::path::PathBuf;

use rask::bag::{read_text, read_text_with, TextOptions};
use rask::distributed::{ClusterOptions, LocalCluster};
use rask::{with_scheduler, Scheduler};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("collections/bag/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Each key of a grouped bag with its number of items, sorted by key.
fn group_sizes(groups: rask::bag::Bag<(String, Vec<String>)>) -> Vec<(String, usize)> {
    let mut g: Vec<(String, usize)> =
        groups.compute().unwrap().into_iter().map(|(k, v)| (k, v.len())).collect();
    g.sort();
    g
}

fn cluster() -> LocalCluster {
    LocalCluster::with_options(ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        ..ClusterOptions::default()
    })
    .expect("cluster starts")
}

#[test]
fn built_in_bag_operations_run_on_a_cluster_as_on_threads() {
    let c = cluster();
    let client = c.client().unwrap();
    assert_eq!(client.workers().unwrap().len(), 2);
    let on_cluster = client.scheduler();
    let threads = Scheduler::Threads { workers: 2 };
    let opts = TextOptions { blocksize: Some(3000) };
    let run = |s: &Scheduler| {
        with_scheduler(s.clone(), || {
            let lines = read_text_with(&[&fixture("text_*.txt")], &opts).unwrap();
            let words = lines.split_whitespace();
            let freq = words.frequencies();
            (
                lines.count().compute().unwrap(),
                freq.compute().unwrap(),
                freq.most_common(5).compute().unwrap(),
                words.distinct().compute().unwrap(),
                words.topk(3).compute().unwrap(),
                lines.repartition(4).unwrap().compute().unwrap(),
                lines.take(2).compute().unwrap(),
            )
        })
    };
    let want = run(&threads);
    assert_eq!(want.0, 750);
    assert_eq!(run(&on_cluster), want);

    // JSON lines: pluck and the numeric reductions, as registered ops.
    let json = |s: &Scheduler| {
        with_scheduler(s.clone(), || {
            let people = rask::bag::read_json(&[&fixture("people.jsonl")], &opts, false).unwrap();
            let names = people.bag.pluck("name").take(3).compute().unwrap();
            (names, people.skipped.compute().unwrap(), people.bag.count().compute().unwrap())
        })
    };
    assert_eq!(json(&on_cluster), json(&threads));

    // Records into a dataframe on the workers (one partition per bag partition).
    use rask::dataframe::polars::prelude::{col, DataType};
    use rask::dataframe::BagToDataFrame;
    let frames = |s: &Scheduler| {
        with_scheduler(s.clone(), || {
            let people = rask::bag::read_json(&[&fixture("people.jsonl")], &opts, false).unwrap();
            let df = people
                .bag
                .to_dataframe(&[
                    ("name", DataType::String),
                    ("age", DataType::Int64),
                    ("city", DataType::String),
                ])
                .unwrap();
            assert_eq!(df.npartitions(), people.bag.npartitions());
            let ages = df.group_by(["city"]).agg([col("age").sum()]).unwrap();
            let ages = ages.compute().unwrap().sort(["city"], Default::default()).unwrap();
            (df.compute().unwrap(), ages)
        })
    };
    let (rows, ages) = frames(&on_cluster);
    for s in [threads.clone(), Scheduler::Sync] {
        let (want_rows, want_ages) = frames(&s);
        assert!(rows.equals(&want_rows) && ages.equals(&want_ages), "{s:?}");
    }
    assert_eq!(rows.height(), 300);
    let bad = rask::bag::from_sequence(
        vec![
            rask::bag::Json(serde_json::json!({"age": 3})),
            rask::bag::Json(serde_json::json!({"age": "x"})),
        ],
        2,
    )
    .unwrap();
    let err = with_scheduler(on_cluster.clone(), || {
        bad.to_dataframe(&[("age", DataType::Int64)]).unwrap().compute().unwrap_err()
    });
    assert!(err.to_string().contains("partition 1, row 0, column \"age\""), "{err}");

    // Files written by the workers read back the same.
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("part-*.txt.gz").display().to_string();
    let paths = with_scheduler(on_cluster.clone(), || {
        read_text(&[&fixture("text_*.txt")]).unwrap().to_textfiles(&pattern).unwrap().compute()
    })
    .unwrap();
    assert_eq!(paths.len(), 3);
    let back = read_text(&[&dir.path().join("part-*.txt.gz").display().to_string()])
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(back, read_text(&[&fixture("text_*.txt")]).unwrap().compute().unwrap());

    // Registered element ops (compiled into the workers' `rask` binary) run
    // item by item on the cluster, as closures do on threads.
    use rask::ops::{has_digit, split_words, str_len, str_lower};
    let elementwise = |s: &Scheduler| {
        with_scheduler(s.clone(), || {
            let lines = read_text_with(&[&fixture("text_*.txt")], &opts).unwrap();
            let lengths = lines.map_op::<u64>(&str_len::OP).unwrap();
            let words = lines.flat_map_op::<String>(&split_words::OP).unwrap();
            let lower = words.map_op::<String>(&str_lower::OP).unwrap();
            (
                lengths.sum().compute().unwrap(),
                lengths.compute().unwrap(),
                lower.frequencies().compute().unwrap(),
                lines.filter_op(&has_digit::OP).unwrap().count().compute().unwrap(),
            )
        })
    };
    let (sum, lengths, freq, with_digits) = elementwise(&on_cluster);
    assert_eq!((sum, &lengths, &freq, with_digits), {
        let (s, l, f, d) = elementwise(&threads);
        (s, &l.clone(), &f.clone(), d)
    });
    let lines = with_scheduler(threads.clone(), || {
        read_text(&[&fixture("text_*.txt")]).unwrap().compute().unwrap()
    });
    assert_eq!(lengths, lines.iter().map(|l| l.len() as u64).collect::<Vec<_>>());
    assert_eq!(freq, want.1, "the corpus is lower case already");
    assert_eq!(with_digits, 0);

    // Folds and groups by registered ops: the same answers as the closures on threads.
    use rask::ops::{add_len, add_u64, count_item, str_initial};
    let folds = |s: &Scheduler| {
        with_scheduler(s.clone(), || {
            let lines = read_text_with(&[&fixture("text_*.txt")], &opts).unwrap();
            let words = lines.split_whitespace();
            let chars = lines.fold_op(0u64, &add_len::OP, &add_u64::OP).unwrap().compute().unwrap();
            let per_initial: Vec<(String, u64)> = words
                .foldby_op(&str_initial::OP, 0u64, &count_item::OP, &add_u64::OP)
                .unwrap()
                .compute()
                .unwrap();
            let groups = group_sizes(words.groupby_op::<String>(&str_initial::OP, 3).unwrap());
            (chars, per_initial, groups)
        })
    };
    let on = folds(&on_cluster);
    assert_eq!(on, folds(&threads));
    let closures = with_scheduler(threads.clone(), || {
        let words = read_text(&[&fixture("text_*.txt")]).unwrap().split_whitespace();
        words.foldby(|w| w[..1].to_string(), 0u64, |n, _| n + 1, |a, b| a + b).compute().unwrap()
    });
    let mut by_op = on.1.clone();
    by_op.sort();
    assert_eq!(by_op, closures);
    assert_eq!(on.2, closures.iter().map(|(k, n)| (k.clone(), *n as usize)).collect::<Vec<_>>());
    assert_eq!(on.0, lines.iter().map(|l| l.len() as u64).sum::<u64>());

    // A closure cannot go to a cluster: refused at submit, naming it.
    let err = with_scheduler(on_cluster, || {
        read_text(&[&fixture("text_0.txt")]).unwrap().map(|l| l.len() as u64).compute()
    })
    .unwrap_err();
    assert!(err.to_string().contains("bag-map"), "{err}");
}

#[test]
fn a_worker_killed_during_a_bag_shuffle_does_not_change_the_answer() {
    use rask::ops::{slow_lines, str_initial};
    let mut c = LocalCluster::with_options(ClusterOptions {
        n_workers: 3,
        threads_per_worker: 1,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        ..ClusterOptions::default()
    })
    .expect("cluster starts");
    let client = c.client().unwrap();
    let on_cluster = client.scheduler();
    let opts = TextOptions { blocksize: Some(1000) };
    let groups = move || {
        let lines = read_text_with(&[&fixture("text_*.txt")], &opts).unwrap();
        // 28 partitions of 50 ms on 3 workers: at least 450 ms of work.
        let slow = lines.map_partitions(|p| slow_lines(p));
        let words = slow.flat_map_op::<String>(&rask::ops::split_words::OP).unwrap();
        group_sizes(words.groupby_op::<String>(&str_initial::OP, 4).unwrap())
    };
    let want = with_scheduler(Scheduler::Sync, groups.clone());
    let running = {
        let s = on_cluster.clone();
        std::thread::spawn(move || with_scheduler(s, groups))
    };
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert!(!running.is_finished(), "the shuffle must still run when the worker dies");
    c.kill_worker(1).unwrap();
    assert_eq!(running.join().unwrap(), want);
    assert_eq!(client.workers().unwrap().len(), 2);
}
