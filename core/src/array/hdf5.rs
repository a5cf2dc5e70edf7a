//! HDF5 datasets through the `hdf5-metno` bindings to the system's libhdf5
//! (cargo feature `hdf5`; Debian's `libhdf5-dev`). Building an array reads
//! only the dataset's metadata; each block task reads its own hyperslab.
//! Writing goes through the calling process, a few blocks at a time, because
//! one HDF5 file takes one writer.

use std::path::Path;

use hdf5_metno as h5;
use ndarray::{ArrayD, IxDyn, SliceInfo, SliceInfoElem};

use super::block::{Block, BlockData, Element};
use super::create::region_cells;
use super::{Array, ArrayError, ChunkSpec};

fn file_err(path: &Path, message: impl Into<String>) -> ArrayError {
    ArrayError::File { path: path.display().to_string(), message: message.into() }
}

fn selection(region: &[(usize, usize)]) -> Result<h5::Selection, String> {
    let elems = super::region_slice(region);
    let info = SliceInfo::<Vec<SliceInfoElem>, IxDyn, IxDyn>::try_from(elems)
        .map_err(|e| e.to_string())?;
    h5::Selection::try_from(info).map_err(|e| e.to_string())
}

fn read_typed<T: Element + h5::H5Type>(
    ds: &h5::Dataset,
    what: &str,
    region: &[(usize, usize)],
) -> Result<ArrayD<T>, String> {
    if region.is_empty() {
        return ds.read_dyn::<T>().map_err(|e| format!("{what}: {e}"));
    }
    ds.read_slice::<T, _, IxDyn>(selection(region)?)
        .map_err(|e| format!("{what}: cannot read region {region:?}: {e}"))
}

/// The dataset's element type, NumPy spelling.
fn dtype_of(ds: &h5::Dataset) -> Result<&'static str, String> {
    let d = ds.dtype().and_then(|t| t.to_descriptor()).map_err(|e| e.to_string())?;
    Ok(match d.to_string().as_str() {
        "float64" => "<f8",
        "float32" => "<f4",
        "int64" => "<i8",
        "bool" => "|b1",
        other => {
            return Err(format!(
                "element type {other} is not supported (float64, float32, int64, bool are)"
            ))
        }
    })
}

fn open(path: &str, dataset: &str) -> Result<h5::Dataset, String> {
    let f = h5::File::open(path).map_err(|e| format!("{path}: cannot open the HDF5 file: {e}"))?;
    f.dataset(dataset).map_err(|e| format!("{path}: no dataset {dataset:?}: {e}"))
}

crate::op! {
    /// Reads `region` of `dataset` in the HDF5 file at `path`.
    pub fn hdf5_read(path: String, dataset: String, region: Vec<(usize, usize)>) -> Result<Block, String> {
        let ds = open(&path, &dataset)?;
        let what = format!("{path}:{dataset}");
        Ok(Block::new(match dtype_of(&ds)? {
            "<f8" => BlockData::F64(read_typed(&ds, &what, &region)?),
            "<f4" => BlockData::F32(read_typed(&ds, &what, &region)?),
            "<i8" => BlockData::I64(read_typed(&ds, &what, &region)?),
            _ => BlockData::Bool(read_typed(&ds, &what, &region)?),
        }))
    }
}

/// A lazy array over an HDF5 dataset, one block per HDF5 chunk (or per
/// `chunks` when given, or one block for a contiguous dataset).
pub fn from_hdf5<T: Element>(
    path: impl AsRef<Path>,
    dataset: &str,
    chunks: Option<ChunkSpec>,
) -> Result<Array<T>, ArrayError> {
    let path = path.as_ref();
    let p = path.display().to_string();
    let ds = open(&p, dataset).map_err(|m| {
        file_err(path, m.split_once(": ").map_or(m.clone(), |(_, r)| r.to_string()))
    })?;
    let dtype = dtype_of(&ds).map_err(|m| file_err(path, format!("dataset {dataset:?}: {m}")))?;
    if dtype != T::DTYPE {
        return Err(file_err(
            path,
            format!(
                "dataset {dataset:?} holds {dtype} data, but an array of {} ({}) was asked for",
                T::NAME,
                T::DTYPE
            ),
        ));
    }
    let shape = ds.shape();
    let default = ds.chunk().unwrap_or_else(|| shape.iter().map(|&n| n.max(1)).collect());
    let name = format!("{p}:{dataset}");
    let chunks = chunks.unwrap_or(ChunkSpec::PerAxis(default)).resolve(&name, &shape)?;
    let ds_name = dataset.to_string();
    let blocks = region_cells(&chunks, |region| hdf5_read(p.clone(), ds_name.clone(), region));
    Ok(Array::from_blocks(name, chunks, blocks))
}

