//! Property tests of the `.npy` reader: random, truncated and mutated headers
//! are errors, never panics; valid headers round-trip. Each property runs
//! 10,000 cases (proptest prints the seed of a failing case).

use proptest::prelude::*;
use rask_core::npy::{decode_f64, parse_header, Dtype, NpyError, NpyHeader};

const CASES: u32 = 10_000;

fn dtype() -> impl Strategy<Value = Dtype> {
    prop::sample::select(vec![
        "<f8", ">f8", "<f4", ">f4", "<i8", ">i8", "<i4", ">i2", "|i1", "|u1", "<u2", ">u4", "<u8",
        "|b1",
    ])
    .prop_map(|d| Dtype::parse(d).unwrap())
}

fn header() -> impl Strategy<Value = NpyHeader> {
    (dtype(), any::<bool>(), prop::collection::vec(0usize..6, 0..4))
        .prop_map(|(dtype, fortran, shape)| NpyHeader { dtype, fortran, shape, data_offset: 0 })
}

/// A valid file: header and `len * size` data bytes.
fn file() -> impl Strategy<Value = (NpyHeader, Vec<u8>)> {
    header().prop_flat_map(|h| {
        let n = h.data_len().unwrap() as usize;
        (Just(h), prop::collection::vec(any::<u8>(), n))
    })
}

/// Bytes that start like a .npy file (magic, a version) and go on at random.
fn npy_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    (0u8..5, 0u8..2, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(major, minor, rest)| {
        let mut b = b"\x93NUMPY".to_vec();
        b.extend_from_slice(&[major, minor]);
        b.extend(rest);
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn random_bytes_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_header(&bytes);
        let _ = decode_f64(&bytes);
    }

    #[test]
    fn npy_like_bytes_are_errors_not_panics(bytes in npy_like_bytes()) {
        let _ = parse_header(&bytes);
        let _ = decode_f64(&bytes);
    }

    #[test]
    fn valid_files_round_trip_and_every_truncation_is_an_error((h, data) in file(), cut in any::<prop::sample::Index>()) {
        let mut bytes = h.to_bytes();
        let offset = bytes.len() as u64;
        bytes.extend_from_slice(&data);
        let parsed = parse_header(&bytes).unwrap();
        prop_assert_eq!(&parsed, &NpyHeader { data_offset: offset, ..h.clone() });
        let a = decode_f64(&bytes).unwrap();
        prop_assert_eq!(a.shape, h.shape.clone());
        prop_assert_eq!(a.data.len() as u64, h.len().unwrap());
        if !bytes.is_empty() {
            let at = cut.index(bytes.len());
            let short = &bytes[..at];
            // A cut inside the header fails to parse; a cut inside the data fails to decode.
            prop_assert!(decode_f64(short).is_err() || h.data_len().unwrap() == 0 && at as u64 >= offset);
            if (at as u64) < offset {
                prop_assert!(parse_header(short).is_err());
            }
        }
    }

    #[test]
    fn mutated_headers_are_errors_or_consistent(
        (h, data) in file(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = h.to_bytes();
        let header_len = bytes.len();
        bytes.extend_from_slice(&data);
        bytes[at.index(header_len)] = byte;
        match parse_header(&bytes) {
            Err(NpyError::Io { .. }) => prop_assert!(false, "no I/O in parsing"),
            Err(_) => {}
            // Whatever still parses describes data that decodes or is reported missing.
            Ok(parsed) => match decode_f64(&bytes) {
                Ok(a) => prop_assert_eq!(a.data.len() as u64, parsed.len().unwrap()),
                Err(e) => prop_assert!(matches!(e, NpyError::Truncated { .. }), "{e}"),
            },
        }
    }

    #[test]
    fn huge_announced_shapes_are_errors(dims in prop::collection::vec(any::<u64>(), 1..6), descr in dtype()) {
        let shape = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
        let text = format!("{{'descr': '{}', 'fortran_order': False, 'shape': ({shape},), }}", descr.descr());
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
        // Parsing checks the byte count; decoding checks it against the (absent) data.
        if let Ok(h) = parse_header(&bytes) {
            prop_assert!(h.data_len().is_ok());
            prop_assert!(decode_f64(&bytes).is_err() || h.data_len().unwrap() == 0);
        }
    }
}
