//! CSV and Parquet in and out. The graph is planned here, on the caller,
//! from cheap reads (a CSV's header and first rows, a Parquet footer); the
//! reading itself runs in registered ops, so it runs on a cluster's workers.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use rask_core::files::GlobError;

use crate::frame::{Frame, Wire};
use crate::{ops, DataFrame, FrameError};

/// How [`read_csv`] reads and cuts its files.
#[derive(Clone, Debug)]
pub struct CsvOptions {
    /// Bytes per partition (`None`: one partition per file). Blocks start and
    /// end at line boundaries; see `quoted_newlines` for fields that span lines.
    pub blocksize: Option<u64>,
    /// Whether quoted fields may hold newlines. Then block boundaries are
    /// found by one scan of each file that tracks the quotes (a pass over
    /// the bytes when the graph is built); otherwise a block starts after
    /// the first newline past its offset, and a quoted newline near a
    /// boundary breaks the rows there (as `dd.read_csv` with a blocksize).
    pub quoted_newlines: bool,
    /// The field separator.
    pub separator: u8,
    /// Whether each file starts with a header line.
    pub has_header: bool,
    /// Rows of the first file read to infer the column types.
    pub infer_schema_length: usize,
    /// The schema, instead of inferring it.
    pub schema: Option<SchemaRef>,
    /// Only these columns.
    pub columns: Option<Vec<String>>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            blocksize: Some(64 << 20),
            separator: b',',
            has_header: true,
            infer_schema_length: 1000,
            schema: None,
            columns: None,
            quoted_newlines: false,
        }
    }
}

/// How [`read_parquet`] reads and cuts its files.
#[derive(Clone, Debug, Default)]
pub struct ParquetOptions {
    /// Only these columns (projection pushdown: the others are not read).
    pub columns: Option<Vec<String>>,
    /// Keep only the rows where this holds, applied as each partition is
    /// read (predicate pushdown: filtered rows never leave the read task).
    /// Row groups whose min/max statistics rule out every row are not read
    /// at all ([`crate::prune`]).
    pub filter: Option<Expr>,
    /// One partition per row group instead of one per file.
    pub split_row_groups: bool,
}

/// The files `patterns` match ([`rask_core::files::expand_globs`]).
pub fn expand(patterns: &[&str]) -> Result<Vec<PathBuf>, FrameError> {
    rask_core::files::expand_globs(patterns).map_err(|e| match e {
        GlobError::Pattern { pattern, message } => FrameError::Pattern { pattern, message },
        GlobError::NoFiles { pattern } => FrameError::NoFiles { pattern },
        other => FrameError::Invalid { message: other.to_string() },
    })
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> FrameError {
    FrameError::Io { path: path.display().to_string(), message: e.to_string() }
}

fn path_str(path: &Path) -> Result<String, FrameError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| io_err(path, "the path is not valid UTF-8; rename the file"))
}

