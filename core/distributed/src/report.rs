//! [`performance_report`] for a computation on a cluster, as Dask's
//! `distributed.performance_report`: the scheduler's task stream and
//! per-prefix times over the computation, and the cluster's managed memory
//! sampled every 100 ms, in one self-contained HTML file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use rask_core::diagnostics::report::{sampler, PrefixTime, ReportData, StreamRun};
use serde_json::Value;

use crate::{Client, DistError};

fn managed_memory(a: &Value) -> u64 {
    a["workers"].as_array().map_or(0, |w| w.iter().map(|w| w["memory"].as_u64().unwrap_or(0)).sum())
}

/// Per-prefix (compute seconds, finished tasks, result bytes) of a snapshot's groups.
fn group_totals(a: &Value) -> BTreeMap<String, (f64, u64, u64)> {
    a["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            (
                g["prefix"].as_str().unwrap_or("").to_string(),
                (
                    g["compute_seconds"].as_f64().unwrap_or(0.0),
                    g["finished"].as_u64().unwrap_or(0),
                    g["nbytes"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

/// Runs `f` (which computes on `client`'s cluster) and writes a report of
/// what the cluster did meanwhile to `path`. The task stream holds the last
/// 20,000 task runs the scheduler keeps.
pub fn performance_report<R>(
    client: &Client,
    path: impl AsRef<Path>,
    f: impl FnOnce() -> R,
) -> Result<R, DistError> {
    let before = client.activity(u64::MAX)?;
    let since = before["stream_next"].as_u64().unwrap_or(0);
    let t0_ms = before["time_ms"].as_f64().unwrap_or(0.0);
    let start = Instant::now();
    let sampling = client.clone();
    let stop = sampler(start, move || sampling.activity(u64::MAX).ok().map(|a| managed_memory(&a)));
    let result = f();
    let seconds = start.elapsed().as_secs_f64();
    let memory = stop();
    let after = client.activity(since)?;
    let names: BTreeMap<u64, String> = after["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| (w["id"].as_u64().unwrap_or(0), w["name"].as_str().unwrap_or("").to_string()))
        .collect();
    let stream = after["stream"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let id = e["worker"].as_u64().unwrap_or(0);
            let prefix = e["prefix"].as_str().unwrap_or("");
            StreamRun {
                lane: names.get(&id).cloned().unwrap_or_else(|| format!("worker {id}")),
                // Transfers and disk I/O as Dask names them: `transfer-<prefix>`.
                prefix: match e["kind"].as_str() {
                    Some(kind) => format!("{kind}-{prefix}"),
                    None => prefix.to_string(),
                },
                start: ((e["start_ms"].as_f64().unwrap_or(0.0) - t0_ms) / 1e3).max(0.0),
                stop: ((e["stop_ms"].as_f64().unwrap_or(0.0) - t0_ms) / 1e3).max(0.0),
            }
        })
        .collect();
    // Groups are cumulative since the scheduler started: the report shows the difference.
    let was = group_totals(&before);
    let prefixes = group_totals(&after)
        .into_iter()
        .filter_map(|(prefix, (s, n, b))| {
            let (s0, n0, b0) = was.get(&prefix).copied().unwrap_or_default();
            (n > n0).then(|| PrefixTime {
                prefix,
                seconds: s - s0,
                tasks: n - n0,
                nbytes: Some(b - b0),
            })
        })
        .collect();
    ReportData {
        scheduler: format!("cluster at {}", client.address()),
        seconds,
        stream,
        prefixes,
        memory,
        memory_label: "cluster managed memory".into(),
    }
    .write(path.as_ref())
    .map_err(|e| DistError::Process {
        message: format!("cannot write the report {}: {e}", path.as_ref().display()),
    })?;
    Ok(result)
}
