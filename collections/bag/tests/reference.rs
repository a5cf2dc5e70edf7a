//! Every bag operation on a small corpus against dask.bag's results
//! (`tests/fixtures/expected.json`, written by `tests/fixtures/make_fixtures.py`
//! with dask 2026.8.0), on the Sync and Threads schedulers. Counts and
//! strings are compared exactly; means to 1e-12 relative.

use std::path::PathBuf;

use rask_bag::{from_sequence, read_json, read_text, read_text_with, Bag, TextOptions};
use rask_core::{with_scheduler, Scheduler};
use serde_json::Value;

rask_core::op! {
    /// Twice the input: an element op for `map_op`.
    pub fn double(x: i64) -> i64 { 2 * x }
    /// Whether the input is even: an element op for `filter_op`.
    pub fn even(x: i64) -> bool { x % 2 == 0 }
    /// The first letter of a word: a key op.
    pub fn initial(w: String) -> String { w[..1].to_string() }
    /// The length of a word: a key op.
    pub fn length(w: String) -> u64 { w.len() as u64 }
    /// A count plus one.
    pub fn plus_one(n: u64, _w: String) -> u64 { n + 1 }
    /// A total plus a line's length.
    pub fn plus_len(n: u64, l: String) -> u64 { n + l.len() as u64 }
    /// The sum of two counts.
    pub fn add(a: u64, b: u64) -> u64 { a + b }
}

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

fn pairs(v: &Value) -> Vec<(String, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().map(String::from).unwrap_or_else(|| p[0].to_string()),
                p[1].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A grouped bag's keys, each with its distinct items, all sorted (group
/// order and item order differ between shuffles).
fn distinct_per_key(groups: Bag<(u64, Vec<String>)>) -> Vec<(u64, Vec<String>)> {
    let mut out: Vec<(u64, Vec<String>)> = groups
        .compute()
        .unwrap()
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            v.dedup();
            (k, v)
        })
        .collect();
    out.sort();
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

fn schedulers() -> [Scheduler; 2] {
    [Scheduler::Sync, Scheduler::Threads { workers: 2 }]
}

fn lines() -> Bag<String> {
    read_text(&[&fixture("text_*.txt")]).unwrap()
}

#[test]
fn text_operations_match_dask_bag() {
    let e = expected();
    for s in schedulers() {
        with_scheduler(s.clone(), || {
            let lines = lines();
            assert_eq!(lines.npartitions(), 3, "one partition per file");
            let words = lines.split_whitespace();
            assert_eq!(lines.count().compute().unwrap(), e["n_lines"].as_u64().unwrap());
            assert_eq!(words.count().compute().unwrap(), e["n_words"].as_u64().unwrap());
            let freq = words.frequencies().compute().unwrap();
            assert_eq!(freq, pairs(&e["frequencies"]), "{s:?}");
            // The same counts by each path: words of file ranges (above), of
            // in-memory lines, and of words counted one by one.
            let in_memory = from_sequence(lines.compute().unwrap(), 4).unwrap().split_whitespace();
            assert_eq!(in_memory.frequencies().compute().unwrap(), freq);
            assert_eq!(words.map(|w| w).frequencies().compute().unwrap(), freq);
            assert_eq!(
                words.frequencies().most_common(5).compute().unwrap(),
                pairs(&e["most_common_5"])
            );
            let distinct: Vec<String> = serde_json::from_value(e["distinct"].clone()).unwrap();
            assert_eq!(words.distinct().compute().unwrap(), distinct);
            let top: Vec<String> = serde_json::from_value(e["topk_3"].clone()).unwrap();
            assert_eq!(words.topk(3).compute().unwrap(), top);
            let lengths = lines.map(|l| l.len() as i64);
            assert_eq!(lengths.sum().compute().unwrap(), e["line_length_sum"].as_f64().unwrap());
            assert!(close(
                lengths.mean().compute().unwrap(),
                e["line_length_mean"].as_f64().unwrap()
            ));
            let long = lines.filter(|l| l.len() > 60).count().compute().unwrap();
            assert_eq!(long, e["long_lines"].as_u64().unwrap());
            let first = words
                .foldby(|w| w[..1].to_string(), 0u64, |a, _| a + 1, |a, b| a + b)
                .compute()
                .unwrap();
            assert_eq!(first, pairs(&e["first_letter_counts"]));
            let by_len = distinct_per_key(words.groupby(|w| w.len() as u64, 3).unwrap());
            let want: Vec<(u64, Vec<String>)> =
                serde_json::from_value(e["by_length"].clone()).unwrap();
            assert_eq!(by_len, want);
            let take: Vec<String> = serde_json::from_value(e["take_3"].clone()).unwrap();
            assert_eq!(lines.take(3).compute().unwrap(), take);
            let chars =
                lines.fold(0u64, |a, l| a + l.len() as u64, |a, b| a + b).compute().unwrap();
            assert_eq!(chars, e["chars_fold"].as_u64().unwrap());
            // The same by registered ops (what runs on a cluster).
            let by_op = lines.fold_op(0u64, &plus_len::OP, &add::OP).unwrap().compute().unwrap();
            assert_eq!(by_op, chars);
            let mut first_op: Vec<(String, u64)> = words
                .foldby_op(&initial::OP, 0u64, &plus_one::OP, &add::OP)
                .unwrap()
                .compute()
                .unwrap();
            first_op.sort();
            assert_eq!(first_op, pairs(&e["first_letter_counts"]));
            let by_len_op = distinct_per_key(words.groupby_op::<u64>(&length::OP, 2).unwrap());
            assert_eq!(by_len_op, by_len);
            // Every partition count and partition split keeps the items in order.
            let all = lines.compute().unwrap();
            for n in [1, 2, 5, 7] {
                let r = lines.repartition(n).unwrap();
                assert_eq!(r.npartitions(), n);
                assert_eq!(r.compute().unwrap(), all, "repartition({n})");
            }
        });
    }
}