/// A lazily read dataframe of the CSV files `patterns` match (globs), in
/// byte blocks of `options.blocksize`. The schema comes from the first
/// file's first rows (or `options.schema`); every file must have the same
/// header.
pub fn read_csv(patterns: &[&str], options: &CsvOptions) -> Result<DataFrame, FrameError> {
    if options.blocksize == Some(0) {
        return Err(FrameError::Invalid {
            message:
                "read_csv: blocksize must be at least 1 byte (or None: one partition per file)"
                    .into(),
        });
    }
    let files = expand(patterns)?;
    let first = &files[0];
    let schema = match &options.schema {
        Some(s) => s.clone(),
        None => infer_csv_schema(first, options)?,
    };
    let header =
        if options.has_header { Some(csv_header(first, options.separator)?) } else { None };
    let mut parts = Vec::new();
    let columns = options.columns.clone();
    for file in &files {
        if let Some(first_header) = &header {
            let this = csv_header(file, options.separator)?;
            if &this != first_header {
                return Err(FrameError::SchemaMismatch {
                    path: file.display().to_string(),
                    message: header_difference(&this, first_header, first),
                });
            }
        }
        let len = std::fs::metadata(file).map_err(|e| io_err(file, e))?.len();
        let path = path_str(file)?;
        let step = options.blocksize.unwrap_or(u64::MAX).max(1);
        let bounds = if options.quoted_newlines && step < len {
            row_boundaries(file, step, options.separator).map_err(|e| io_err(file, e))?
        } else {
            (1..len.div_ceil(step)).map(|k| k * step).collect()
        };
        let starts = std::iter::once(0).chain(bounds.iter().copied());
        let ends = bounds.iter().copied().chain(std::iter::once(len));
        for (start, end) in starts.zip(ends) {
            parts.push(ops::read_csv_block(
                path.clone(),
                start,
                end,
                CsvSpec {
                    has_header: options.has_header,
                    separator: options.separator,
                    columns: columns.clone(),
                    schema: Wire(schema.clone()),
                },
            ));
        }
    }
    let out_schema = match &options.columns {
        Some(cols) => {
            let mut s = Schema::with_capacity(cols.len());
            for c in cols {
                let dtype = schema.get(c).ok_or_else(|| FrameError::MissingColumn {
                    column: c.clone(),
                    available: schema.iter_names().map(|n| n.to_string()).collect(),
                })?;
                s.insert(c.as_str().into(), dtype.clone());
            }
            Arc::new(s)
        }
        None => schema,
    };
    Ok(DataFrame::from_parts(parts, out_schema))
}

/// What a CSV block task needs besides its byte range.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CsvSpec {
    /// Whether the file has a header line (only block 0 reads it).
    pub has_header: bool,
    /// The field separator.
    pub separator: u8,
    /// Only these columns.
    pub columns: Option<Vec<String>>,
    /// The whole file's schema.
    pub schema: Wire<SchemaRef>,
}

fn infer_csv_schema(path: &Path, options: &CsvOptions) -> Result<SchemaRef, FrameError> {
    // Only the first lines are read (and parsed): the header and
    // `infer_schema_length` rows.
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut head = Vec::new();
    let mut r = BufReader::new(f);
    for _ in 0..options.infer_schema_length + usize::from(options.has_header) {
        if r.read_until(b'\n', &mut head).map_err(|e| io_err(path, e))? == 0 {
            break;
        }
    }
    let df = CsvReadOptions::default()
        .with_has_header(options.has_header)
        .with_infer_schema_length(Some(options.infer_schema_length))
        .map_parse_options(|p| p.with_separator(options.separator))
        .with_raise_if_empty(false)
        .into_reader_with_file_handle(Cursor::new(head))
        .finish()
        .map_err(|e| FrameError::Csv {
            path: path.display().to_string(),
            line: None,
            message: e.to_string(),
        })?;
    Ok(df.schema().clone())
}

fn csv_header(path: &Path, separator: u8) -> Result<Vec<String>, FrameError> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut line = String::new();
    BufReader::new(f).read_line(&mut line).map_err(|e| io_err(path, e))?;
    Ok(line
        .trim_end_matches(['\n', '\r'])
        .split(separator as char)
        .map(|s| s.trim_matches('"').to_string())
        .collect())
}

fn header_difference(this: &[String], first: &[String], first_path: &Path) -> String {
    let missing: Vec<&String> = first.iter().filter(|c| !this.contains(c)).collect();
    let extra: Vec<&String> = this.iter().filter(|c| !first.contains(c)).collect();
    let mut m = format!("its header {this:?} differs from {first:?} in {}", first_path.display());
    if !missing.is_empty() {
        m.push_str(&format!("; column(s) {missing:?} are missing"));
    }
    if !extra.is_empty() {
        m.push_str(&format!("; column(s) {extra:?} are not in the first file"));
    }
    if missing.is_empty() && extra.is_empty() {
        m.push_str("; the columns are in another order");
    }
    m
}