fn write_typed<T: Element + h5::H5Type>(
    ds: &h5::Dataset,
    region: &[(usize, usize)],
    x: &ArrayD<T>,
) -> Result<(), String> {
    if region.is_empty() {
        return ds.write(x).map_err(|e| e.to_string());
    }
    ds.write_slice(x, selection(region)?).map_err(|e| e.to_string())
}

impl<T: Element> Array<T> {
    /// Writes the array as `dataset` (groups in its path are created) of the
    /// HDF5 file at `path` (created if missing), chunked like the array's first
    /// blocks. Blocks are computed a few at a time on the default scheduler
    /// and written here, so memory stays bounded.
    pub fn to_hdf5(&self, path: impl AsRef<Path>, dataset: &str) -> Result<(), ArrayError> {
        let path = path.as_ref();
        let err = |e: h5::Error| file_err(path, format!("dataset {dataset:?}: {e}"));
        let f = if path.exists() { h5::File::append(path) } else { h5::File::create(path) }
            .map_err(|e| file_err(path, e.to_string()))?;
        let (groups, leaf) = dataset
            .trim_matches('/')
            .rsplit_once('/')
            .map_or(("", dataset.trim_matches('/')), |(g, l)| (g, l));
        let mut group = f.group("/").map_err(err)?;
        for g in groups.split('/').filter(|g| !g.is_empty()) {
            group = match group.group(g) {
                Ok(existing) => existing,
                Err(_) => group.create_group(g).map_err(err)?,
            };
        }
        let shape = self.shape();
        let chunk: Vec<usize> = self.chunks().iter().map(|c| c[0].max(1)).collect();
        let builder = match T::DTYPE {
            "<f8" => group.new_dataset::<f64>(),
            "<f4" => group.new_dataset::<f32>(),
            "<i8" => group.new_dataset::<i64>(),
            _ => group.new_dataset::<bool>(),
        };
        let builder = if shape.iter().all(|&n| n > 0) && !shape.is_empty() {
            builder.chunk(chunk)
        } else {
            builder
        };
        let ds = builder.shape(shape.clone()).create(leaf).map_err(err)?;
        let cells: Vec<_> =
            super::regions(self.chunks()).into_iter().zip(self.blocks().iter().cloned()).collect();
        let batch = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) * 2;
        for group_cells in cells.chunks(batch) {
            let erased: Vec<_> = group_cells.iter().map(|(_, b)| b.erase()).collect();
            let values = crate::delayed::compute_many(
                &erased,
                &crate::default_scheduler(),
                &crate::ComputeOptions::default(),
            )?;
            for ((region, d), v) in group_cells.iter().zip(values) {
                let block: Block = v.take::<Block>().map_err(|source| {
                    crate::ComputeError::Output { key: d.key().clone(), source }
                })?;
                let region = region.as_slice();
                let r = match block.data() {
                    BlockData::F64(x) => write_typed(&ds, region, x),
                    BlockData::F32(x) => write_typed(&ds, region, x),
                    BlockData::I64(x) => write_typed(&ds, region, x),
                    BlockData::Bool(x) => write_typed(&ds, region, x),
                };
                r.map_err(|m| {
                    file_err(
                        path,
                        format!("dataset {dataset:?}: cannot write region {region:?}: {m}"),
                    )
                })?;
            }
        }
        Ok(())
    }
}
