//! The NumPy `.npy` format, versions 1.0 to 3.0: the one reader and writer
//! of headers in Rask (chunked arrays and the ML data sets both use it).
//!
//! A file is the magic `\x93NUMPY`, a version, the length of a header, the
//! header (a Python dict literal: `descr`, `fortran_order`, `shape`), then the
//! elements. Everything read from a file is untrusted: lengths are bounded,
//! the shape's byte count is computed with checked arithmetic, and malformed
//! input is an [`NpyError`], never a panic.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Longest header accepted, in bytes (NumPy writes a few hundred).
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// Most dimensions accepted (NumPy's own limit).
pub const MAX_DIMS: usize = 64;
const MAGIC: &[u8] = b"\x93NUMPY";

/// What can be wrong with a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The magic string is missing.
    #[error("not a .npy file (the magic string \\x93NUMPY is missing)")]
    NotNpy,
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error(".npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)")]
    Version {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The file ends early.
    #[error("truncated .npy file: its {what} needs {needed} bytes, {available} are present")]
    Truncated {
        /// The part that is cut: `header` or `data`.
        what: &'static str,
        /// Bytes it needs.
        needed: u64,
        /// Bytes there are.
        available: u64,
    },
    /// A header longer than [`MAX_HEADER_LEN`].
    #[error(".npy header of {len} bytes is implausibly large (at most {MAX_HEADER_LEN} are read)")]
    HeaderTooLarge {
        /// The announced length.
        len: u64,
    },
    /// The header is not the dict NumPy writes.
    #[error("malformed .npy header: {reason} (header: {header:?})")]
    Header {
        /// What is wrong.
        reason: String,
        /// The header text (shortened).
        header: String,
    },
    /// A dtype this reader does not handle.
    #[error("dtype {descr:?} is not supported ({supported})")]
    Dtype {
        /// The header's `descr`.
        descr: String,
        /// What is.
        supported: &'static str,
    },
    /// The shape's byte count does not fit in 64 bits.
    #[error("shape {shape:?} of {descr} is too large: its size overflows 64 bits")]
    Overflow {
        /// The shape.
        shape: Vec<usize>,
        /// The dtype.
        descr: String,
    },
    /// An I/O error.
    #[error("{message}")]
    Io {
        /// What the system said, and what was being done.
        message: String,
    },
}

/// The kind of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// IEEE float (`f`).
    Float,
    /// Signed integer (`i`).
    Int,
    /// Unsigned integer (`u`).
    UInt,
    /// Boolean (`b`), one byte.
    Bool,
}

/// An element type: kind, size in bytes and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dtype {
    /// The kind.
    pub kind: Kind,
    /// Bytes per element (1, 2, 4 or 8).
    pub size: u8,
    /// Most significant byte first.
    pub big_endian: bool,
}

const SUPPORTED: &str = "bool, int8-64, uint8-64, float32 and float64, in either byte order";

impl Dtype {
    /// Parses NumPy's `descr` string (`<f8`, `>i4`, `|b1`, `=u2`, ...).
    pub fn parse(descr: &str) -> Result<Dtype, NpyError> {
        let bad = || NpyError::Dtype { descr: descr.to_string(), supported: SUPPORTED };
        let mut chars = descr.chars();
        let (order, rest) = match chars.next() {
            Some(c @ ('<' | '>' | '|' | '=')) => (c, chars.as_str()),
            _ => ('=', descr),
        };
        let mut rest_chars = rest.chars();
        let kind = match rest_chars.next() {
            Some('f') => Kind::Float,
            Some('i') => Kind::Int,
            Some('u') => Kind::UInt,
            Some('b') => Kind::Bool,
            _ => return Err(bad()),
        };
        let size: u8 = rest_chars.as_str().parse().map_err(|_| bad())?;
        let valid = match kind {
            Kind::Float => matches!(size, 4 | 8),
            Kind::Int | Kind::UInt => matches!(size, 1 | 2 | 4 | 8),
            Kind::Bool => size == 1,
        };
        if !valid {
            return Err(bad());
        }
        // '=' is native order; Rask runs on little-endian machines.
        Ok(Dtype { kind, size, big_endian: order == '>' && size > 1 })
    }