/// Row starts about `step` bytes apart: each is the first byte after a
/// newline outside quotes at or past the next multiple of `step` from the
/// last. A quote opens a quoted field only at the start of a field (as
/// polars reads it), and `""` inside one is an escaped quote.
fn row_boundaries(path: &Path, step: u64, separator: u8) -> std::io::Result<Vec<u64>> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let (mut out, mut pos, mut next) = (Vec::new(), 0u64, step);
    // In a quoted field; at a field's first byte; just after a closing quote.
    let (mut quoted, mut field_start, mut closed) = (false, true, false);
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        for &b in buf {
            pos += 1;
            if quoted {
                if b == b'"' {
                    quoted = false;
                    closed = true;
                }
                continue;
            }
            if b == b'"' && (field_start || closed) {
                quoted = true;
            } else if b == separator {
                field_start = true;
                closed = false;
                continue;
            } else if b == b'\n' {
                if pos >= next {
                    out.push(pos);
                    next = pos + step;
                }
                field_start = true;
                closed = false;
                continue;
            }
            field_start = false;
            closed = false;
        }
        let n = buf.len();
        r.consume(n);
    }
    if out.last() == Some(&pos) {
        out.pop();
    }
    Ok(out)
}

/// The byte range `[start, end)` of the lines that start in `[start, end)`.
fn line_range(f: &mut File, start: u64, end: u64, len: u64) -> std::io::Result<(u64, u64)> {
    fn next_line_start(f: &mut File, from: u64, len: u64) -> std::io::Result<u64> {
        if from == 0 {
            return Ok(0);
        }
        if from >= len {
            return Ok(len);
        }
        // The line that contains byte `from - 1` ends at its newline.
        f.seek(SeekFrom::Start(from - 1))?;
        let mut r = BufReader::new(f);
        let mut skipped = Vec::new();
        let n = r.read_until(b'\n', &mut skipped)?;
        Ok((from - 1 + n as u64).min(len))
    }
    let s = next_line_start(f, start, len)?;
    let e = if end >= len { len } else { next_line_start(f, end, len)? };
    Ok((s, e.max(s)))
}

/// Reads the lines that start in bytes `[start, end)` of a CSV file.
pub fn read_csv_block(path: &str, start: u64, end: u64, spec: &CsvSpec) -> Result<Frame, String> {
    let p = Path::new(path);
    let mut f = File::open(p).map_err(|e| format!("cannot open {path}: {e}"))?;
    let len = f.metadata().map_err(|e| format!("cannot read {path}: {e}"))?.len();
    let (s, e) =
        line_range(&mut f, start, end, len).map_err(|e| format!("cannot read {path}: {e}"))?;
    let read_block = |f: &mut File| -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity((e - s) as usize);
        f.seek(SeekFrom::Start(s))?;
        f.take(e - s).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read_block(&mut f).map_err(|e| format!("cannot read {path}: {e}"))?;
    let header = spec.has_header && s == 0;
    let schema = spec.schema.0.clone();
    let parse = |bytes: Vec<u8>, header: bool| {
        CsvReadOptions::default()
            .with_has_header(header)
            .with_schema(Some(schema.clone()))
            .with_columns(
                spec.columns.as_ref().map(|c| c.iter().map(|s| s.as_str().into()).collect()),
            )
            .map_parse_options(|o| o.with_separator(spec.separator))
            .with_raise_if_empty(false)
            .into_reader_with_file_handle(Cursor::new(bytes))
            .finish()
    };
    match parse(bytes, header) {
        Ok(df) => Ok(Frame(df)),
        Err(err) => {
            // The error path reads the block again to find the bad line.
            let bytes = read_block(&mut f).map_err(|e| format!("cannot read {path}: {e}"))?;
            Err(csv_error(path, &mut f, s, &bytes, header, &err, |line| parse(line, false)))
        }
    }
}

