//! A user's own record type on a cluster, the way a user's program does it:
//! this test binary registers `Person` (`register_bag_type!`) and an element
//! op over it, and is itself the cluster's binary (`main` first hands
//! `scheduler`/`worker` command lines to `run_if_subcommand`), so its
//! workers know the type. Checked: JSON lines read into `Person` on the
//! workers give what Sync and Threads give; `to_dataframe` and an element op
//! on the typed bag run there too; a record that does not fit names its file
//! and line from the worker.
//!
//! `harness = false` (Cargo.toml): a libtest `main` could not serve as the
//! workers' `main`.

use std::path::PathBuf;
use std::process::ExitCode;

use rask::bag::{read_json_as, TextOptions};
use rask::dataframe::polars::prelude::{col, DataType};
use rask::dataframe::BagToDataFrame;
use rask::distributed::{ClusterOptions, LocalCluster};
use rask::{with_scheduler, Scheduler};

/// A record of `people.jsonl`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Person {
    name: String,
    age: u32,
    city: String,
    tags: Vec<String>,
}
rask::bag::register_bag_type!(Person => base json);

rask::op! {
    /// A person's age next year (an element op over the user type).
    pub fn age_next_year(p: Person) -> u64 { u64::from(p.age) + 1 }
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("collections/bag/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

type Results = (Vec<Person>, u64, Vec<u64>, rask::dataframe::polars::prelude::DataFrame);

fn run(scheduler: &Scheduler) -> Results {
    with_scheduler(scheduler.clone(), || {
        let opts = TextOptions { blocksize: Some(4000) };
        let people = read_json_as::<Person>(&[&fixture("people.jsonl")], &opts, false).unwrap();
        assert!(people.bag.npartitions() > 2);
        let next = people.bag.map_op::<u64>(&age_next_year::OP).unwrap();
        let by_city = people
            .bag
            .to_dataframe(&[("city", DataType::String), ("age", DataType::Int64)])
            .unwrap()
            .group_by(["city"])
            .agg([col("age").sum().alias("age_sum"), col("age").count().alias("n")])
            .unwrap()
            .compute()
            .unwrap()
            .sort(["city"], Default::default())
            .unwrap();
        (
            people.bag.compute().unwrap(),
            people.skipped.compute().unwrap(),
            next.compute().unwrap(),
            by_city,
        )
    })
}

fn checks() {
    let cluster = LocalCluster::with_options(ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(std::env::current_exe().unwrap()),
        ..ClusterOptions::default()
    })
    .expect("cluster starts");
    let client = cluster.client().unwrap();
    assert_eq!(client.workers().unwrap().len(), 2);
    let on_cluster = client.scheduler();

    let want = run(&Scheduler::Sync);
    assert_eq!(want.0.len(), 300);
    assert_eq!(want.1, 0);
    assert_eq!(want.2, want.0.iter().map(|p| u64::from(p.age) + 1).collect::<Vec<_>>());
    assert_eq!(want.3.column("n").unwrap().as_materialized_series().sum::<u64>().unwrap(), 300);
    for s in [Scheduler::Threads { workers: 2 }, on_cluster.clone()] {
        let got = run(&s);
        assert_eq!((&got.0, got.1, &got.2), (&want.0, want.1, &want.2), "{s:?}");
        assert!(got.3.equals(&want.3), "{s:?}: {} vs {}", got.3, want.3);
    }

    // A record that does not fit: the worker names the file and line.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("people.jsonl");
    let good = r#"{"name": "a", "age": 1, "city": "Oslo", "tags": []}"#;
    let bad = r#"{"name": "b", "age": -3, "city": "Oslo", "tags": []}"#;
    std::fs::write(&path, format!("{good}\n{good}\n{bad}\n")).unwrap();
    let path = path.display().to_string();
    let err = with_scheduler(on_cluster.clone(), || {
        read_json_as::<Person>(&[&path], &TextOptions::default(), false)
            .unwrap()
            .bag
            .compute()
            .unwrap_err()
    });
    let msg = err.to_string();
    assert!(msg.contains(&format!("{path}:3: the record does not fit")), "{msg}");
    assert!(msg.contains("-3"), "{msg}");
    let skipped = with_scheduler(on_cluster, || {
        let lenient = read_json_as::<Person>(&[&path], &TextOptions::default(), true).unwrap();
        (lenient.bag.count().compute().unwrap(), lenient.skipped.compute().unwrap())
    });
    assert_eq!(skipped, (2, 1));
}

fn main() -> ExitCode {
    // Started by the LocalCluster as one of its processes.
    if let Some(code) = rask::distributed::cli::run_if_subcommand() {
        return code;
    }
    // `--list` (test runners asking what is here): one test.
    if std::env::args().any(|a| a == "--list") {
        println!("user_types_on_a_cluster: test");
        return ExitCode::SUCCESS;
    }
    checks();
    println!("test user_types_on_a_cluster ... ok");
    ExitCode::SUCCESS
}