#[test]
fn blocks_and_compression_read_the_same_lines() {
    let whole = read_text(&[&fixture("text_2.txt")]).unwrap().compute().unwrap();
    let gz = read_text(&[&fixture("text_gz_2.txt.gz")]).unwrap().compute().unwrap();
    assert_eq!(gz, whole);
    for blocksize in [1, 7, 64, 1000, 4096, 1 << 20] {
        let b =
            read_text_with(&[&fixture("text_2.txt")], &TextOptions { blocksize: Some(blocksize) })
                .unwrap();
        assert_eq!(b.compute().unwrap(), whole, "blocksize {blocksize}");
    }
    let b =
        read_text_with(&[&fixture("text_2.txt")], &TextOptions { blocksize: Some(1000) }).unwrap();
    assert_eq!(b.npartitions(), 11);
}

#[test]
fn json_lines_match_dask_bag() {
    let e = expected();
    for s in schedulers() {
        with_scheduler(s, || {
            let people = read_json(
                &[&fixture("people.jsonl")],
                &TextOptions { blocksize: Some(5000) },
                false,
            )
            .unwrap();
            assert!(people.bag.npartitions() > 1);
            let ages = people.bag.pluck("age").map(|v| v.as_i64().unwrap());
            assert!(close(ages.mean().compute().unwrap(), e["ages_mean"].as_f64().unwrap()));
            let names: Vec<Value> = serde_json::from_value(e["names_first_3"].clone()).unwrap();
            let got: Vec<Value> = people
                .bag
                .pluck("name")
                .take(3)
                .compute()
                .unwrap()
                .into_iter()
                .map(|j| j.0)
                .collect();
            assert_eq!(got, names);
            let cities = people.bag.pluck("city").map(|v| v.as_str().unwrap().to_string());
            assert_eq!(cities.frequencies().compute().unwrap(), pairs(&e["city_frequencies"]));
            let tags = people.bag.pluck("tags").flat_map(|v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            });
            assert_eq!(tags.frequencies().compute().unwrap(), pairs(&e["tag_counts"]));
            assert_eq!(people.skipped.compute().unwrap(), 0);
        });
    }
}