    /// NumPy's `descr` string for this type.
    pub fn descr(&self) -> String {
        let order = if self.size == 1 {
            '|'
        } else if self.big_endian {
            '>'
        } else {
            '<'
        };
        let kind = match self.kind {
            Kind::Float => 'f',
            Kind::Int => 'i',
            Kind::UInt => 'u',
            Kind::Bool => 'b',
        };
        format!("{order}{kind}{}", self.size)
    }

    /// The same type in little-endian order (what Rask's arrays hold).
    pub fn little_endian(self) -> Dtype {
        Dtype { big_endian: false, ..self }
    }

    /// Decodes one element as f64 (`bytes` holds exactly `size` bytes).
    fn to_f64(self, bytes: &[u8]) -> f64 {
        let mut b = [0u8; 8];
        let n = self.size as usize;
        b[..n].copy_from_slice(&bytes[..n]);
        if self.big_endian {
            b[..n].reverse();
        }
        match (self.kind, self.size) {
            (Kind::Float, 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            (Kind::Float, _) => f64::from_le_bytes(b),
            (Kind::Int, 1) => b[0] as i8 as f64,
            (Kind::Int, 2) => i16::from_le_bytes([b[0], b[1]]) as f64,
            (Kind::Int, 4) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            (Kind::Int, _) => i64::from_le_bytes(b) as f64,
            (Kind::UInt | Kind::Bool, 1) => b[0] as f64,
            (Kind::UInt, 2) => u16::from_le_bytes([b[0], b[1]]) as f64,
            (Kind::UInt, 4) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            (Kind::UInt | Kind::Bool, _) => u64::from_le_bytes(b) as f64,
        }
    }
}

/// What a `.npy` header says, and where the data starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpyHeader {
    /// The element type.
    pub dtype: Dtype,
    /// Whether the data is in Fortran (column-major) order.
    pub fortran: bool,
    /// The shape.
    pub shape: Vec<usize>,
    /// Where the data starts, in bytes from the start of the file.
    pub data_offset: u64,
}

impl NpyHeader {
    /// Elements the header announces (checked).
    pub fn len(&self) -> Result<u64, NpyError> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| self.overflow())
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.shape.contains(&0)
    }

    /// Bytes of data the header announces (checked).
    pub fn data_len(&self) -> Result<u64, NpyError> {
        self.len()?.checked_mul(self.dtype.size as u64).ok_or_else(|| self.overflow())
    }

    /// The file length the header needs (checked).
    pub fn file_len(&self) -> Result<u64, NpyError> {
        self.data_offset.checked_add(self.data_len()?).ok_or_else(|| self.overflow())
    }

    fn overflow(&self) -> NpyError {
        NpyError::Overflow { shape: self.shape.clone(), descr: self.dtype.descr() }
    }

    /// Checks that a file of `file_len` bytes holds all the data.
    pub fn check_file_len(&self, file_len: u64) -> Result<(), NpyError> {
        let needed = self.data_len()?;
        let available = file_len.saturating_sub(self.data_offset);
        if available < needed {
            return Err(NpyError::Truncated { what: "data", needed, available });
        }
        Ok(())
    }

    /// The header bytes NumPy would write for this type, shape and order
    /// (version 1.0, or 2.0 when the header needs more than 65535 bytes),
    /// padded so that the data starts on a 64-byte boundary.
    /// `data_offset` is ignored; the returned length is where the data starts.
    pub fn to_bytes(&self) -> Vec<u8> {
        let shape = match self.shape.len() {
            1 => format!("({},)", self.shape[0]),
            _ => format!(
                "({})",
                self.shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        let fortran = if self.fortran { "True" } else { "False" };
        let dict = format!(
            "{{'descr': '{}', 'fortran_order': {fortran}, 'shape': {shape}, }}",
            self.dtype.descr()
        );
        for (version, prefix) in [(1u8, 10usize), (2, 12)] {
            let mut text = dict.clone();
            while (prefix + text.len() + 1) % 64 != 0 {
                text.push(' ');
            }
            text.push('\n');
            if version == 1 && text.len() > u16::MAX as usize {
                continue;
            }
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&[version, 0]);
            if version == 1 {
                out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            } else {
                out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            }
            out.extend_from_slice(text.as_bytes());
            return out;
        }
        unreachable!("a version 2.0 header holds any shape of at most MAX_DIMS dimensions")
    }
}

