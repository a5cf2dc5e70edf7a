//! Safe owners of XGBoost's C API handles (`xgboost_lib-sys`, linked
//! against the pinned `libxgboost.so`): a `DMatrix` and a `Booster`, freed
//! on drop, every call checked and its failure turned into XGBoost's own
//! message. Only functions that XGBoost 3.2's library exports are called.

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr;

use xgboost_sys as sys;

use super::XgbError;

/// XGBoost's message for the last failed call on this thread, without its
/// stack trace and source location.
fn last_error() -> String {
    // SAFETY: XGBGetLastError returns a thread-local, NUL-terminated string.
    let full = unsafe { CStr::from_ptr(sys::XGBGetLastError()) }.to_string_lossy().into_owned();
    let message = full.split("Stack trace:").next().unwrap_or(&full).trim();
    // "[20:30:05] /workspace/src/x.cc:114: Check failed: ..." -> "Check failed: ..."
    let message = match message.strip_prefix('[').and_then(|m| m.split_once("] ")) {
        Some((_, rest)) => rest.split_once(": ").map_or(rest, |(_, m)| m),
        None => message,
    };
    message.trim().to_string()
}

fn check(what: &str, ret: c_int) -> Result<(), XgbError> {
    if ret == 0 {
        Ok(())
    } else {
        Err(XgbError::Library { call: what.into(), message: last_error() })
    }
}

fn c_string(what: &str, s: &str) -> Result<CString, XgbError> {
    CString::new(s).map_err(|_| XgbError::Param {
        name: what.into(),
        message: format!("{s:?} contains a NUL byte"),
    })
}

/// A dense matrix in XGBoost's format (f32, row-major, NaN as missing).
pub struct DMatrix {
    handle: sys::DMatrixHandle,
    rows: usize,
    cols: usize,
}

// SAFETY: a DMatrix handle may move between threads; it is never used from
// two threads at once (no `Sync`).
unsafe impl Send for DMatrix {}

impl DMatrix {
    /// Copies `rows × cols` values (row-major) into a new DMatrix, with
    /// `threads` threads (0: every core).
    pub fn from_dense(
        data: &[f32],
        rows: usize,
        cols: usize,
        threads: usize,
    ) -> Result<DMatrix, XgbError> {
        assert_eq!(data.len(), rows * cols, "the caller checks the shape");
        let mut handle = ptr::null_mut();
        let threads = if threads == 0 { -1 } else { threads as c_int };
        // SAFETY: `data` holds rows × cols floats; XGBoost copies them.
        let ret = unsafe {
            sys::XGDMatrixCreateFromMat_omp(
                data.as_ptr(),
                rows as sys::bst_ulong,
                cols as sys::bst_ulong,
                f32::NAN,
                &mut handle,
                threads,
            )
        };
        check("XGDMatrixCreateFromMat_omp", ret)?;
        Ok(DMatrix { handle, rows, cols })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Sets a float field (`label`, `weight`, `base_margin`), one value per row.
    pub fn set_info(&mut self, field: &str, values: &[f32]) -> Result<(), XgbError> {
        let name = c_string("field", field)?;
        // SAFETY: the handle is live; XGBoost copies `values`.
        let ret = unsafe {
            sys::XGDMatrixSetFloatInfo(
                self.handle,
                name.as_ptr(),
                values.as_ptr(),
                values.len() as sys::bst_ulong,
            )
        };
        check("XGDMatrixSetFloatInfo", ret)
    }

    /// The rows at `index` as a new DMatrix (with their labels and weights).
    pub fn slice(&self, index: &[usize]) -> Result<DMatrix, XgbError> {
        let idx: Vec<c_int> = index.iter().map(|&i| i as c_int).collect();
        let mut handle = ptr::null_mut();
        // SAFETY: the handle is live and `idx` holds valid row numbers.
        let ret = unsafe {
            sys::XGDMatrixSliceDMatrix(
                self.handle,
                idx.as_ptr(),
                idx.len() as sys::bst_ulong,
                &mut handle,
            )
        };
        check("XGDMatrixSliceDMatrix", ret)?;
        Ok(DMatrix { handle, rows: index.len(), cols: self.cols })
    }
}

impl Drop for DMatrix {
    fn drop(&mut self) {
        // SAFETY: the handle was created by XGBoost and is freed once.
        unsafe { sys::XGDMatrixFree(self.handle) };
    }
}

/// A gradient-boosted model being trained or used.
pub struct Booster {
    handle: sys::BoosterHandle,
}

// SAFETY: as for DMatrix.
unsafe impl Send for Booster {}

impl Booster {
    /// A new booster that caches `dmats` (the training and evaluation sets).
    pub fn new(dmats: &[&DMatrix]) -> Result<Booster, XgbError> {
        let handles: Vec<sys::DMatrixHandle> = dmats.iter().map(|d| d.handle).collect();
        let mut handle = ptr::null_mut();
        // SAFETY: the handles are live for the call.
        let ret = unsafe {
            sys::XGBoosterCreate(handles.as_ptr(), handles.len() as sys::bst_ulong, &mut handle)
        };
        check("XGBoosterCreate", ret)?;
        Ok(Booster { handle })
    }

    /// Loads a model saved by [`Booster::save`] (JSON or UBJSON, as XGBoost's
    /// Python package writes too).
    pub fn load(bytes: &[u8]) -> Result<Booster, XgbError> {
        let booster = Booster::new(&[])?;
        // SAFETY: `bytes` is a live buffer of the given length.
        let ret = unsafe {
            sys::XGBoosterLoadModelFromBuffer(
                booster.handle,
                bytes.as_ptr().cast(),
                bytes.len() as sys::bst_ulong,
            )
        };
        check("XGBoosterLoadModelFromBuffer", ret)?;
        Ok(booster)
    }