#[test]
fn bad_input_says_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"a\": 1}\n{\"a\": 2}\n{not json\n\n{\"a\": 3}\n").unwrap();
    let path = bad.display().to_string();
    let err =
        read_json(&[&path], &TextOptions::default(), false).unwrap().bag.compute().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("{path}:3: malformed JSON")), "{msg}");
    // Skipped and counted instead, also across block boundaries.
    let lenient = read_json(&[&path], &TextOptions { blocksize: Some(9) }, true).unwrap();
    assert_eq!(lenient.bag.count().compute().unwrap(), 3);
    assert_eq!(lenient.skipped.compute().unwrap(), 1);

    let latin = dir.path().join("latin1.txt");
    std::fs::write(&latin, b"fine\nstill fine\ncaf\xe9\n").unwrap();
    let path = latin.display().to_string();
    for blocksize in [None, Some(12)] {
        let err =
            read_text_with(&[&path], &TextOptions { blocksize }).unwrap().compute().unwrap_err();
        assert!(err.to_string().contains(&format!("{path}:3: not valid UTF-8")), "{err}");
    }

    let missing = read_text(&[&dir.path().join("nope-*.txt").display().to_string()]).unwrap_err();
    assert!(missing.to_string().contains("no file matches"), "{missing}");
    assert!(from_sequence(vec![1i64], 0).is_err());
    assert!(lines().repartition(0).is_err());
    assert!(lines().to_textfiles("out.txt").is_err(), "a pattern without *");
    let r = from_sequence(Vec::<f64>::new(), 1).unwrap().mean().compute();
    assert!(r.unwrap_err().to_string().contains("empty bag"));
}

#[test]
fn text_files_round_trip_with_compression() {
    let dir = tempfile::tempdir().unwrap();
    let lines = lines();
    let want = lines.compute().unwrap();
    for ext in ["txt", "txt.gz", "txt.zst"] {
        let pattern = dir.path().join(format!("out-{ext}/part-*.{ext}")).display().to_string();
        let written = lines.to_textfiles(&pattern).unwrap().compute().unwrap();
        assert_eq!(written.len(), 3);
        let glob = dir.path().join(format!("out-{ext}/part-*.{ext}")).display().to_string();
        assert_eq!(read_text(&[&glob]).unwrap().compute().unwrap(), want, "{ext}");
    }
}

#[test]
fn sequences_partition_evenly_and_reduce_like_std() {
    let items: Vec<i64> = (0..1000).map(|i| (i * 7919) % 1013).collect();
    let b = from_sequence(items.clone(), 6).unwrap();
    assert_eq!(b.npartitions(), 6);
    assert_eq!(b.compute().unwrap(), items);
    assert_eq!(b.count().compute().unwrap(), 1000);
    assert_eq!(b.sum().compute().unwrap(), items.iter().sum::<i64>() as f64);
    let mut sorted = items.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(b.topk(4).compute().unwrap(), sorted[..4]);
    // More partitions than a tree level merges at once.
    let many = from_sequence(items.clone(), 50).unwrap();
    assert_eq!(many.frequencies().compute().unwrap().len(), {
        let mut d = items.clone();
        d.sort();
        d.dedup();
        d.len()
    });
    assert_eq!(from_sequence(Vec::<i64>::new(), 3).unwrap().count().compute().unwrap(), 0);
    // Registered element ops, item by item.
    let doubled = b.map_op::<i64>(&double::OP).unwrap().compute().unwrap();
    assert_eq!(doubled, items.iter().map(|x| 2 * x).collect::<Vec<_>>());
    let evens = b.filter_op(&even::OP).unwrap().compute().unwrap();
    assert_eq!(evens, items.iter().copied().filter(|x| x % 2 == 0).collect::<Vec<_>>());
    let pairs = from_sequence(vec![(1i64, 2i64)], 1).unwrap();
    let err = pairs.map_op::<i64>(&double::OP).unwrap_err();
    assert!(err.to_string().contains("register_bag_type"), "{err}");
    // A wrong output type fails when decoded, naming both types.
    let wrong = b.map_op::<String>(&double::OP).unwrap().compute().unwrap_err();
    assert!(wrong.to_string().contains("i64"), "{wrong}");
}

/// A record of `people.jsonl`, registered (`read_json_as` runs as registered ops).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Person {
    name: String,
    age: u32,
    city: String,
    tags: Vec<String>,
}
rask_bag::register_bag_type!(Person => base json);