/// The error of a block that failed to parse, naming the first bad line
/// (found by parsing the block line by line: the error path only).
fn csv_error(
    path: &str,
    f: &mut File,
    start: u64,
    block: &[u8],
    header: bool,
    err: &PolarsError,
    parse_line: impl Fn(Vec<u8>) -> PolarsResult<polars::prelude::DataFrame>,
) -> String {
    let mut lines_before = 0u64;
    if start > 0 {
        let mut prefix = vec![0u8; start as usize];
        if f.seek(SeekFrom::Start(0)).and_then(|_| f.read_exact(&mut prefix)).is_ok() {
            lines_before = memchr_count(&prefix);
        }
    }
    let hint = if block.contains(&b'"') {
        "; if quoted fields hold newlines, set CsvOptions::quoted_newlines"
    } else {
        ""
    };
    let mut line_no = lines_before;
    for (i, line) in block.split(|&b| b == b'\n').enumerate() {
        line_no += 1;
        if (header && i == 0) || line.is_empty() || line == b"\r" {
            continue;
        }
        if let Err(e) = parse_line(line.to_vec()) {
            return format!(
                "malformed CSV row in {path} at line {line_no}: {e} (the row: {:?}){hint}",
                String::from_utf8_lossy(&line[..line.len().min(200)])
            );
        }
    }
    format!("cannot parse {path} (bytes {start}..{}): {err}{hint}", start + block.len() as u64)
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// A lazily read dataframe of the Parquet files `patterns` match (globs):
/// one partition per file, or per row group. Every file must have the same
/// schema. Lengths are known from the footers when there is no filter;
/// with one, row groups that cannot match are skipped by their statistics.
pub fn read_parquet(patterns: &[&str], options: &ParquetOptions) -> Result<DataFrame, FrameError> {
    let files = expand(patterns)?;
    let mut parts = Vec::new();
    let mut lengths = Vec::new();
    let mut schema: Option<(SchemaRef, PathBuf)> = None;
    let mut first_path: Option<String> = None;
    for file in &files {
        let f = File::open(file).map_err(|e| io_err(file, e))?;
        let mut reader = ParquetReader::new(f);
        let bad = |e: PolarsError| FrameError::Parquet {
            path: file.display().to_string(),
            message: e.to_string(),
        };
        let arrow = reader.schema().map_err(bad)?;
        let this: SchemaRef = Arc::new(Schema::from_arrow_schema(&arrow));
        match &schema {
            None => schema = Some((this.clone(), file.clone())),
            Some((first, first_path)) => {
                if let Some(m) = schema_difference(&this, first) {
                    return Err(FrameError::SchemaMismatch {
                        path: file.display().to_string(),
                        message: format!("{m} (compared with {})", first_path.display()),
                    });
                }
            }
        }
        let meta = reader.get_metadata().map_err(bad)?.clone();
        let path = path_str(file)?;
        // Each row group's rows, and whether the filter may keep any of them.
        let mut off = 0u64;
        let spans: Vec<(u64, u64)> = meta
            .row_groups
            .iter()
            .map(|rg| {
                let n = rg.num_rows() as u64;
                off += n;
                (off - n, n)
            })
            .collect();
        let keep: Vec<bool> = match &options.filter {
            Some(p) => crate::prune::row_group_ranges(&meta, &this)
                .iter()
                .map(|r| crate::prune::may_match(p, r))
                .collect(),
            None => vec![true; spans.len()],
        };
        let kept = spans.iter().zip(&keep).filter(|(_, k)| **k).map(|(s, _)| *s);
        let groups: Vec<(u64, u64)> = if options.split_row_groups {
            kept.collect()
        } else {
            // One span per file, from the first row group kept to the last.
            let kept: Vec<(u64, u64)> = kept.collect();
            match (kept.first(), kept.last()) {
                (Some(a), Some(b)) => vec![(a.0, b.0 + b.1 - a.0)],
                _ if meta.row_groups.is_empty() => vec![(0, meta.num_rows as u64)],
                _ => Vec::new(),
            }
        };
        if first_path.is_none() {
            first_path = Some(path.clone());
        }
        for (offset, n) in groups {
            parts.push(ops::read_parquet_part(
                path.clone(),
                offset,
                n,
                options.columns.clone(),
                options.filter.clone().map(Wire),
            ));
            lengths.push(n);
        }
    }
    if parts.is_empty() {
        // Every row group was pruned: one empty partition keeps the schema.
        let path = first_path.expect("expand returns at least one file");
        parts.push(ops::read_parquet_part(path, 0, 0, options.columns.clone(), None));
        lengths.push(0);
    }
    let (full, _) = schema.expect("expand returns at least one file");
    let mut lf = polars::prelude::DataFrame::empty_with_schema(&full).lazy();
    if let Some(p) = &options.filter {
        lf = lf.filter(p.clone());
    }
    if let Some(cols) = &options.columns {
        lf = lf.select(cols.iter().map(|c| col(c.as_str())).collect::<Vec<_>>());
    }
    let out_schema = crate::plan_schema(lf, &full)?;
    let mut df = DataFrame::from_parts(parts, out_schema);
    if options.filter.is_none() {
        df.lengths = Some(lengths);
    }
    Ok(df)
}

fn schema_difference(this: &Schema, first: &Schema) -> Option<String> {
    for (name, dtype) in first.iter() {
        match this.get(name) {
            None => return Some(format!("column {name:?} is missing")),
            Some(d) if d != dtype => {
                return Some(format!("column {name:?} is {d} here but {dtype} in the first file"))
            }
            _ => {}
        }
    }
    this.iter_names()
        .find(|n| first.get(n).is_none())
        .map(|n| format!("column {n:?} is not in the first file"))
}

/// Reads rows `[offset, offset + len)` of a Parquet file: only `columns`
/// (and what `filter` needs), keeping the rows where `filter` holds.
pub fn read_parquet_part(
    path: &str,
    offset: u64,
    len: u64,
    columns: Option<Vec<String>>,
    filter: Option<Expr>,
) -> Result<Frame, String> {
    let f = File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut read_cols = columns.clone();
    if let (Some(cols), Some(p)) = (&mut read_cols, &filter) {
        for name in polars_plan::utils::expr_to_leaf_column_names(p) {
            if !cols.iter().any(|c| c.as_str() == name.as_str()) {
                cols.push(name.to_string());
            }
        }
    }
    let df = ParquetReader::new(f)
        .with_columns(read_cols)
        .with_slice(Some((offset as usize, len as usize)))
        .finish()
        .map_err(|e| format!("cannot read {path} (rows {offset}..{}): {e}", offset + len))?;
    let mut lf = df.lazy();
    if let Some(p) = filter {
        lf = lf.filter(p);
    }
    if let Some(cols) = columns {
        lf = lf.select(cols.iter().map(|c| col(c.as_str())).collect::<Vec<_>>());
    }
    lf.collect().map(Frame).map_err(|e| format!("{path}: {e}"))
}

/// Writes a partition to `path` as Parquet (zstd); returns its rows.
pub fn write_parquet(frame: Frame, path: &str) -> Result<u64, String> {
    let mut df = frame.0;
    let f = File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?;
    ParquetWriter::new(f).finish(&mut df).map_err(|e| format!("cannot write {path}: {e}"))?;
    Ok(df.height() as u64)
}

/// Writes a partition to `path` as CSV with a header; returns its rows.
pub fn write_csv(frame: Frame, path: &str) -> Result<u64, String> {
    let mut df = frame.0;
    let f = File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?;
    CsvWriter::new(f).finish(&mut df).map_err(|e| format!("cannot write {path}: {e}"))?;
    Ok(df.height() as u64)
}
