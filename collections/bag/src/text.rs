//! Text and JSON lines in and out: `read_text` (globs; gzip and zstd by
//! extension; plain files split into byte ranges at line boundaries),
//! `read_json` (one JSON value per line, with an option to skip and count bad
//! lines) and `to_textfiles`. The file work runs in registered ops, so it
//! runs on a cluster's workers where the files are.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rask_core::files::GlobError;
use rask_core::{Data, Delayed};
use serde::{Deserialize, Serialize};

use crate::{Bag, BagError};

// Lists these ops take: partial counts, (sum, count) pairs, written paths.
rask_core::list_item!(u64);
rask_core::list_item!((f64, u64));
rask_core::list_item!(String);

/// How `read_text` and `read_json` cut files into partitions.
#[derive(Clone, Debug, Default)]
pub struct TextOptions {
    /// Bytes per partition of an uncompressed file (`None`: one partition per
    /// file, as Dask's default). Compressed files are read whole.
    pub blocksize: Option<u64>,
}

/// The compression of a file, from its extension.
fn compression(path: &str) -> Option<&'static str> {
    if path.ends_with(".gz") {
        Some("gzip")
    } else if path.ends_with(".zst") || path.ends_with(".zstd") {
        Some("zstd")
    } else {
        None
    }
}

/// The files `patterns` match ([`rask_core::files::expand_globs`]).
pub fn expand(patterns: &[&str]) -> Result<Vec<PathBuf>, BagError> {
    rask_core::files::expand_globs(patterns).map_err(|e| match e {
        GlobError::Pattern { pattern, message } => BagError::Pattern { pattern, message },
        GlobError::NoFiles { pattern } => BagError::NoFiles { pattern },
        other => BagError::Invalid { message: other.to_string() },
    })
}

/// Byte ranges `(start, end)` of one file's partitions (`end` = `u64::MAX`: to the end).
fn blocks(path: &Path, options: &TextOptions) -> Result<Vec<(u64, u64)>, BagError> {
    let whole = vec![(0, u64::MAX)];
    let Some(size) = options.blocksize else { return Ok(whole) };
    if size == 0 {
        return Err(BagError::Invalid { message: "blocksize must be at least 1 byte".into() });
    }
    if compression(&path.to_string_lossy()).is_some() {
        return Ok(whole);
    }
    let len = std::fs::metadata(path)
        .map_err(|e| BagError::Io { path: path.display().to_string(), message: e.to_string() })?
        .len();
    if len <= size {
        return Ok(whole);
    }
    Ok((0..len.div_ceil(size)).map(|i| (i * size, ((i + 1) * size).min(len))).collect())
}

/// Reads the bytes of the lines that start in `start..end` (the whole
/// decompressed file for `0..u64::MAX`) into `buf`. Returns where those
/// lines begin in `buf`, and the file offset of that byte.
fn read_block(path: &str, start: u64, end: u64, buf: &mut Vec<u8>) -> Result<(usize, u64), String> {
    let io = |e: std::io::Error| format!("cannot read {path}: {e}");
    buf.clear();
    let file = File::open(path).map_err(io)?;
    match compression(path) {
        Some("gzip") => {
            flate2::read::MultiGzDecoder::new(file).read_to_end(buf).map_err(io)?;
            return Ok((0, 0));
        }
        Some(_) => {
            zstd::Decoder::new(file).map_err(io)?.read_to_end(buf).map_err(io)?;
            return Ok((0, 0));
        }
        None => {}
    }
    // One byte before the range tells whether the range starts a line.
    let from = start.saturating_sub(1);
    let len = file.metadata().map_err(io)?.len();
    buf.reserve(end.min(len).saturating_sub(from) as usize + 1);
    let mut reader = BufReader::with_capacity(1 << 16, file);
    reader.seek(SeekFrom::Start(from)).map_err(io)?;
    (&mut reader).take(end.saturating_sub(from)).read_to_end(buf).map_err(io)?;
    if end != u64::MAX && buf.last().is_some_and(|&b| b != b'\n') {
        // The last line started in the range: it is ours to the end.
        reader.read_until(b'\n', buf).map_err(io)?;
    }
    if start == 0 {
        return Ok((0, 0));
    }
    // Skip the line that began before `start` (the previous block's).
    let skip = match memchr::memchr(b'\n', buf) {
        Some(i) => i + 1,
        None => buf.len(),
    };
    Ok((skip, from + skip as u64))
}

