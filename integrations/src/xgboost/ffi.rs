//! Safe owners of XGBoost's C API handles (`xgboost_lib-sys`, linked
//! against the pinned `libxgboost.so`): a `DMatrix` and a `Booster`, freed
//! on drop, every call checked and its failure turned into XGBoost's own
//! message. Only functions that XGBoost 3.2's library exports are called.

use std::cell::RefCell;
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
    // "[20:30:05] /workspace/src/x.cc:114: Check failed: ..." and
    // "[x.cc:114|20:30:05]: Check failed: ..." -> "Check failed: ..."
    let message = match message.strip_prefix('[') {
        Some(m) => match (m.split_once("]: "), m.split_once("] ")) {
            (Some((_, rest)), _) => rest,
            (None, Some((_, rest))) => rest.split_once(": ").map_or(rest, |(_, m)| m),
            (None, None) => message,
        },
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

thread_local! {
    /// XGBoost's log lines on this thread while a caller captures them.
    static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

unsafe extern "C" fn log_line(message: *const c_char) {
    // SAFETY: XGBoost passes a NUL-terminated string.
    let line = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    let kept = CAPTURED.with(|c| match c.borrow_mut().as_mut() {
        Some(lines) => {
            lines.push(line.clone());
            true
        }
        None => false,
    });
    if !kept {
        eprintln!("{line}");
    }
}

/// Runs `f` and returns XGBoost's log lines from this thread during it
/// (other lines still go to stderr, as XGBoost's own logger prints them).
pub fn capture_log<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    thread_local! {
        // XGBoost keeps its log callback per thread.
        static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: `log_line` has the signature XGBoost expects and lives forever.
        unsafe { sys::XGBRegisterLogCallback(Some(log_line)) };
    }
    let before = CAPTURED.with(|c| c.borrow_mut().replace(Vec::new()));
    let out = f();
    let lines =
        CAPTURED.with(|c| std::mem::replace(&mut *c.borrow_mut(), before)).unwrap_or_default();
    (out, lines)
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

/// Rows borrowed for a [`DMatrix::quantile`]: row-major f64 values and the
/// per-row fields, handed to XGBoost by address (array interface), not copied.
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    /// `rows × cols` values, row-major.
    pub x: &'a [f64],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// One label per row.
    pub label: Option<&'a [f64]>,
    /// One weight per row.
    pub weight: Option<&'a [f64]>,
    /// One margin per row (or `rows × k` for `k` outputs).
    pub base_margin: Option<&'a [f64]>,
}

fn interface(values: &[f64], shape: &[usize]) -> String {
    let shape: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!(
        r#"{{"data": [{}, true], "shape": [{}], "typestr": "<f8", "version": 3}}"#,
        values.as_ptr() as usize,
        shape.join(", ")
    )
}

struct BatchIter<'a> {
    batches: &'a [Batch<'a>],
    next: usize,
    proxy: sys::DMatrixHandle,
    error: Option<XgbError>,
}

impl BatchIter<'_> {
    fn set(&mut self, b: &Batch<'_>) -> Result<(), XgbError> {
        let data = c_string("data", &interface(b.x, &[b.rows, b.cols]))?;
        // SAFETY: the proxy is live; `b.x` outlives the matrix construction.
        check("XGProxyDMatrixSetDataDense", unsafe {
            sys::XGProxyDMatrixSetDataDense(self.proxy, data.as_ptr())
        })?;
        for (field, values) in
            [("label", b.label), ("weight", b.weight), ("base_margin", b.base_margin)]
        {
            let Some(values) = values else { continue };
            let shape = if values.len() == b.rows {
                vec![b.rows]
            } else {
                vec![b.rows, values.len() / b.rows.max(1)]
            };
            let (f, v) = (c_string("field", field)?, c_string(field, &interface(values, &shape))?);
            // SAFETY: as above.
            check("XGDMatrixSetInfoFromInterface", unsafe {
                sys::XGDMatrixSetInfoFromInterface(self.proxy, f.as_ptr(), v.as_ptr())
            })?;
        }
        Ok(())
    }
}

