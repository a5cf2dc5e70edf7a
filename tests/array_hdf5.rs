//! HDF5 datasets (cargo feature `hdf5`): a file written by h5py 3.16
//! (`tests/fixtures/array/make_fixtures.py`), and Rask's own round trips.
#![cfg(feature = "hdf5")]

use std::path::{Path, PathBuf};

use rask::array::hdf5::from_hdf5;
use rask::array::npy::from_npy;
use rask::array::ChunkSpec;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/array").join(name)
}

fn load<T: rask::array::Element>(name: &str) -> ndarray::ArrayD<T> {
    from_npy::<T>(fixture(&format!("{name}.npy")), ChunkSpec::Uniform(usize::MAX))
        .unwrap()
        .compute()
        .unwrap()
}

#[test]
fn reads_h5py_files_and_round_trips() {
    let a = load::<f64>("a");
    let h = from_hdf5::<f64>(fixture("py.h5"), "/group/a", None).unwrap();
    assert_eq!(h.chunks(), &[vec![5, 5, 3], vec![4, 4, 3]], "one block per HDF5 chunk");
    assert_eq!(h.compute().unwrap(), a);
    let cut = from_hdf5::<f64>(fixture("py.h5"), "group/a", Some(ChunkSpec::PerAxis(vec![3, 7])))
        .unwrap();
    assert_eq!(cut.compute().unwrap(), a);
    // Sums over differently chunked reads agree to rounding (1e-12 relative).
    let (s1, s2) =
        (cut.sum(&[0]).unwrap().compute().unwrap(), h.sum(&[0]).unwrap().compute().unwrap());
    assert!(s1.iter().zip(s2.iter()).all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs().max(1.0)));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.h5");
    from_npy::<f64>(fixture("a.npy"), [5, 4]).unwrap().to_hdf5(&file, "x/y/a").unwrap();
    from_npy::<i64>(fixture("i.npy"), [6, 6]).unwrap().to_hdf5(&file, "i").unwrap();
    from_npy::<f32>(fixture("f32.npy"), [4, 6]).unwrap().to_hdf5(&file, "x/f").unwrap();
    from_npy::<bool>(fixture("m.npy"), [13, 11]).unwrap().to_hdf5(&file, "m").unwrap();
    assert_eq!(from_hdf5::<f64>(&file, "x/y/a", None).unwrap().compute().unwrap(), a);
    assert_eq!(from_hdf5::<i64>(&file, "i", None).unwrap().compute().unwrap(), load::<i64>("i"));
    assert_eq!(
        from_hdf5::<f32>(&file, "x/f", None).unwrap().compute().unwrap(),
        load::<f32>("f32")
    );
    assert_eq!(from_hdf5::<bool>(&file, "m", None).unwrap().compute().unwrap(), load::<bool>("m"));

    let e = from_hdf5::<f64>(fixture("py.h5"), "/group/missing", None).unwrap_err().to_string();
    assert!(e.contains("py.h5") && e.contains("missing"), "{e}");
    let e = from_hdf5::<i64>(fixture("py.h5"), "/group/a", None).unwrap_err().to_string();
    assert!(e.contains("holds <f8 data") && e.contains("int64"), "{e}");
    let e = from_hdf5::<f64>(fixture("a.npy"), "a", None).unwrap_err().to_string();
    assert!(e.contains("a.npy") && e.contains("cannot open the HDF5 file"), "{e}");
}
