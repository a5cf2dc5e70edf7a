//! Registered element functions applied item by item, so that `map`,
//! `filter` and `flat_map` with a registered op (declared with
//! `rask_core::op!`, one argument) run on a cluster's workers: the partition
//! op (`map_with<T>`, `filter_with<T>`, registered per element type) looks the
//! element op up by name where it runs.
//!
//! A mapped partition is a list of the op's outputs, which decodes as a
//! `Vec<U>` wherever it goes (in process item by item, between processes
//! through its encoding, which is that of a `Vec<U>`).

use rask_core::{OpEntry, OpError, Value};

fn element_op(name: &str) -> Result<&'static OpEntry, OpError> {
    rask_core::op::lookup(name).ok_or_else(|| {
        OpError::failed(format!(
            "no op named `{name}` is registered in this process: element functions of bags on a cluster are registered ops (`rask_core::op!`) compiled into the workers' binary"
        ))
    })
}

/// `op` applied to every item; the results as a list value.
pub fn map_with<T: serde::Serialize + Send + Sync + 'static>(
    p: Vec<T>,
    op: &str,
) -> Result<Value, OpError> {
    let f = element_op(op)?;
    let out =
        p.into_iter().map(|x| (f.func)(vec![Value::new(x)])).collect::<Result<Vec<Value>, _>>()?;
    Ok(Value::list(out))
}

/// The items for which `op` returns `true`.
pub fn filter_with<T: serde::Serialize + Clone + Send + Sync + 'static>(
    p: Vec<T>,
    op: &str,
) -> Result<Vec<T>, OpError> {
    let f = element_op(op)?;
    let mut out = Vec::with_capacity(p.len());
    for x in p {
        let keep = (f.func)(vec![Value::new(x.clone())])?
            .take_decode::<bool>()
            .map_err(|e| OpError::failed(format!("filter op `{op}` must return bool: {e}")))?;
        if keep {
            out.push(x);
        }
    }
    Ok(out)
}