/// Buffers larger than this are not kept for the next block (so a worker
/// thread holds at most this much between blocks).
const KEEP_BUFFER_BYTES: usize = 8 << 20;

thread_local! {
    /// The read buffer of this thread's last block. Reusing it spares
    /// faulting in fresh zeroed pages for every block (14% of a word count's
    /// time); it carries no data from one block to the next.
    static BLOCK_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls `f` with the bytes of the lines that start in `start..end` of
/// `path` (see [`read_block`]) and their file offset.
fn with_block<R>(
    path: &str,
    start: u64,
    end: u64,
    f: impl FnOnce(&[u8], u64) -> Result<R, String>,
) -> Result<R, String> {
    let mut buf = BLOCK_BUFFER.with(|b| b.take());
    let read = read_block(path, start, end, &mut buf);
    let out = read.and_then(|(skip, offset)| f(&buf[skip..], offset));
    if buf.capacity() <= KEEP_BUFFER_BYTES {
        BLOCK_BUFFER.with(|b| *b.borrow_mut() = buf);
    }
    out
}

/// Lines before file offset `at` (only on the error path: it reads the prefix).
fn lines_before(path: &str, at: u64) -> u64 {
    let Ok(f) = File::open(path) else { return 0 };
    let mut prefix = Vec::new();
    if f.take(at).read_to_end(&mut prefix).is_err() {
        return 0;
    }
    memchr::memchr_iter(b'\n', &prefix).count() as u64
}

/// The words of a line, as `split_whitespace` (for ASCII lines, a byte
/// split on the same six whitespace bytes: the same words, faster).
fn words(line: &str) -> Box<dyn Iterator<Item = &str> + '_> {
    if line.is_ascii() {
        Box::new(
            line.split(|c: char| crate::wordcount::is_space(c as u8)).filter(|w| !w.is_empty()),
        )
    } else {
        Box::new(line.split_whitespace())
    }
}

/// Splits checked UTF-8 into lines without their `\n` / `\r\n`.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let empty = text.is_empty();
    text.split('\n').filter(move |_| !empty).map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// Checks a block is UTF-8, or says where it is not (file and line).
fn as_text<'a>(path: &str, buf: &'a [u8], offset: u64) -> Result<&'a str, String> {
    std::str::from_utf8(buf).map_err(|e| {
        let bad = e.valid_up_to();
        let line = lines_before(path, offset)
            + memchr::memchr_iter(b'\n', &buf[..bad]).count() as u64
            + 1;
        format!(
            "{path}:{line}: not valid UTF-8 (byte {} of the file); read_text reads UTF-8 text: convert the file (e.g. iconv) or read it as bytes",
            offset + bad as u64
        )
    })
}

/// A JSON value, as a bag item. It crosses processes as JSON text (the
/// compact binary encoding between processes cannot carry
/// `serde_json::Value`'s self-describing form); it derefs to the value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Json(pub serde_json::Value);

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map(Json).map_err(serde::de::Error::custom)
    }
}

impl std::ops::Deref for Json {
    type Target = serde_json::Value;
    fn deref(&self) -> &serde_json::Value {
        &self.0
    }
}

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Self {
        Json(v)
    }
}

/// The word frequencies of the lines that start in bytes `start..end` of a
/// file, counted on the file's bytes (no string per line or word).
pub fn block_word_frequencies(
    path: &str,
    start: u64,
    end: u64,
) -> Result<Vec<(String, u64)>, String> {
    with_block(path, start, end, |buf, offset| {
        let text = as_text(path, buf, offset)?;
        Ok(crate::wordcount::word_frequencies(text))
    })
}

/// One `T` per non-blank line of bytes `start..end` of a JSON-lines file
/// (`T`'s serde form; [`read_json_as`]), and how many bad lines were
/// skipped (only with `skip_bad`). A line that is not JSON, or does not fit
/// `T` (a missing field, a wrong type), fails with the file and line.
pub fn read_json_records<T: serde::de::DeserializeOwned>(
    path: &str,
    start: u64,
    end: u64,
    skip_bad: bool,
) -> Result<(Vec<T>, u64), String> {
    read_json_lines(path, start, end, skip_bad, |line| serde_json::from_str::<T>(line))
}