unsafe extern "C" fn iter_reset(handle: sys::DataIterHandle) {
    // SAFETY: `handle` is the `BatchIter` passed to XGBoost by `DMatrix::quantile`.
    let it = unsafe { &mut *handle.cast::<BatchIter<'_>>() };
    it.next = 0;
}

unsafe extern "C" fn iter_next(handle: sys::DataIterHandle) -> c_int {
    // SAFETY: as in `iter_reset`.
    let it = unsafe { &mut *handle.cast::<BatchIter<'_>>() };
    if it.error.is_some() || it.next == it.batches.len() {
        return 0;
    }
    let b = it.batches[it.next];
    it.next += 1;
    match it.set(&b) {
        Ok(()) => 1,
        Err(e) => {
            it.error = Some(e);
            0
        }
    }
}

impl DMatrix {
    /// A quantile DMatrix (the histogram method's compressed bins) built by
    /// iterating over `batches`, which XGBoost reads in place: no
    /// concatenated copy of the rows is made. In a distributed gang the cut
    /// points are merged across the members (inside this call). Evaluation
    /// sets pass the training matrix as `reference`, so they share its cuts.
    pub fn quantile(
        batches: &[Batch<'_>],
        reference: Option<&DMatrix>,
        max_bin: usize,
        threads: usize,
    ) -> Result<DMatrix, XgbError> {
        let data_err = |message: String| XgbError::Param { name: "data".into(), message };
        let Some(first) = batches.first() else {
            return Err(data_err("no rows: a quantile DMatrix needs at least one batch".into()));
        };
        let cols = first.cols;
        for (i, b) in batches.iter().enumerate() {
            if b.cols != cols || b.x.len() != b.rows * b.cols || b.rows == 0 {
                return Err(data_err(format!(
                    "batch {i} has {} values for {} rows × {} columns (the first batch has {cols} columns)",
                    b.x.len(), b.rows, b.cols
                )));
            }
            for (field, v) in [("label", b.label), ("weight", b.weight)] {
                if v.is_some_and(|v| v.len() != b.rows) {
                    return Err(data_err(format!(
                        "batch {i}: {} {field}s for {} rows",
                        v.map_or(0, <[f64]>::len),
                        b.rows
                    )));
                }
            }
        }
        let mut proxy = ptr::null_mut();
        // SAFETY: `proxy` receives a new handle.
        check("XGProxyDMatrixCreate", unsafe { sys::XGProxyDMatrixCreate(&mut proxy) })?;
        let proxy = DMatrix { handle: proxy, rows: 0, cols };
        let mut it = BatchIter { batches, next: 0, proxy: proxy.handle, error: None };
        let threads = if threads == 0 { -1 } else { threads as i64 };
        let config = c_string(
            "config",
            &format!(r#"{{"missing": NaN, "nthread": {threads}, "max_bin": {max_bin}}}"#),
        )?;
        let mut handle = ptr::null_mut();
        // SAFETY: `it` outlives the call (XGBoost reads every batch inside it);
        // the callbacks receive it back as the iterator handle.
        let ret = unsafe {
            sys::XGQuantileDMatrixCreateFromCallback(
                (&mut it as *mut BatchIter<'_>).cast(),
                proxy.handle,
                reference.map_or(ptr::null_mut(), |r| r.handle),
                Some(iter_reset),
                Some(iter_next),
                config.as_ptr(),
                &mut handle,
            )
        };
        if let Some(e) = it.error.take() {
            if ret == 0 {
                // SAFETY: XGBoost made a (truncated) matrix; it is not used.
                unsafe { sys::XGDMatrixFree(handle) };
            }
            return Err(e);
        }
        check("XGQuantileDMatrixCreateFromCallback", ret)?;
        let rows = batches.iter().map(|b| b.rows).sum();
        Ok(DMatrix { handle, rows, cols })
    }
}

/// XGBoost's tracker (the coordinator of a distributed training gang),
/// running in this process on its own threads. Dropping it stops it.
pub struct Tracker {
    handle: sys::TrackerHandle,
}

// SAFETY: the tracker's handle is used from one thread at a time.
unsafe impl Send for Tracker {}

impl Tracker {
    /// Starts a tracker for `n_workers` members on `host`. Members are
    /// ranked by their task ids; `timeout_s` bounds the gang's bootstrap and
    /// shutdown. The port is found free here and passed in, so members can
    /// connect at once: XGBoost's own `WorkerArgs` polls for its thread to
    /// start in steps of 100 ms.
    pub fn start(host: &str, n_workers: usize, timeout_s: u64) -> Result<(Tracker, u16), XgbError> {
        let mut last = None;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind((host, 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| XgbError::Library {
                    call: "XGTrackerCreate".into(),
                    message: format!("no free port on {host}: {e}"),
                })?;
            match Tracker::start_on(host, port, n_workers, timeout_s) {
                Ok(t) => return Ok((t, port)),
                // Another process took the port in between: try another.
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    fn start_on(
        host: &str,
        port: u16,
        n_workers: usize,
        timeout_s: u64,
    ) -> Result<Tracker, XgbError> {
        let config = c_string(
            "tracker",
            &format!(
                r#"{{"dmlc_communicator": "rabit", "n_workers": {n_workers}, "host": "{host}", "port": {port}, "sortby": 1, "timeout": {timeout_s}}}"#
            ),
        )?;
        let mut handle = ptr::null_mut();
        // SAFETY: `config` is a live string; `handle` receives the tracker.
        check("XGTrackerCreate", unsafe { sys::XGTrackerCreate(config.as_ptr(), &mut handle) })?;
        let tracker = Tracker { handle };
        let empty = c_string("config", "{}")?;
        // SAFETY: the handle is live.
        check("XGTrackerRun", unsafe { sys::XGTrackerRun(tracker.handle, empty.as_ptr()) })?;
        Ok(tracker)
    }

    /// Waits until every member has shut down its communicator.
    pub fn wait(&self, timeout_s: u64) -> Result<(), XgbError> {
        let config = c_string("config", &format!(r#"{{"timeout": {timeout_s}}}"#))?;
        // SAFETY: the handle is live.
        check("XGTrackerWaitFor", unsafe { sys::XGTrackerWaitFor(self.handle, config.as_ptr()) })
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // SAFETY: the handle was created by XGTrackerCreate and is freed once.
        unsafe { sys::XGTrackerFree(self.handle) };
    }
}

/// Membership of this thread in a gang's collective (XGBoost keeps the
/// communicator per thread); finalized on drop.
pub struct Communicator {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Communicator {
    /// Joins the gang whose tracker listens at `uri:port`, as task `task_id`
    /// (the tracker ranks members by it). `timeout_s` bounds XGBoost's
    /// network operations.
    pub fn join(
        uri: &str,
        port: u16,
        task_id: &str,
        timeout_s: u64,
    ) -> Result<Communicator, XgbError> {
        let config = c_string(
            "communicator",
            &format!(
                r#"{{"dmlc_communicator": "rabit", "dmlc_tracker_uri": "{uri}", "dmlc_tracker_port": {port}, "dmlc_task_id": "{task_id}", "dmlc_timeout": {timeout_s}, "dmlc_retry": 3}}"#
            ),
        )?;
        // SAFETY: `config` is a live string.
        check("XGCommunicatorInit", unsafe { sys::XGCommunicatorInit(config.as_ptr()) })?;
        Ok(Communicator { _not_send: std::marker::PhantomData })
    }

    /// This member's rank (as the tracker assigned it).
    pub fn rank(&self) -> usize {
        // SAFETY: the communicator is initialized on this thread.
        unsafe { sys::XGCommunicatorGetRank() }.max(0) as usize
    }

    /// Members in the gang.
    pub fn world_size(&self) -> usize {
        // SAFETY: as above.
        unsafe { sys::XGCommunicatorGetWorldSize() }.max(0) as usize
    }
}

impl Drop for Communicator {
    fn drop(&mut self) {
        // SAFETY: initialized on this thread by `join`.
        unsafe { sys::XGCommunicatorFinalize() };
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

    /// Replaces this booster's model with a saved one (JSON or UBJSON), keeping
    /// the matrices it caches: training continues from the saved rounds.
    pub fn load_model(&mut self, bytes: &[u8]) -> Result<(), XgbError> {
        // SAFETY: `bytes` is a live buffer of the given length.
        let ret = unsafe {
            sys::XGBoosterLoadModelFromBuffer(
                self.handle,
                bytes.as_ptr().cast(),
                bytes.len() as sys::bst_ulong,
            )
        };
        check("XGBoosterLoadModelFromBuffer", ret)
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

    /// The booster's configuration as XGBoost reports it (JSON).
    pub fn config(&self) -> Result<String, XgbError> {
        let mut len: sys::bst_ulong = 0;
        let mut data: *const c_char = ptr::null();
        // SAFETY: the handle is live; `data` points into XGBoost's buffer.
        let ret = unsafe { sys::XGBoosterSaveJsonConfig(self.handle, &mut len, &mut data) };
        check("XGBoosterSaveJsonConfig", ret)?;
        // SAFETY: XGBoost returned `len` bytes at `data`.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len as usize) };
        Ok(String::from_utf8_lossy(bytes).into_owned())
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
