//! NumPy `.npy` files, read and written lazily: building an array reads only
//! the headers; each block task reads (or writes) its own region with
//! positioned I/O, so arrays larger than memory stream through.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};

use super::block::{Block, BlockData, Element};
use super::create::region_cells;
use super::ops::{npy_read, npy_write};
use super::{Array, ArrayError, ChunkSpec};
use crate::raw_array::{from_le_bytes, to_le_bytes, RawElement};

pub use crate::npy::NpyHeader;

fn file_err(path: &Path, message: impl Into<String>) -> ArrayError {
    ArrayError::File { path: path.display().to_string(), message: message.into() }
}

/// Reads and checks the header of `path` (also that the file holds all the
/// data it announces), for the element types arrays hold.
pub fn read_header(path: &Path) -> Result<NpyHeader, ArrayError> {
    let header = crate::npy::read_header(path).map_err(|e| file_err(path, e.to_string()))?;
    let descr = header.dtype.little_endian().descr();
    if !matches!(descr.as_str(), "<f8" | "<f4" | "<i8" | "|b1") {
        return Err(file_err(
            path,
            format!(
                "dtype {} is not supported by arrays (float64, float32, int64 and bool are): \
                 convert it with astype first",
                header.dtype.descr()
            ),
        ));
    }
    Ok(header)
}

fn typed_read<T: Element>(
    f: &File,
    path: &str,
    h: &NpyHeader,
    region: &[(usize, usize)],
) -> Result<ArrayD<T>, String> {
    // Work in C order: for Fortran files the axes are reversed.
    let (shape, reg): (Vec<usize>, Vec<(usize, usize)>) = if h.fortran {
        (h.shape.iter().rev().copied().collect(), region.iter().rev().copied().collect())
    } else {
        (h.shape.clone(), region.to_vec())
    };
    let nd = shape.len();
    let out_shape: Vec<usize> = reg.iter().map(|(a, b)| b - a).collect();
    let total: usize = out_shape.iter().product();
    // The longest run: trailing axes that are read whole, plus the partial one before them.
    let mut run_axis = nd;
    while run_axis > 0 && reg[run_axis - 1] == (0, shape[run_axis - 1]) {
        run_axis -= 1;
    }
    let inner: usize = shape[run_axis.min(nd)..].iter().product();
    let (run_len, outer_axes) = if run_axis == 0 {
        (total, 0)
    } else {
        ((reg[run_axis - 1].1 - reg[run_axis - 1].0) * inner, run_axis - 1)
    };
    let strides: Vec<usize> = (0..nd).map(|ax| shape[ax + 1..].iter().product()).collect();
    let mut bytes = vec![0u8; total * T::SIZE];
    if total > 0 {
        let outer_shape: Vec<usize> = out_shape[..outer_axes].to_vec();
        for (k, idx) in ndarray::indices(IxDyn(&outer_shape)).into_iter().enumerate() {
            let mut elem = 0usize;
            for ax in 0..outer_axes {
                elem += (reg[ax].0 + idx[ax]) * strides[ax];
            }
            if run_axis > 0 {
                elem += reg[run_axis - 1].0 * strides[run_axis - 1];
            }
            let dst = &mut bytes[k * run_len * T::SIZE..(k + 1) * run_len * T::SIZE];
            f.read_exact_at(dst, h.data_offset + (elem * T::SIZE) as u64).map_err(|e| {
                format!(
                    "{path}: cannot read {} bytes at element {elem}: {e} (truncated file?)",
                    dst.len()
                )
            })?;
        }
    }
    crate::npy::to_little_endian(h.dtype, &mut bytes);
    let data =
        from_le_bytes::<T>(&bytes).ok_or_else(|| format!("{path}: invalid {} data", T::DTYPE))?;
    let a = ArrayD::from_shape_vec(IxDyn(&out_shape), data).map_err(|e| e.to_string())?;
    Ok(if h.fortran { a.reversed_axes() } else { a })
}

/// Reads `region` of the file (called inside a task).
pub(crate) fn read_npy_region(
    path: &str,
    h: &NpyHeader,
    region: &[(usize, usize)],
) -> Result<Block, String> {
    let f = File::open(path).map_err(|e| format!("{path}: cannot open chunk file: {e}"))?;
    let len = f.metadata().map_err(|e| format!("{path}: {e}"))?.len();
    h.check_file_len(len).map_err(|e| format!("{path}: {e}"))?;
    Ok(Block::new(match h.dtype.little_endian().descr().as_str() {
        "<f8" => BlockData::F64(typed_read(&f, path, h, region)?),
        "<f4" => BlockData::F32(typed_read(&f, path, h, region)?),
        "<i8" => BlockData::I64(typed_read(&f, path, h, region)?),
        "|b1" => BlockData::Bool(typed_read(&f, path, h, region)?),
        other => return Err(format!("{path}: dtype {other} is not supported")),
    }))
}