/// The lines of bytes `start..end` parsed by `parse` (blank lines left out).
fn read_json_lines<T>(
    path: &str,
    start: u64,
    end: u64,
    skip_bad: bool,
    parse: impl Fn(&str) -> serde_json::Result<T>,
) -> Result<(Vec<T>, u64), String> {
    with_block(path, start, end, |buf, offset| {
        let text = as_text(path, buf, offset)?;
        let (mut rows, mut skipped) = (Vec::new(), 0);
        for (i, line) in split_lines(text).enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match parse(line) {
                Ok(v) => rows.push(v),
                Err(_) if skip_bad => skipped += 1,
                Err(e) => {
                    let n = lines_before(path, offset) + i as u64 + 1;
                    let what = match e.classify() {
                        serde_json::error::Category::Data => {
                            format!("the record does not fit {}: {e}", std::any::type_name::<T>())
                        }
                        _ => format!("malformed JSON: {e}"),
                    };
                    return Err(format!(
                        "{path}:{n}: {what}; fix the line, or read with skip_bad_lines to skip and count such lines"
                    ));
                }
            }
        }
        Ok((rows, skipped))
    })
}

/// The lines of one JSON-lines block, and how many bad lines were skipped.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JsonBlock {
    /// The parsed lines.
    pub rows: Vec<Json>,
    /// Lines that were not JSON (only with `skip_bad`).
    pub skipped: u64,
}

rask_core::op! {
    /// The lines (without line ends) that start in bytes `start..end` of the file.
    pub fn read_text_block(path: String, start: u64, end: u64) -> Result<Vec<String>, String> {
        with_block(&path, start, end, |buf, offset| {
            let text = as_text(&path, buf, offset)?;
            Ok(split_lines(text).map(str::to_string).collect())
        })
    }

    /// The whitespace-separated words of the lines, flattened (Python's `str.split()`).
    pub fn split_whitespace_words(lines: Vec<String>) -> Vec<String> {
        let mut out = Vec::with_capacity(lines.len() * 8);
        for l in &lines {
            out.extend(words(l).map(str::to_string));
        }
        out
    }

    /// One JSON value per non-blank line of bytes `start..end`.
    pub fn read_json_block(path: String, start: u64, end: u64, skip_bad: bool) -> Result<JsonBlock, String> {
        let (rows, skipped) = read_json_lines(&path, start, end, skip_bad, |line| serde_json::from_str(line).map(Json))?;
        Ok(JsonBlock { rows, skipped })
    }

    /// The rows of a JSON block.
    pub fn json_rows(block: JsonBlock) -> Vec<Json> {
        block.rows
    }

    /// The bad lines a JSON block skipped.
    pub fn json_skipped(block: JsonBlock) -> u64 {
        block.skipped
    }

    /// The field `key` of every row (an index, for arrays).
    pub fn pluck_field(rows: Vec<Json>, key: String) -> Result<Vec<Json>, String> {
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| {
                let found = match &row.0 {
                    serde_json::Value::Object(m) => m.get(&key).cloned(),
                    serde_json::Value::Array(a) => key.parse::<usize>().ok().and_then(|j| a.get(j).cloned()),
                    _ => None,
                };
                found.map(Json).ok_or_else(|| {
                    let shown = row.to_string();
                    let shown = if shown.len() > 200 { format!("{}…", &shown[..200]) } else { shown };
                    format!("pluck({key:?}): row {i} of the partition has no such field: {shown}")
                })
            })
            .collect()
    }

    /// Writes lines to `path` (gzip or zstd by extension) and returns the path.
    pub fn write_text(path: String, lines: Vec<String>) -> Result<String, String> {
        let io = |e: std::io::Error| format!("cannot write {path}: {e}");
        if let Some(dir) = Path::new(&path).parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::io::BufWriter::new(File::create(&path).map_err(io)?);
        let mut out: Box<dyn Write> = match compression(&path) {
            Some("gzip") => Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::default())),
            Some(_) => Box::new(zstd::Encoder::new(file, 3).map_err(io)?.auto_finish()),
            None => Box::new(file),
        };
        for l in &lines {
            out.write_all(l.as_bytes()).map_err(io)?;
            out.write_all(b"\n").map_err(io)?;
        }
        out.flush().map_err(io)?;
        drop(out);
        Ok(path)
    }

    /// Sum and count of partial (sum, count) pairs.
    pub fn merge_sum_count(parts: Vec<(f64, u64)>) -> (f64, u64) {
        parts.into_iter().fold((0.0, 0), |(s, n), (a, b)| (s + a, n + b))
    }

    /// The mean of a (sum, count) pair.
    pub fn mean_of(sc: (f64, u64)) -> Result<f64, String> {
        if sc.1 == 0 {
            Err("the mean of an empty bag is undefined".to_string())
        } else {
            Ok(sc.0 / sc.1 as f64)
        }
    }

    /// The sum of a (sum, count) pair.
    pub fn sum_of(sc: (f64, u64)) -> f64 {
        sc.0
    }

    /// The sum of counts.
    pub fn sum_counts(counts: Vec<u64>) -> u64 {
        counts.into_iter().sum()
    }

    /// The paths of the written files, in partition order.
    pub fn written_paths(paths: Vec<String>) -> Vec<String> {
        paths
    }
}