/// Bytes before the header text: `(prefix length, header length)`, or what is wrong.
/// `bytes` is the start of the file (at least 12 bytes of it if the file has them).
pub fn header_extent(bytes: &[u8]) -> Result<(usize, usize), NpyError> {
    let truncated = |needed: usize| NpyError::Truncated {
        what: "header",
        needed: needed as u64,
        available: bytes.len() as u64,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
            truncated(10)
        } else {
            NpyError::NotNpy
        });
    }
    if bytes.len() < 8 {
        return Err(truncated(10));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let prefix = match (major, minor) {
        (1, 0) => 10,
        (2 | 3, 0) => 12,
        _ => return Err(NpyError::Version { major, minor }),
    };
    let len_bytes = bytes.get(8..prefix).ok_or_else(|| truncated(prefix))?;
    let len = match len_bytes {
        [a, b] => u16::from_le_bytes([*a, *b]) as u64,
        [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]) as u64,
        _ => unreachable!("the prefix is 10 or 12 bytes"),
    };
    if len > MAX_HEADER_LEN as u64 {
        return Err(NpyError::HeaderTooLarge { len });
    }
    Ok((prefix, len as usize))
}

/// Parses a header from the start of a file (`bytes` must hold the whole
/// header; the data may follow or not).
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, NpyError> {
    let (prefix, len) = header_extent(bytes)?;
    let end = prefix + len;
    let text = bytes.get(prefix..end).ok_or(NpyError::Truncated {
        what: "header",
        needed: end as u64,
        available: bytes.len() as u64,
    })?;
    // Version 3.0 is UTF-8; 1.0 and 2.0 are latin-1 (every byte one char).
    let text: String = if bytes[6] == 3 {
        std::str::from_utf8(text)
            .map_err(|_| header_err("a version 3.0 header that is not UTF-8", ""))?
            .to_string()
    } else {
        text.iter().map(|&b| b as char).collect()
    };
    let (descr, fortran, shape) = parse_dict(&text)?;
    if shape.len() > MAX_DIMS {
        return Err(header_err(&format!("{} dimensions (at most {MAX_DIMS})", shape.len()), &text));
    }
    let header =
        NpyHeader { dtype: Dtype::parse(&descr)?, fortran, shape, data_offset: end as u64 };
    header.file_len()?;
    Ok(header)
}

fn header_err(reason: &str, text: &str) -> NpyError {
    let header: String = text.chars().take(200).collect();
    NpyError::Header { reason: reason.to_string(), header }
}

