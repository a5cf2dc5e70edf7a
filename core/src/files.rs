//! File lists from glob patterns, as the collections' readers take them.

use std::path::PathBuf;

/// Why a list of patterns gave no files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GlobError {
    /// The pattern is not a valid glob.
    #[error("invalid file pattern {pattern:?}: {message}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// The pattern matches no file.
    #[error("no files match {pattern:?}")]
    NoFiles {
        /// The pattern as given.
        pattern: String,
    },
}

/// The files `patterns` match, sorted per pattern, in the order of the
/// patterns; a pattern that matches nothing is an error (a typo should not
/// read as an empty collection).
pub fn expand_globs(patterns: &[&str]) -> Result<Vec<PathBuf>, GlobError> {
    let mut out = Vec::new();
    for p in patterns {
        let paths = glob::glob(p)
            .map_err(|e| GlobError::Pattern { pattern: p.to_string(), message: e.to_string() })?;
        let mut found: Vec<PathBuf> =
            paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
        if found.is_empty() {
            return Err(GlobError::NoFiles { pattern: p.to_string() });
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_sorted_and_empty_ones_are_errors() {
        let dir = std::env::temp_dir().join(format!("rask-glob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in ["b.txt", "a.txt", "c.csv"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let txt = dir.join("*.txt").display().to_string();
        let csv = dir.join("*.csv").display().to_string();
        let got = expand_globs(&[&csv, &txt]).unwrap();
        let names: Vec<_> =
            got.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["c.csv", "a.txt", "b.txt"], "per pattern, sorted; directories skipped");
        let none = dir.join("*.parquet").display().to_string();
        assert_eq!(expand_globs(&[&none]), Err(GlobError::NoFiles { pattern: none.clone() }));
        assert!(matches!(expand_globs(&["[unclosed"]), Err(GlobError::Pattern { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