/// Lines of text files, one partition per file (or per `blocksize` bytes of
/// an uncompressed file). Lines come without their `\n` / `\r\n`; `.gz` and
/// `.zst` files are decompressed. Undecodable UTF-8 fails the partition with
/// the file and line.
pub fn read_text(patterns: &[&str]) -> Result<Bag<String>, BagError> {
    read_text_with(patterns, &TextOptions::default())
}

/// [`read_text`] with options.
pub fn read_text_with(patterns: &[&str], options: &TextOptions) -> Result<Bag<String>, BagError> {
    let mut parts = Vec::new();
    let mut ranges = Vec::new();
    for path in expand(patterns)? {
        let name = path.display().to_string();
        for (start, end) in blocks(&path, options)? {
            parts.push(read_text_block(name.clone(), start, end));
            ranges.push((name.clone(), start, end));
        }
    }
    let mut bag = Bag::from_partitions(parts);
    bag.blocks = Some(ranges);
    Ok(bag)
}

/// JSON lines read by [`read_json`] (as [`Json`] values) or [`read_json_as`]
/// (as `T`): the rows, and the number of bad lines skipped (always 0 unless
/// `skip_bad_lines`).
pub struct JsonLines<T = Json> {
    /// One item per non-blank line.
    pub bag: Bag<T>,
    /// Lines that were skipped (not JSON or, for [`read_json_as`], not a `T`).
    pub skipped: Delayed<u64>,
}

/// One JSON value per non-blank line of the files. A malformed line fails
/// with its file and line number, unless `skip_bad_lines`, which skips such
/// lines and counts them in [`JsonLines::skipped`].
pub fn read_json(
    patterns: &[&str],
    options: &TextOptions,
    skip_bad_lines: bool,
) -> Result<JsonLines, BagError> {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for (name, start, end) in json_blocks(patterns, options)? {
        let block = read_json_block(name, start, end, skip_bad_lines);
        rows.push(json_rows(&block));
        skipped.push(json_skipped(&block));
    }
    Ok(JsonLines { bag: Bag::from_partitions(rows), skipped: sum_counts(skipped) })
}