fn typed_write<T: Element>(
    f: &File,
    path: &str,
    h: &NpyHeader,
    region: &[(usize, usize)],
    a: &ArrayD<T>,
) -> Result<u64, String> {
    let std = a.as_standard_layout();
    let data = std.as_slice().expect("standard layout");
    let nd = h.shape.len();
    let strides: Vec<usize> = (0..nd).map(|ax| h.shape[ax + 1..].iter().product()).collect();
    let row = region.last().map_or(1, |(a, b)| b - a);
    let outer: Vec<usize> = region[..nd.saturating_sub(1)].iter().map(|(a, b)| b - a).collect();
    for (k, idx) in ndarray::indices(IxDyn(&outer)).into_iter().enumerate() {
        let mut elem = region.last().map_or(0, |r| r.0);
        for ax in 0..nd.saturating_sub(1) {
            elem += (region[ax].0 + idx[ax]) * strides[ax];
        }
        let chunk = to_le_bytes(&data[k * row..(k + 1) * row]);
        f.write_all_at(&chunk, h.data_offset + (elem * T::SIZE) as u64)
            .map_err(|e| format!("{path}: write failed: {e}"))?;
    }
    Ok((data.len() * T::SIZE) as u64)
}

/// Writes a block into `region` of a C-order file whose header exists (called inside a task).
pub(crate) fn write_npy_region(
    path: &str,
    h: &NpyHeader,
    region: &[(usize, usize)],
    d: &BlockData,
) -> Result<u64, String> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: cannot open for writing: {e}"))?;
    match d {
        BlockData::F64(a) => typed_write(&f, path, h, region, a),
        BlockData::F32(a) => typed_write(&f, path, h, region, a),
        BlockData::I64(a) => typed_write(&f, path, h, region, a),
        BlockData::Bool(a) => typed_write(&f, path, h, region, a),
    }
}

/// Writes the header of a C-order `.npy` file of `shape` and sizes the file; returns the header.
fn create_npy(path: &Path, descr: &str, shape: &[usize]) -> Result<NpyHeader, ArrayError> {
    let dtype = crate::npy::Dtype::parse(descr).map_err(|e| file_err(path, e.to_string()))?;
    let mut h = NpyHeader { dtype, fortran: false, shape: shape.to_vec(), data_offset: 0 };
    let head = h.to_bytes();
    h.data_offset = head.len() as u64;
    let len = h.file_len().map_err(|e| file_err(path, e.to_string()))?;
    let f = File::create(path).map_err(|e| file_err(path, format!("cannot create: {e}")))?;
    f.write_all_at(&head, 0).map_err(|e| file_err(path, e.to_string()))?;
    f.set_len(len).map_err(|e| file_err(path, e.to_string()))?;
    Ok(h)
}

crate::op! {
    /// Writes a whole block as its own `.npy` file.
    pub fn npy_write_file(block: Block, path: String) -> Result<u64, String> {
        let d = block.data();
        let descr = crate::with_block!(d, |_a: T| <T as RawElement>::DTYPE);
        let h = create_npy(Path::new(&path), descr, d.shape()).map_err(|e| e.to_string())?;
        let region: Vec<(usize, usize)> = d.shape().iter().map(|&n| (0, n)).collect();
        write_npy_region(&path, &h, &region, d)
    }
}

fn check_dtype<T: Element>(path: &Path, h: &NpyHeader) -> Result<(), ArrayError> {
    if h.dtype.little_endian().descr() != T::DTYPE {
        return Err(file_err(
            path,
            format!(
                "holds {} data, but an array of {} ({}) was asked for",
                h.dtype.descr(),
                T::NAME,
                T::DTYPE
            ),
        ));
    }
    Ok(())
}

/// A lazy array over one `.npy` file, read block by block.
pub fn from_npy<T: Element>(
    path: impl AsRef<Path>,
    chunks: impl Into<ChunkSpec>,
) -> Result<Array<T>, ArrayError> {
    let path = path.as_ref();
    let h = read_header(path)?;
    check_dtype::<T>(path, &h)?;
    let name = path.display().to_string();
    let chunks = chunks.into().resolve(&name, &h.shape)?;
    let p = name.clone();
    let blocks = region_cells(&chunks, |region| npy_read(p.clone(), h.clone(), region));
    Ok(Array::from_blocks(name, chunks, blocks))
}

