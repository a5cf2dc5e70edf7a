//! Zarr v2 and v3 arrays through the `zarrs` crate (uncompressed, gzip and
//! zstd chunks, read and written). Building an array reads only the metadata; each block task
//! opens the store and reads (or writes) its own region.

use std::path::Path;
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};
use zarrs::array::{Array as ZArray, ArrayMetadata, ArraySubset};
use zarrs::filesystem::FilesystemStore;

use super::block::{Block, BlockData, Element};
use super::create::region_cells;
use super::{Array, ArrayError, ChunkSpec};

/// Which Zarr format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ZarrFormat {
    /// Zarr v2 (`.zarray`, `.`-separated chunk keys).
    V2,
    /// Zarr v3 (`zarr.json`, `c/`-prefixed chunk keys).
    V3,
}

/// How Zarr chunks are compressed when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ZarrCodec {
    /// Raw little-endian bytes.
    None,
    /// gzip at `level` (0-9).
    Gzip {
        /// Compression level, 0 (fastest) to 9 (smallest).
        level: u32,
    },
    /// Zstandard at `level` (1-22; 3 is zarr-python's default).
    Zstd {
        /// Compression level, 1 (fastest) to 22 (smallest).
        level: i32,
    },
}

impl ZarrCodec {
    fn check(self, path: &Path) -> Result<(), ArrayError> {
        match self {
            ZarrCodec::Gzip { level } if level > 9 => {
                Err(file_err(path, format!("gzip level {level} is out of range 0-9")))
            }
            ZarrCodec::Zstd { level } if !(1..=22).contains(&level) => {
                Err(file_err(path, format!("zstd level {level} is out of range 1-22")))
            }
            _ => Ok(()),
        }
    }

    /// The v2 `compressor` entry (numcodecs names).
    fn v2(self) -> serde_json::Value {
        match self {
            ZarrCodec::None => serde_json::Value::Null,
            ZarrCodec::Gzip { level } => serde_json::json!({"id": "gzip", "level": level}),
            ZarrCodec::Zstd { level } => {
                serde_json::json!({"id": "zstd", "level": level, "checksum": false})
            }
        }
    }

    /// The v3 codec chain.
    fn v3(self) -> serde_json::Value {
        let bytes = serde_json::json!({"name": "bytes", "configuration": {"endian": "little"}});
        match self {
            ZarrCodec::None => serde_json::json!([bytes]),
            ZarrCodec::Gzip { level } => {
                serde_json::json!([bytes, {"name": "gzip", "configuration": {"level": level}}])
            }
            ZarrCodec::Zstd { level } => {
                serde_json::json!([bytes, {"name": "zstd", "configuration": {"level": level, "checksum": false}}])
            }
        }
    }
}

fn file_err(path: &Path, message: impl Into<String>) -> ArrayError {
    ArrayError::File { path: path.display().to_string(), message: message.into() }
}

fn open(path: &str) -> Result<ZArray<FilesystemStore>, String> {
    let store = FilesystemStore::new(path)
        .map_err(|e| format!("{path}: cannot open the Zarr store: {e}"))?;
    ZArray::open(Arc::new(store), "/")
        .map_err(|e| format!("{path}: not a readable Zarr array: {e}"))
}

/// Zarr's name for an element type (v3 `data_type`).
fn v3_name(dtype: &str) -> &'static str {
    match dtype {
        "<f8" => "float64",
        "<f4" => "float32",
        "<i8" => "int64",
        _ => "bool",
    }
}

fn subset(region: &[(usize, usize)]) -> ArraySubset {
    let ranges: Vec<std::ops::Range<u64>> =
        region.iter().map(|&(a, b)| a as u64..b as u64).collect();
    ArraySubset::new_with_ranges(&ranges)
}

fn read_typed<T: Element + zarrs::array::ElementOwned>(
    a: &ZArray<FilesystemStore>,
    path: &str,
    region: &[(usize, usize)],
) -> Result<ArrayD<T>, String> {
    let data: Vec<T> = a
        .retrieve_array_subset(&subset(region))
        .map_err(|e| format!("{path}: cannot read region {region:?}: {e}"))?;
    let shape: Vec<usize> = region.iter().map(|(a, b)| b - a).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| e.to_string())
}

fn write_typed<T: Element + zarrs::array::Element>(
    a: &ZArray<FilesystemStore>,
    path: &str,
    region: &[(usize, usize)],
    x: &ArrayD<T>,
) -> Result<u64, String> {
    let data: Vec<T> = x.iter().copied().collect();
    let n = data.len() as u64 * T::SIZE as u64;
    a.store_array_subset(&subset(region), data)
        .map_err(|e| format!("{path}: cannot write region {region:?}: {e}"))?;
    Ok(n)
}

crate::op! {
    /// Reads `region` of the Zarr array at `path` (element type `dtype`, NumPy spelling).
    pub fn zarr_read(path: String, dtype: String, region: Vec<(usize, usize)>) -> Result<Block, String> {
        let a = open(&path)?;
        Ok(Block::new(match dtype.as_str() {
            "<f8" => BlockData::F64(read_typed(&a, &path, &region)?),
            "<f4" => BlockData::F32(read_typed(&a, &path, &region)?),
            "<i8" => BlockData::I64(read_typed(&a, &path, &region)?),
            "|b1" => BlockData::Bool(read_typed(&a, &path, &region)?),
            other => return Err(format!("{path}: element type {other} is not supported")),
        }))
    }

    /// Writes a block into `region` of the Zarr array at `path` (the region is one chunk).
    pub fn zarr_write(block: Block, path: String, region: Vec<(usize, usize)>) -> Result<u64, String> {
        let a = open(&path)?;
        match block.data() {
            BlockData::F64(x) => write_typed(&a, &path, &region, x),
            BlockData::F32(x) => write_typed(&a, &path, &region, x),
            BlockData::I64(x) => write_typed(&a, &path, &region, x),
            BlockData::Bool(x) => write_typed(&a, &path, &region, x),
        }
    }
}

