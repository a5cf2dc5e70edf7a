//! The scheduler file: a small JSON record of where the scheduler can be
//! reached, written by the scheduler (or `rask ssh`) and read by workers and
//! launchers that start beside it.

use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `json` to `path` so that a reader never sees a partial file: the
/// text goes to a sibling first and is renamed over `path` in one step.
pub fn write(path: &Path, json: &str) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write the scheduler file {}: {e}", path.display())
    })
}

/// Waits up to `limit` for `path` to hold a scheduler record and returns it.
/// A file that is missing, empty or not yet valid JSON (a writer without
/// [`write()`]) is read again until the deadline.
pub fn wait(path: &Path, limit: Duration) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + limit;
    loop {
        let last = match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) if v["address"].is_string() => return Ok(v),
                Ok(_) => format!("it has no \"address\" string: {}", text.trim()),
                Err(e) => format!("it is not JSON ({e})"),
            },
            Err(e) => format!("it cannot be read ({e})"),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "scheduler file {} not ready within {} s: {last}; is the scheduler started with --scheduler-file on this path?",
                path.display(),
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scheduler's address from the file at `path`, waiting for it as
/// [`wait()`] does (workers and `rask dl launch` start from this).
pub fn address(path: &Path, limit: Duration) -> Result<String, String> {
    // `wait` returns only a record whose address is a string.
    let v = wait(path, limit)?;
    Ok(v["address"].as_str().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_is_read_back_and_a_partial_one_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, "{\"addr").unwrap();
        let err = wait(&path, Duration::from_millis(250)).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                write(&path, "{\"address\": \"10.0.0.1:8786\"}\n").unwrap();
            })
        };
        let v = wait(&path, Duration::from_secs(10)).unwrap();
        writer.join().unwrap();
        assert_eq!(v["address"], "10.0.0.1:8786");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
        assert_eq!(address(&path, Duration::from_secs(1)).unwrap(), "10.0.0.1:8786");
        write(&path, "{\"workers\": 2}\n").unwrap();
        let err = address(&path, Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("no \"address\" string"), "{err}");
    }
}