/// One `T` per non-blank line of the files, read through `T`'s serde form
/// (as `serde_json::from_str::<T>`), so a record's fields become a struct's.
/// A line that is not JSON, or not a `T` (a missing field, a wrong type),
/// fails with its file and line number, unless `skip_bad_lines`, which
/// skips and counts it.
///
/// Runs on a cluster when `T` is registered with
/// [`register_bag_type!`](crate::register_bag_type)`(T => base json)` (the
/// workers must be built from a binary that registers it); otherwise the
/// reads are closures, for the local schedulers.
///
/// ```
/// #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Person { name: String, age: u32 }
/// rask_bag::register_bag_type!(Person => base json);
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("people.jsonl");
/// std::fs::write(&path, "{\"name\": \"Ada\", \"age\": 36}\n{\"name\": \"Alan\", \"age\": 41}\n")?;
/// let people = rask_bag::read_json_as::<Person>(&[path.to_str().unwrap()], &Default::default(), false)?;
/// assert_eq!(people.bag.compute()?[1], Person { name: "Alan".into(), age: 41 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_json_as<T: Data>(
    patterns: &[&str],
    options: &TextOptions,
    skip_bad_lines: bool,
) -> Result<JsonLines<T>, BagError> {
    type Block<T> = (Vec<T>, u64);
    let read = crate::registry::lookup::<T>("read_json");
    let (rows_op, skipped_op) =
        (crate::registry::lookup::<T>("json_rows"), crate::registry::lookup::<T>("json_skipped"));
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for (name, start, end) in json_blocks(patterns, options)? {
        let args = || {
            vec![
                crate::arg::<String>(name.clone()),
                crate::arg::<u64>(start),
                crate::arg::<u64>(end),
                crate::arg::<bool>(skip_bad_lines),
            ]
        };
        let block: Delayed<Block<T>> = match read {
            Some(op) => Delayed::from_op(op, args()),
            None => rask_core::try_delayed(
                "bag-read-json-as",
                |path: String, start: u64, end: u64, skip: bool| {
                    read_json_records::<T>(&path, start, end, skip)
                },
            )
            .call((name.clone(), start, end, skip_bad_lines)),
        };
        rows.push(match rows_op {
            Some(op) => Delayed::from_op(op, vec![crate::arg::<Block<T>>(&block)]),
            None => block.map("bag-json-rows", |b: Block<T>| b.0),
        });
        skipped.push(match skipped_op {
            Some(op) => Delayed::from_op(op, vec![crate::arg::<Block<T>>(&block)]),
            None => block.map("bag-json-skipped", |b: Block<T>| b.1),
        });
    }
    Ok(JsonLines { bag: Bag::from_partitions(rows), skipped: sum_counts(skipped) })
}

/// The (file, start, end) blocks of JSON-lines files.
fn json_blocks(
    patterns: &[&str],
    options: &TextOptions,
) -> Result<Vec<(String, u64, u64)>, BagError> {
    let mut out = Vec::new();
    for path in expand(patterns)? {
        let name = path.display().to_string();
        for (start, end) in blocks(&path, options)? {
            out.push((name.clone(), start, end));
        }
    }
    Ok(out)
}

impl Bag<String> {
    /// The whitespace-separated words of every item, flattened (Dask's
    /// `.str.split().flatten()`; Rust's `split_whitespace`, which differs from
    /// Python's `str.split()` only on the ASCII separators \x1c–\x1f).
    pub fn split_whitespace(&self) -> Bag<String> {
        let mut words =
            Bag::from_partitions(self.partitions().iter().map(split_whitespace_words).collect());
        words.words_of = Some(match &self.blocks {
            Some(blocks) => crate::WordsOf::Blocks(blocks.clone()),
            None => crate::WordsOf::Lines(self.partitions().to_vec()),
        });
        words
    }

    /// Writes one file per partition: `pattern` holds one `*`, replaced by
    /// the partition number (`out/part-*.txt.gz`); gzip or zstd by extension.
    /// Returns the paths written, once computed.
    pub fn to_textfiles(&self, pattern: &str) -> Result<Delayed<Vec<String>>, BagError> {
        if pattern.matches('*').count() != 1 {
            return Err(BagError::Invalid {
                message: format!(
                    "to_textfiles({pattern:?}): the pattern needs exactly one `*` (the partition number), e.g. out/part-*.txt.gz"
                ),
            });
        }
        let written: Vec<Delayed<String>> = self
            .partitions()
            .iter()
            .enumerate()
            .map(|(i, p)| write_text(pattern.replace('*', &i.to_string()), p))
            .collect();
        Ok(written_paths(written))
    }
}

impl Bag<Json> {
    /// The field `key` of every item (an index, for arrays); a missing field
    /// fails with the row.
    pub fn pluck(&self, key: &str) -> Bag<Json> {
        Bag::from_partitions(
            self.partitions().iter().map(|p| pluck_field(p, key.to_string())).collect(),
        )
    }
}
