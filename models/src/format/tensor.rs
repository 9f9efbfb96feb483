use half::f16;

use super::DataType;

/// A named tensor: a shape and its elements in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: TensorData) -> Self {
        Tensor {
            name: name.into(),
            shape,
            data,
        }
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// Tensor elements, one variant per protocol datatype.
///
/// Owned, typed vectors rather than raw bytes: decoding checks every element once at the edge,
/// and backends receive data they can hand to their runtime without another conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<f16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Runs `$body` with `$v` bound to the vector inside any variant.
macro_rules! with_elements {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

/// Fixed-size elements that have a little-endian byte encoding.
trait LittleEndian: Sized + Copy {
    const SIZE: usize;
    fn write_le(self, out: &mut Vec<u8>);
    fn read_le(bytes: &[u8]) -> Self;
}

macro_rules! little_endian_number {
    ($($t:ty),*) => {$(
        impl LittleEndian for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_le_bytes(raw)
            }
        }
    )*};
}
little_endian_number!(u8, u16, u32, u64, i8, i16, i32, i64, f16, f32, f64);

impl LittleEndian for bool {
    const SIZE: usize = 1;
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

fn write_all_le<T: LittleEndian>(values: &[T], out: &mut Vec<u8>) {
    out.reserve(values.len() * T::SIZE);
    for value in values {
        value.write_le(out);
    }
}

fn read_all_le<T: LittleEndian>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::read_le).collect()
}