/// The same record, not registered (`read_json_as` runs as closures).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct LocalPerson {
    name: String,
    age: u32,
    city: String,
    tags: Vec<String>,
}

#[test]
fn json_lines_into_a_user_type_match_dask_bag() {
    use rask_bag::read_json_as;
    let e = expected();
    let blocks = TextOptions { blocksize: Some(5000) };
    assert!(rask_bag::registry::lookup::<Person>("read_json").is_some());
    assert!(rask_bag::registry::lookup::<LocalPerson>("read_json").is_none());
    for s in schedulers() {
        with_scheduler(s, || {
            let people =
                read_json_as::<Person>(&[&fixture("people.jsonl")], &blocks, false).unwrap();
            assert!(people.bag.npartitions() > 1);
            let all = people.bag.compute().unwrap();
            assert_eq!(all.len(), 300);
            let mean = all.iter().map(|p| p.age as f64).sum::<f64>() / all.len() as f64;
            assert!(close(mean, e["ages_mean"].as_f64().unwrap()));
            let names: Vec<String> = serde_json::from_value(e["names_first_3"].clone()).unwrap();
            assert_eq!(all[..3].iter().map(|p| p.name.clone()).collect::<Vec<_>>(), names);
            let cities = people.bag.map(|p| p.city).frequencies().compute().unwrap();
            assert_eq!(cities, pairs(&e["city_frequencies"]));
            let tags = people.bag.flat_map(|p| p.tags).frequencies().compute().unwrap();
            assert_eq!(tags, pairs(&e["tag_counts"]));
            assert_eq!(people.skipped.compute().unwrap(), 0);

            // Unregistered: the same items through closures.
            let local =
                read_json_as::<LocalPerson>(&[&fixture("people.jsonl")], &blocks, false).unwrap();
            let local = local.bag.compute().unwrap();
            assert_eq!(local.len(), 300);
            assert!(local.iter().zip(&all).all(|(l, p)| l.name == p.name && l.age == p.age));

            // And back to JSON values: the struct's fields.
            let json = people.bag.to_json().take(1).compute().unwrap();
            assert_eq!(json[0]["name"], serde_json::json!(all[0].name));
            assert_eq!(json[0]["age"], serde_json::json!(all[0].age));
        });
    }
}

#[test]
fn a_record_that_does_not_fit_the_type_says_file_and_line() {
    use rask_bag::read_json_as;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("people.jsonl");
    let good = r#"{"name": "a", "age": 1, "city": "Oslo", "tags": []}"#;
    let text = format!(
        "{good}\n{good}\n\n{}\n{}\n{{broken\n{good}\n",
        r#"{"name": "b", "age": "old", "city": "Oslo", "tags": []}"#,
        r#"{"name": "c", "city": "Oslo", "tags": []}"#,
    );
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    for blocksize in [None, Some(40)] {
        let opts = TextOptions { blocksize };
        for err in [
            read_json_as::<Person>(&[&path], &opts, false).unwrap().bag.compute().unwrap_err(),
            read_json_as::<LocalPerson>(&[&path], &opts, false).unwrap().bag.compute().unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(msg.contains(&format!("{path}:4: the record does not fit")), "{msg}");
            assert!(msg.contains("invalid type: string \"old\""), "{msg}");
        }
        // Skipped and counted: the wrong type, the missing field and the broken line.
        let lenient = read_json_as::<Person>(&[&path], &opts, true).unwrap();
        assert_eq!(lenient.bag.count().compute().unwrap(), 3);
        assert_eq!(lenient.skipped.compute().unwrap(), 3);
    }
    // Without the bad-type line, the missing field is named at line 5.
    let only_missing = dir.path().join("missing.jsonl");
    std::fs::write(&only_missing, format!("{good}\n\n\n\n{}\n", r#"{"name": "c", "tags": []}"#))
        .unwrap();
    let p = only_missing.display().to_string();
    let err = read_json_as::<Person>(&[&p], &TextOptions::default(), false)
        .unwrap()
        .bag
        .compute()
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{p}:5: the record does not fit")), "{err}");
    assert!(err.contains("missing field `age`"), "{err}");
}
