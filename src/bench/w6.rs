//! W6 `w6_bag`: word count over `data/text/*.txt` (20 files of ~5 MB, ~13.5M
//! words; see `../shared/peers/README.md`): `read_text` (one partition per
//! file) → `split_whitespace` (Dask's `.str.split().flatten()`) →
//! `frequencies` → the 10 most common, timed with the file reads, as the
//! peers time them. Quality: the top 10, the total and the distinct word
//! counts, checked on every repeat.

use std::path::Path;

use rask_bag::Bag;
use rask_core::{ComputeOptions, Scheduler};
use serde_json::{json, Map, Value};

use super::{every_repeat, measure, record, BenchEnv, BenchError};

/// Top 10, total words and distinct words of one run.
type WordCount = (Vec<(String, u64)>, u64, u64);

fn words(data: &Path) -> Result<Bag<String>, BenchError> {
    let pattern = data.join("text/*.txt").display().to_string();
    let lines = rask_bag::read_text(&[&pattern]).map_err(|e| BenchError::Cluster {
        message: format!(
            "w6 needs the peers' text data ({e}); generate it with gen_data.py --only text"
        ),
    })?;
    if lines.npartitions() != 20 {
        return Err(BenchError::Cluster {
            message: format!(
                "w6 expects 20 text files in {pattern}, found {}",
                lines.npartitions()
            ),
        });
    }
    Ok(lines.split_whitespace())
}

/// One run: the top 10, and the totals from the same frequencies.
fn count(data: &Path, scheduler: &Scheduler) -> Result<WordCount, BenchError> {
    let freq = words(data)?.frequencies();
    let top = freq.most_common(10);
    let compute_err = |source| BenchError::Compute { workload: "w6_bag", source };
    // The top 10 and the totals come from one frequencies computation.
    let all = freq.to_delayed();
    let values =
        rask_core::compute_many(&[top.erase(), all.erase()], scheduler, &ComputeOptions::default())
            .map_err(compute_err)?;
    let mut it = values.into_iter();
    let top: Vec<(String, u64)> = it.next().expect("two outputs").take_decode().map_err(|e| {
        BenchError::Cluster { message: format!("w6: top 10 of an unexpected type: {e}") }
    })?;
    let all: Vec<(String, u64)> = it.next().expect("two outputs").take_decode().map_err(|e| {
        BenchError::Cluster { message: format!("w6: frequencies of an unexpected type: {e}") }
    })?;
    let total = all.iter().map(|(_, n)| n).sum();
    Ok((top, total, all.len() as u64))
}

/// Runs W6 on the threads scheduler (one thread per core, as the peers'
/// threads and processes), or on a 2-worker LocalCluster of `binary`.
pub fn run(
    env: &BenchEnv,
    data: &Path,
    cluster_binary: Option<&Path>,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let on = super::RunOn::new(cluster_binary)?;
    let (sec, runs, results) = measure(env.repeats, || count(data, &on.scheduler));
    let (top, total, distinct) = every_repeat("w6_bag", results, |a, b| a == b)?;
    let mut m = Map::new();
    m.insert("top10".into(), json!(top.iter().map(|(w, n)| json!([w, n])).collect::<Vec<_>>()));
    m.insert("total_words".into(), json!(total));
    m.insert("distinct_words".into(), json!(distinct));
    m.insert("words_per_second".into(), json!(total as f64 / sec));
    out(record(
        "w6_bag",
        json!({
            "scheduler": on.name,
            "num_workers": on.workers,
            "processes": on.processes,
            "npartitions": 20,
            "impl": "read_text -> split_whitespace -> frequencies -> most_common(10); split and count fused per partition, on each file's bytes (no string per line or word; dask makes a Python str per word): ASCII words of up to 15 bytes counted by a packed 16-byte key, longer ones by slice; partials tree-merged",
        }),
        sec,
        &runs,
        m,
    ));
    Ok(())
}