/// Why raw tensor bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawDecodeError {
    #[error("expected {expected} bytes for {count} {datatype} elements, found {found}")]
    SizeMismatch {
        datatype: DataType,
        count: usize,
        expected: usize,
        found: usize,
    },
    #[error("BYTES element {index} is truncated: its length prefix says {length} bytes but {available} remain")]
    TruncatedBytesElement {
        index: usize,
        length: usize,
        available: usize,
    },
    #[error("BYTES data holds {found} elements, expected {expected}")]
    BytesCountMismatch { expected: usize, found: usize },
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_elements!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty vector of `datatype` with room for `capacity` elements.
    pub fn with_capacity(datatype: DataType, capacity: usize) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::Uint8 => TensorData::Uint8(Vec::with_capacity(capacity)),
            DataType::Uint16 => TensorData::Uint16(Vec::with_capacity(capacity)),
            DataType::Uint32 => TensorData::Uint32(Vec::with_capacity(capacity)),
            DataType::Uint64 => TensorData::Uint64(Vec::with_capacity(capacity)),
            DataType::Int8 => TensorData::Int8(Vec::with_capacity(capacity)),
            DataType::Int16 => TensorData::Int16(Vec::with_capacity(capacity)),
            DataType::Int32 => TensorData::Int32(Vec::with_capacity(capacity)),
            DataType::Int64 => TensorData::Int64(Vec::with_capacity(capacity)),
            DataType::Fp16 => TensorData::Fp16(Vec::with_capacity(capacity)),
            DataType::Fp32 => TensorData::Fp32(Vec::with_capacity(capacity)),
            DataType::Fp64 => TensorData::Fp64(Vec::with_capacity(capacity)),
            DataType::Bytes => TensorData::Bytes(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other`'s elements; `false` (and nothing appended) when the datatypes differ.
    pub fn append(&mut self, other: TensorData) -> bool {
        match (self, other) {
            (TensorData::Bool(a), TensorData::Bool(b)) => a.extend(b),
            (TensorData::Uint8(a), TensorData::Uint8(b)) => a.extend(b),
            (TensorData::Uint16(a), TensorData::Uint16(b)) => a.extend(b),
            (TensorData::Uint32(a), TensorData::Uint32(b)) => a.extend(b),
            (TensorData::Uint64(a), TensorData::Uint64(b)) => a.extend(b),
            (TensorData::Int8(a), TensorData::Int8(b)) => a.extend(b),
            (TensorData::Int16(a), TensorData::Int16(b)) => a.extend(b),
            (TensorData::Int32(a), TensorData::Int32(b)) => a.extend(b),
            (TensorData::Int64(a), TensorData::Int64(b)) => a.extend(b),
            (TensorData::Fp16(a), TensorData::Fp16(b)) => a.extend(b),
            (TensorData::Fp32(a), TensorData::Fp32(b)) => a.extend(b),
            (TensorData::Fp64(a), TensorData::Fp64(b)) => a.extend(b),
            (TensorData::Bytes(a), TensorData::Bytes(b)) => a.extend(b),
            _ => return false,
        }
        true
    }

    /// A copy of the elements in `range` (which must lie within the data).
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        match self {
            TensorData::Bool(v) => TensorData::Bool(v[range].to_vec()),
            TensorData::Uint8(v) => TensorData::Uint8(v[range].to_vec()),
            TensorData::Uint16(v) => TensorData::Uint16(v[range].to_vec()),
            TensorData::Uint32(v) => TensorData::Uint32(v[range].to_vec()),
            TensorData::Uint64(v) => TensorData::Uint64(v[range].to_vec()),
            TensorData::Int8(v) => TensorData::Int8(v[range].to_vec()),
            TensorData::Int16(v) => TensorData::Int16(v[range].to_vec()),
            TensorData::Int32(v) => TensorData::Int32(v[range].to_vec()),
            TensorData::Int64(v) => TensorData::Int64(v[range].to_vec()),
            TensorData::Fp16(v) => TensorData::Fp16(v[range].to_vec()),
            TensorData::Fp32(v) => TensorData::Fp32(v[range].to_vec()),
            TensorData::Fp64(v) => TensorData::Fp64(v[range].to_vec()),
            TensorData::Bytes(v) => TensorData::Bytes(v[range].to_vec()),
        }
    }

    /// Appends the binary tensor encoding of the Open Inference Protocol's binary extension:
    /// little-endian elements, and BYTES elements as a 4-byte little-endian length then the bytes.
    pub fn write_raw(&self, out: &mut Vec<u8>) {
        match self {
            TensorData::Bool(v) => write_all_le(v, out),
            TensorData::Uint8(v) => out.extend_from_slice(v),
            TensorData::Uint16(v) => write_all_le(v, out),
            TensorData::Uint32(v) => write_all_le(v, out),
            TensorData::Uint64(v) => write_all_le(v, out),
            TensorData::Int8(v) => write_all_le(v, out),
            TensorData::Int16(v) => write_all_le(v, out),
            TensorData::Int32(v) => write_all_le(v, out),
            TensorData::Int64(v) => write_all_le(v, out),
            TensorData::Fp16(v) => write_all_le(v, out),
            TensorData::Fp32(v) => write_all_le(v, out),
            TensorData::Fp64(v) => write_all_le(v, out),
            TensorData::Bytes(v) => {
                for element in v {
                    // An element longer than 4 GiB cannot come from a request body (the body
                    // limit is far below that), so the length always fits the prefix.
                    let length = u32::try_from(element.len()).unwrap_or(u32::MAX);
                    out.extend_from_slice(&length.to_le_bytes());
                    out.extend_from_slice(element);
                }
            }
        }
    }

    /// Decodes `count` elements of `datatype` from their binary tensor encoding; the byte length
    /// must match exactly.
    pub fn read_raw(
        datatype: DataType,
        count: usize,
        bytes: &[u8],
    ) -> Result<TensorData, RawDecodeError> {
        if let Some(size) = datatype.element_size() {
            let expected = count.checked_mul(size);
            if expected != Some(bytes.len()) {
                return Err(RawDecodeError::SizeMismatch {
                    datatype,
                    count,
                    expected: expected.unwrap_or(usize::MAX),
                    found: bytes.len(),
                });
            }
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(read_all_le(bytes)),
            DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
            DataType::Uint16 => TensorData::Uint16(read_all_le(bytes)),
            DataType::Uint32 => TensorData::Uint32(read_all_le(bytes)),
            DataType::Uint64 => TensorData::Uint64(read_all_le(bytes)),
            DataType::Int8 => TensorData::Int8(read_all_le(bytes)),
            DataType::Int16 => TensorData::Int16(read_all_le(bytes)),
            DataType::Int32 => TensorData::Int32(read_all_le(bytes)),
            DataType::Int64 => TensorData::Int64(read_all_le(bytes)),
            DataType::Fp16 => TensorData::Fp16(read_all_le(bytes)),
            DataType::Fp32 => TensorData::Fp32(read_all_le(bytes)),
            DataType::Fp64 => TensorData::Fp64(read_all_le(bytes)),
            DataType::Bytes => TensorData::Bytes(read_bytes_elements(count, bytes)?),
        })
    }
}

fn read_bytes_elements(count: usize, mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, RawDecodeError> {
    // Every element needs at least its 4-byte prefix, which bounds the allocation by the body.
    let mut elements = Vec::with_capacity(count.min(bytes.len() / 4));
    while !bytes.is_empty() {
        let index = elements.len();
        if bytes.len() < 4 {
            return Err(RawDecodeError::TruncatedBytesElement {
                index,
                length: 4,
                available: bytes.len(),
            });
        }
        let (prefix, rest) = bytes.split_at(4);
        let length = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if rest.len() < length {
            return Err(RawDecodeError::TruncatedBytesElement {
                index,
                length,
                available: rest.len(),
            });
        }
        let (element, rest) = rest.split_at(length);
        elements.push(element.to_vec());
        bytes = rest;
    }
    if elements.len() != count {
        return Err(RawDecodeError::BytesCountMismatch {
            expected: count,
            found: elements.len(),
        });
    }
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<TensorData> {
        vec![
            TensorData::Bool(vec![true, false, true]),
            TensorData::Uint8(vec![0, 7, 255]),
            TensorData::Uint16(vec![0, 1, u16::MAX]),
            TensorData::Uint32(vec![0, 1, u32::MAX]),
            TensorData::Uint64(vec![0, 1, u64::MAX]),
            TensorData::Int8(vec![i8::MIN, 0, i8::MAX]),
            TensorData::Int16(vec![i16::MIN, 0, i16::MAX]),
            TensorData::Int32(vec![i32::MIN, 0, i32::MAX]),
            TensorData::Int64(vec![i64::MIN, 0, i64::MAX]),
            TensorData::Fp16(vec![f16::from_f32(-1.5), f16::ZERO, f16::MAX]),
            TensorData::Fp32(vec![-1.5, 0.0, f32::MAX]),
            TensorData::Fp64(vec![-1.5, 0.0, f64::MIN_POSITIVE]),
            TensorData::Bytes(vec![b"".to_vec(), b"abc".to_vec(), vec![0, 255, 10]]),
        ]
    }

    #[test]
    fn every_datatype_round_trips_through_the_binary_encoding() {
        for data in samples() {
            let mut raw = Vec::new();
            data.write_raw(&mut raw);
            let decoded = TensorData::read_raw(data.datatype(), data.len(), &raw).unwrap();
            assert_eq!(decoded, data, "{}", data.datatype());
        }
    }

    #[test]
    fn append_and_slice_keep_element_order() {
        for data in samples() {
            let mut joined = data.clone();
            assert!(joined.append(data.clone()));
            assert_eq!(joined.len(), 6);
            assert_eq!(joined.slice(3..6), data);
            assert_eq!(joined.slice(0..3), data);
        }
        assert!(!TensorData::Int32(vec![1]).append(TensorData::Int64(vec![1])));
    }

    #[test]
    fn binary_encoding_is_little_endian_with_length_prefixed_bytes() {
        let mut raw = Vec::new();
        TensorData::Int32(vec![1, -2]).write_raw(&mut raw);
        assert_eq!(raw, [1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]);
        raw.clear();
        TensorData::Bytes(vec![b"hi".to_vec()]).write_raw(&mut raw);
        assert_eq!(raw, [2, 0, 0, 0, b'h', b'i']);
    }

    #[test]
    fn wrong_byte_lengths_are_refused() {
        let err = TensorData::read_raw(DataType::Fp32, 3, &[0; 8]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected 12 bytes for 3 FP32 elements, found 8"
        );
        assert!(TensorData::read_raw(DataType::Int64, usize::MAX, &[0; 8]).is_err());
    }

    #[test]
    fn malformed_bytes_elements_are_refused() {
        let truncated = TensorData::read_raw(DataType::Bytes, 1, &[5, 0, 0, 0, b'a']).unwrap_err();
        assert!(matches!(
            truncated,
            RawDecodeError::TruncatedBytesElement {
                index: 0,
                length: 5,
                available: 1
            }
        ));
        let short_prefix = TensorData::read_raw(DataType::Bytes, 1, &[1, 0]).unwrap_err();
        assert!(matches!(
            short_prefix,
            RawDecodeError::TruncatedBytesElement { .. }
        ));
        let too_many =
            TensorData::read_raw(DataType::Bytes, 1, &[0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(
            too_many,
            RawDecodeError::BytesCountMismatch {
                expected: 1,
                found: 2
            }
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            count in 0usize..100,
            which in 0usize..13,
        ) {
            let _ = TensorData::read_raw(DataType::ALL[which], count, &bytes);
        }
    }
}