    /// Sets one parameter; XGBoost refuses bad values here or at the first update.
    pub fn set_param(&mut self, name: &str, value: &str) -> Result<(), XgbError> {
        let (n, v) = (c_string(name, name)?, c_string(name, value)?);
        // SAFETY: the handle and strings are live.
        let ret = unsafe { sys::XGBoosterSetParam(self.handle, n.as_ptr(), v.as_ptr()) };
        check("XGBoosterSetParam", ret).map_err(|e| e.about(name))
    }

    /// One boosting round on `dtrain`.
    pub fn update(&mut self, round: usize, dtrain: &DMatrix) -> Result<(), XgbError> {
        // SAFETY: both handles are live.
        let ret =
            unsafe { sys::XGBoosterUpdateOneIter(self.handle, round as c_int, dtrain.handle) };
        check("XGBoosterUpdateOneIter", ret)
    }

    /// The evaluation line of round `round` (`[3]\ttrain-logloss:0.51\t...`).
    pub fn eval(&self, round: usize, sets: &[(&DMatrix, &str)]) -> Result<String, XgbError> {
        let names: Vec<CString> =
            sets.iter().map(|(_, n)| c_string("eval name", n)).collect::<Result<_, _>>()?;
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut handles: Vec<sys::DMatrixHandle> = sets.iter().map(|(d, _)| d.handle).collect();
        let mut out: *const c_char = ptr::null();
        // SAFETY: handles and names are live; `out` points into XGBoost's
        // thread-local buffer, copied before the next call.
        let ret = unsafe {
            sys::XGBoosterEvalOneIter(
                self.handle,
                round as c_int,
                handles.as_mut_ptr(),
                name_ptrs.as_ptr() as *mut *const c_char,
                sets.len() as sys::bst_ulong,
                &mut out,
            )
        };
        check("XGBoosterEvalOneIter", ret)?;
        // SAFETY: XGBoost returned a NUL-terminated string.
        Ok(unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned())
    }

    /// Predictions for `d`: the values and their shape (rows, or rows × classes).
    pub fn predict(&self, d: &DMatrix, margin: bool) -> Result<(Vec<f32>, Vec<usize>), XgbError> {
        let config = format!(
            r#"{{"type": {}, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false}}"#,
            u8::from(margin)
        );
        let config = c_string("predict config", &config)?;
        let mut shape: *const sys::bst_ulong = ptr::null();
        let mut dim: sys::bst_ulong = 0;
        let mut result: *const f32 = ptr::null();
        // SAFETY: handles are live; the outputs point into XGBoost's buffers,
        // copied before the next call.
        let ret = unsafe {
            sys::XGBoosterPredictFromDMatrix(
                self.handle,
                d.handle,
                config.as_ptr(),
                &mut shape,
                &mut dim,
                &mut result,
            )
        };
        check("XGBoosterPredictFromDMatrix", ret)?;
        // SAFETY: `shape` has `dim` entries; `result` has their product.
        let shape: Vec<usize> = unsafe { std::slice::from_raw_parts(shape, dim as usize) }
            .iter()
            .map(|&s| s as usize)
            .collect();
        let len = shape.iter().product();
        let values = unsafe { std::slice::from_raw_parts(result, len) }.to_vec();
        Ok((values, shape))
    }

    /// The model in XGBoost's `json` or `ubj` (Universal Binary JSON) format.
    pub fn save(&self, format: &str) -> Result<Vec<u8>, XgbError> {
        let config = c_string("format", &format!(r#"{{"format": "{format}"}}"#))?;
        let mut len: sys::bst_ulong = 0;
        let mut data: *const c_char = ptr::null();
        // SAFETY: the handle is live; `data` points into XGBoost's buffer.
        let ret = unsafe {
            sys::XGBoosterSaveModelToBuffer(self.handle, config.as_ptr(), &mut len, &mut data)
        };
        check("XGBoosterSaveModelToBuffer", ret)?;
        // SAFETY: XGBoost returned `len` bytes at `data`.
        Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len as usize) }.to_vec())
    }

    /// The model of rounds `begin..end` (the rounds up to an early stop).
    pub fn slice(&self, begin: usize, end: usize) -> Result<Booster, XgbError> {
        let mut handle = ptr::null_mut();
        // SAFETY: the handle is live.
        let ret = unsafe {
            sys::XGBoosterSlice(self.handle, begin as c_int, end as c_int, 1, &mut handle)
        };
        check("XGBoosterSlice", ret)?;
        Ok(Booster { handle })
    }

    /// Features the model was trained on.
    pub fn num_features(&self) -> Result<usize, XgbError> {
        let mut out: sys::bst_ulong = 0;
        // SAFETY: the handle is live.
        let ret = unsafe { sys::XGBoosterGetNumFeature(self.handle, &mut out) };
        check("XGBoosterGetNumFeature", ret)?;
        Ok(out as usize)
    }

    /// Rounds boosted so far.
    pub fn rounds(&self) -> Result<usize, XgbError> {
        let mut out: c_int = 0;
        // SAFETY: the handle is live.
        let ret = unsafe { sys::XGBoosterBoostedRounds(self.handle, &mut out) };
        check("XGBoosterBoostedRounds", ret)?;
        Ok(out as usize)
    }
}

impl Drop for Booster {
    fn drop(&mut self) {
        // SAFETY: the handle was created by XGBoost and is freed once.
        unsafe { sys::XGBoosterFree(self.handle) };
    }
}