/// Reads the metadata of the Zarr array at `path`: its shape, chunk shape and
/// element type (NumPy spelling).
fn inspect(path: &Path) -> Result<(Vec<usize>, Vec<usize>, String), ArrayError> {
    let a = open(&path.display().to_string()).map_err(|m| {
        file_err(path, m.split_once(": ").map_or(m.clone(), |(_, r)| r.to_string()))
    })?;
    let shape: Vec<usize> = a.shape().iter().map(|&n| n as usize).collect();
    let origin = vec![0u64; shape.len()];
    let chunk: Vec<usize> = a
        .chunk_shape(&origin)
        .map_err(|e| file_err(path, format!("no regular chunk grid: {e}")))?
        .iter()
        .map(|c| c.get() as usize)
        .collect();
    let meta = serde_json::to_value(a.metadata()).map_err(|e| file_err(path, e.to_string()))?;
    let name = meta
        .get("data_type")
        .or_else(|| meta.get("dtype"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let dtype = match name.as_str() {
        "float64" | "<f8" => "<f8",
        "float32" | "<f4" => "<f4",
        "int64" | "<i8" => "<i8",
        "bool" | "|b1" => "|b1",
        other => {
            return Err(file_err(
                path,
                format!(
                    "Zarr data type {other:?} is not supported (float64, float32, int64, bool are)"
                ),
            ))
        }
    };
    Ok((shape, chunk, dtype.to_string()))
}

/// A lazy array over a Zarr v2 or v3 array, one block per Zarr chunk unless
/// `chunks` asks otherwise.
pub fn from_zarr<T: Element>(
    path: impl AsRef<Path>,
    chunks: Option<ChunkSpec>,
) -> Result<Array<T>, ArrayError> {
    let path = path.as_ref();
    let (shape, zchunk, dtype) = inspect(path)?;
    if dtype != T::DTYPE {
        return Err(file_err(
            path,
            format!("holds {dtype} data, but an array of {} ({}) was asked for", T::NAME, T::DTYPE),
        ));
    }
    let name = path.display().to_string();
    let chunks = chunks.unwrap_or(ChunkSpec::PerAxis(zchunk)).resolve(&name, &shape)?;
    let p = name.clone();
    let blocks = region_cells(&chunks, |region| zarr_read(p.clone(), dtype.clone(), region));
    Ok(Array::from_blocks(name, chunks, blocks))
}

impl<T: Element> Array<T> {
    /// Writes the array as an uncompressed Zarr array at `path` (see [`Array::to_zarr_with`]).
    pub fn to_zarr(&self, path: impl AsRef<Path>, format: ZarrFormat) -> Result<(), ArrayError> {
        self.to_zarr_with(path, format, ZarrCodec::None)
    }

    /// Writes the array as a Zarr array at `path` (a new folder), its chunks
    /// compressed with `codec`, one Zarr chunk per block: blocks are first made
    /// regular (all but the last along an axis the same size), and each block
    /// task compresses and writes its own chunk.
    pub fn to_zarr_with(
        &self,
        path: impl AsRef<Path>,
        format: ZarrFormat,
        codec: ZarrCodec,
    ) -> Result<(), ArrayError> {
        let path = path.as_ref();
        codec.check(path)?;
        let first: Vec<usize> = self.chunks().iter().map(|c| c[0].max(1)).collect();
        let a = self.rechunk(ChunkSpec::PerAxis(first.clone()))?;
        let shape = a.shape();
        let fill = match T::DTYPE {
            "|b1" => serde_json::json!(false),
            "<i8" => serde_json::json!(0),
            _ => serde_json::json!(0.0),
        };
        let meta = match format {
            ZarrFormat::V2 => serde_json::json!({
                "zarr_format": 2, "shape": shape, "chunks": first, "dtype": T::DTYPE,
                "compressor": codec.v2(), "fill_value": fill, "order": "C", "filters": null,
            }),
            ZarrFormat::V3 => serde_json::json!({
                "zarr_format": 3, "node_type": "array", "shape": shape, "data_type": v3_name(T::DTYPE),
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": first}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": fill, "codecs": codec.v3(),
            }),
        };
        let meta: ArrayMetadata = serde_json::from_value(meta)
            .map_err(|e| file_err(path, format!("Zarr metadata: {e}")))?;
        std::fs::create_dir_all(path)
            .map_err(|e| file_err(path, format!("cannot create folder: {e}")))?;
        let store = FilesystemStore::new(path).map_err(|e| file_err(path, e.to_string()))?;
        let z = ZArray::new_with_metadata(Arc::new(store), "/", meta)
            .map_err(|e| file_err(path, e.to_string()))?;
        z.store_metadata().map_err(|e| file_err(path, e.to_string()))?;
        let p = path.display().to_string();
        a.write_blocks(|b, region| zarr_write(b, p.clone(), region).erase())
    }
}