/// The `.npy` files of a folder (sorted by number when their names are
/// numbers, else by name), or those matching a `*` pattern in the last component.
pub fn list_chunk_files(pattern: &Path) -> Result<Vec<PathBuf>, ArrayError> {
    let (dir, glob) = if pattern.is_dir() {
        (pattern.to_path_buf(), "*.npy".to_string())
    } else {
        let dir = pattern
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        (dir, pattern.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default())
    };
    let read = std::fs::read_dir(&dir)
        .map_err(|e| file_err(&dir, format!("cannot list chunk files: {e}")))?;
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && p.file_name().is_some_and(|f| wildcard(&glob, &f.to_string_lossy()))
        })
        .collect();
    let key = |p: &PathBuf| {
        let stem = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        (stem.parse::<u64>().unwrap_or(u64::MAX), stem)
    };
    files.sort_by_key(key);
    if files.is_empty() {
        return Err(file_err(pattern, "no .npy chunk files match"));
    }
    Ok(files)
}

fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| {
                    name.is_char_boundary(head.len() + i) && wildcard(rest, &name[head.len() + i..])
                })
        }
    }
}

/// A lazy array stacked along axis 0 from chunk files (a folder or a glob;
/// each file is one block; headers are read now, data inside the tasks).
pub fn from_npy_stack<T: Element>(pattern: impl AsRef<Path>) -> Result<Array<T>, ArrayError> {
    let files = list_chunk_files(pattern.as_ref())?;
    let mut headers = Vec::new();
    for f in &files {
        let h = read_header(f)?;
        check_dtype::<T>(f, &h)?;
        if h.shape.is_empty() {
            return Err(file_err(f, "a 0-d chunk file cannot be stacked"));
        }
        if let Some((f0, h0)) = files.first().zip(headers.first()) {
            let h0: &NpyHeader = h0;
            if h.shape[1..] != h0.shape[1..] {
                return Err(file_err(
                    f,
                    format!(
                        "shape {:?} does not stack with {:?} of {}",
                        h.shape,
                        h0.shape,
                        f0.display()
                    ),
                ));
            }
        }
        headers.push(h);
    }
    let name = pattern.as_ref().display().to_string();
    let mut chunks: Vec<Vec<usize>> = vec![headers.iter().map(|h| h.shape[0]).collect()];
    chunks.extend(headers[0].shape[1..].iter().map(|&n| vec![n]));
    let mut grid = vec![files.len()];
    grid.extend(std::iter::repeat_n(1, chunks.len() - 1));
    let flat: Vec<_> = files
        .iter()
        .zip(&headers)
        .map(|(f, h)| {
            npy_read(
                f.display().to_string(),
                h.clone(),
                h.shape.iter().map(|&n| (0, n)).collect::<Vec<_>>(),
            )
        })
        .collect();
    let blocks = ArrayD::from_shape_vec(IxDyn(&grid), flat).expect("one block per file");
    Ok(Array::from_blocks(name, chunks, blocks))
}

impl<T: Element> Array<T> {
    /// Writes the array to one `.npy` file; each block task writes its own region.
    pub fn to_npy(&self, path: impl AsRef<Path>) -> Result<(), ArrayError> {
        let path = path.as_ref();
        let h = create_npy(path, T::DTYPE, &self.shape())?;
        let p = path.display().to_string();
        self.write_blocks(|b, region| npy_write(b, p.clone(), h.clone(), region).erase())
    }

    /// Writes one `.npy` file per block along axis 0 into `dir` (`0.npy`,
    /// `1.npy`, ...; the other axes are joined into one block first).
    pub fn to_npy_stack(&self, dir: impl AsRef<Path>) -> Result<(), ArrayError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| file_err(dir, format!("cannot create folder: {e}")))?;
        let mut target = self.chunks().to_vec();
        for c in target.iter_mut().skip(1) {
            *c = vec![c.iter().sum()];
        }
        let a = self.rechunk(ChunkSpec::Explicit(target))?;
        let writes: Vec<_> = a
            .blocks()
            .iter()
            .enumerate()
            .map(|(i, b)| {
                npy_write_file(b, dir.join(format!("{i}.npy")).display().to_string()).erase()
            })
            .collect();
        crate::delayed::compute_many(
            &writes,
            &crate::default_scheduler(),
            &crate::ComputeOptions::default(),
        )?;
        Ok(())
    }
}