/// A value of the header dict.
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// The header dict: `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &str) -> Result<(String, bool, Vec<usize>), NpyError> {
    let err = |reason: &str| header_err(reason, text);
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    p.ws();
    if !p.eat(b'{') {
        return Err(err("it does not start with '{'"));
    }
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| err("a key is not a quoted string"))?;
        p.ws();
        if !p.eat(b':') {
            return Err(err("a key is not followed by ':'"));
        }
        p.ws();
        if key == "descr" && p.s.get(p.i) == Some(&b'[') {
            return Err(NpyError::Dtype {
                descr: "a structured dtype".into(),
                supported: SUPPORTED,
            });
        }
        let value =
            p.literal().ok_or_else(|| err(&format!("the value of {key:?} is malformed")))?;
        match (key.as_str(), value) {
            ("descr", Literal::Str(s)) => descr = Some(s),
            ("fortran_order", Literal::Bool(b)) => fortran = Some(b),
            ("shape", Literal::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", _) => {
                return Err(err(&format!("{key:?} has a value of the wrong type")))
            }
            _ => return Err(err(&format!("unknown key {key:?}"))),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            if !p.eat(b'}') {
                return Err(err("entries are not separated by ','"));
            }
            break;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(err("text follows the closing '}'"));
    }
    Ok((
        descr.ok_or_else(|| err("no 'descr'"))?,
        fortran.ok_or_else(|| err("no 'fortran_order'"))?,
        shape.ok_or_else(|| err("no 'shape'"))?,
    ))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.s.get(self.i) == Some(&c);
        self.i += usize::from(hit);
        hit
    }

    fn string(&mut self) -> Option<String> {
        let quote = *self.s.get(self.i).filter(|q| matches!(q, b'\'' | b'"'))?;
        let start = self.i + 1;
        let len = self.s.get(start..)?.iter().position(|&c| c == quote)?;
        self.i = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec()).ok()
    }

    fn word(&mut self, w: &[u8]) -> bool {
        let hit = self.s.get(self.i..).is_some_and(|r| r.starts_with(w));
        if hit {
            self.i += w.len();
        }
        hit
    }

    fn number(&mut self) -> Option<usize> {
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let n = std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()?;
        self.eat(b'L'); // Python 2 longs
        Some(n)
    }

    fn literal(&mut self) -> Option<Literal> {
        if self.word(b"True") {
            return Some(Literal::Bool(true));
        }
        if self.word(b"False") {
            return Some(Literal::Bool(false));
        }
        if self.eat(b'(') {
            let mut dims = Vec::new();
            loop {
                self.ws();
                if self.eat(b')') {
                    return Some(Literal::Tuple(dims));
                }
                if dims.len() > MAX_DIMS {
                    return None;
                }
                dims.push(self.number()?);
                self.ws();
                if !self.eat(b',') {
                    self.ws();
                    return self.eat(b')').then_some(Literal::Tuple(dims));
                }
            }
        }
        self.string().map(Literal::Str)
    }
}

fn io(path: &Path, doing: &str, e: std::io::Error) -> NpyError {
    NpyError::Io { message: format!("{}: cannot {doing}: {e}", path.display()) }
}

/// Reads and checks the header of the file at `path`, and that the file
/// holds all the data the header announces.
pub fn read_header(path: &Path) -> Result<NpyHeader, NpyError> {
    let mut f = File::open(path).map_err(|e| io(path, "open", e))?;
    let file_len = f.metadata().map_err(|e| io(path, "stat", e))?.len();
    let mut start = vec![0u8; 12.min(file_len as usize)];
    f.read_exact(&mut start).map_err(|e| io(path, "read", e))?;
    let (prefix, len) = header_extent(&start)?;
    let total = prefix + len;
    if (file_len as usize) < total {
        return Err(NpyError::Truncated {
            what: "header",
            needed: total as u64,
            available: file_len,
        });
    }
    start.resize(total, 0);
    f.read_exact(&mut start[12.min(total)..]).map_err(|e| io(path, "read", e))?;
    let header = parse_header(&start)?;
    header.check_file_len(file_len)?;
    Ok(header)
}

/// Swaps each element's bytes in place when the file's order is big-endian,
/// so the buffer holds little-endian elements.
pub fn to_little_endian(dtype: Dtype, bytes: &mut [u8]) {
    if dtype.big_endian {
        bytes.chunks_exact_mut(dtype.size as usize).for_each(<[u8]>::reverse);
    }
}

/// A whole array as f64 values in C (row-major) order, with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct F64Array {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values in C order.
    pub data: Vec<f64>,
}

/// Decodes a whole `.npy` file held in memory into f64 values in C order
/// (Fortran-order files are transposed).
pub fn decode_f64(bytes: &[u8]) -> Result<F64Array, NpyError> {
    let h = parse_header(bytes)?;
    h.check_file_len(bytes.len() as u64)?;
    let size = h.dtype.size as usize;
    let n = h.len()? as usize;
    let start = h.data_offset as usize;
    let body = &bytes[start..start + n * size];
    let values: Vec<f64> = body.chunks_exact(size).map(|b| h.dtype.to_f64(b)).collect();
    let data = if h.fortran && h.shape.len() > 1 {
        // Fortran order is C order of the reversed shape: transpose it back.
        let reversed: Vec<usize> = h.shape.iter().rev().copied().collect();
        let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&reversed), values)
            .expect("the length was checked against the shape");
        a.reversed_axes().as_standard_layout().iter().copied().collect()
    } else {
        values
    };
    Ok(F64Array { shape: h.shape, data })
}

/// Reads a whole `.npy` file as f64 values in C order.
pub fn read_f64(path: &Path) -> Result<F64Array, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, "read", e))?;
    decode_f64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(descr: &str, fortran: bool, shape: &[usize]) -> NpyHeader {
        NpyHeader {
            dtype: Dtype::parse(descr).unwrap(),
            fortran,
            shape: shape.to_vec(),
            data_offset: 0,
        }
    }

    #[test]
    fn headers_round_trip_and_align_the_data() {
        for (descr, shape) in
            [("<f8", vec![3, 4]), ("|b1", vec![7]), (">i4", vec![]), ("<u2", vec![2, 0, 5])]
        {
            let h = header(descr, true, &shape);
            let bytes = h.to_bytes();
            assert_eq!(bytes.len() % 64, 0);
            let back = parse_header(&bytes).unwrap();
            assert_eq!(back, NpyHeader { data_offset: bytes.len() as u64, ..h });
        }
    }

    #[test]
    fn numpy_written_headers_parse() {
        // As NumPy 1.x/2.x writes them, and a Python 2 file with long integers.
        for (text, shape) in [
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", vec![3, 2]),
            ("{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }", vec![5]),
            ("{'descr': '<f4', 'fortran_order': True, 'shape': (), }", vec![]),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (3L, 2L)}", vec![3, 2]),
        ] {
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
            assert_eq!(parse_header(&bytes).unwrap().shape, shape, "{text}");
        }
    }

    #[test]
    fn bad_headers_are_errors() {
        let with = |text: &str| {
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(text.len() as u16).to_le_bytes());
            b.extend_from_slice(text.as_bytes());
            parse_header(&b).unwrap_err()
        };
        assert_eq!(parse_header(b"PK\x03\x04 zip file"), Err(NpyError::NotNpy));
        assert!(matches!(
            parse_header(b"\x93NUMPY\x04\x00\x00\x00"),
            Err(NpyError::Version { .. })
        ));
        assert!(matches!(
            with("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }"),
            NpyError::Dtype { .. }
        ));
        assert!(matches!(
            with("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }"),
            NpyError::Dtype { .. }
        ));
        assert!(matches!(
            with("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"),
            NpyError::Overflow { .. }
        ));
        assert!(matches!(with("{'descr': '<f8', 'shape': (1,), }"), NpyError::Header { .. }));
        assert!(matches!(
            with("{'descr': '<f8', 'fortran_order': 0, 'shape': (1,), }"),
            NpyError::Header { .. }
        ));
    }

    #[test]
    fn fortran_and_big_endian_data_decode_to_c_order() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major as big-endian int16.
        let h = header(">i2", true, &[2, 3]);
        let mut bytes = h.to_bytes();
        for v in [1i16, 4, 2, 5, 3, 6] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        let a = decode_f64(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // One byte short.
        assert!(matches!(
            decode_f64(&bytes[..bytes.len() - 1]),
            Err(NpyError::Truncated { what: "data", needed: 12, available: 11 })
        ));
    }
}
