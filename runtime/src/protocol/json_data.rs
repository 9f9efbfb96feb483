//! Tensor `data` in JSON: decoding flat or nested arrays into typed vectors, and encoding back.
//!
//! Decoding is a serde visitor rather than a detour through `serde_json::Value`: each element is
//! checked against the expected datatype as it is read (so `3.5` for an INT32 input names the
//! element), nothing is allocated per element, and the nesting is measured on the way so KServe
//! V1 requests, which carry no shape, get one.

use std::fmt;

use half::f16;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use weir_models::{DataType, TensorData};

/// A JSON scalar converted to one element type; `None` when the JSON value does not fit it.
pub trait JsonElement: Sized {
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

impl JsonElement for bool {
    fn from_bool(value: bool) -> Option<Self> {
        Some(value)
    }
}

macro_rules! integer_element {
    ($($t:ty),*) => {$(
        impl JsonElement for $t {
            fn from_i64(value: i64) -> Option<Self> {
                <$t>::try_from(value).ok()
            }
            fn from_u64(value: u64) -> Option<Self> {
                <$t>::try_from(value).ok()
            }
        }
    )*};
}
integer_element!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! float_element {
    ($($t:ty => $from_f64:expr),*) => {$(
        impl JsonElement for $t {
            fn from_i64(value: i64) -> Option<Self> {
                Some($from_f64(value as f64))
            }
            fn from_u64(value: u64) -> Option<Self> {
                Some($from_f64(value as f64))
            }
            fn from_f64(value: f64) -> Option<Self> {
                Some($from_f64(value))
            }
            /// JSON has no NaN or infinity; accept the spellings Python's json module writes.
            fn from_str(value: &str) -> Option<Self> {
                match value {
                    "NaN" | "nan" => Some($from_f64(f64::NAN)),
                    "Infinity" | "inf" => Some($from_f64(f64::INFINITY)),
                    "-Infinity" | "-inf" => Some($from_f64(f64::NEG_INFINITY)),
                    _ => None,
                }
            }
        }
    )*};
}
float_element!(f32 => |v: f64| v as f32, f64 => |v: f64| v, f16 => f16::from_f64);

impl JsonElement for Vec<u8> {
    fn from_str(value: &str) -> Option<Self> {
        Some(value.as_bytes().to_vec())
    }
}

/// What decoding found: the elements and the shape their nesting describes.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub data: TensorData,
    pub shape: Vec<usize>,
}

/// Decodes JSON `data` of `datatype`. `limit` caps the element count (the count the request's
/// shape declared), so a body cannot make the server build a larger tensor than it announced.
pub fn decode(json: &str, datatype: DataType, limit: Option<usize>) -> Result<Decoded, String> {
    macro_rules! typed {
        ($t:ty, $variant:ident) => {{
            let (values, shape) = decode_typed::<$t>(json, datatype, limit)?;
            Decoded {
                data: TensorData::$variant(values),
                shape,
            }
        }};
    }
    Ok(match datatype {
        DataType::Bool => typed!(bool, Bool),
        DataType::Uint8 => typed!(u8, Uint8),
        DataType::Uint16 => typed!(u16, Uint16),
        DataType::Uint32 => typed!(u32, Uint32),
        DataType::Uint64 => typed!(u64, Uint64),
        DataType::Int8 => typed!(i8, Int8),
        DataType::Int16 => typed!(i16, Int16),
        DataType::Int32 => typed!(i32, Int32),
        DataType::Int64 => typed!(i64, Int64),
        DataType::Fp16 => typed!(f16, Fp16),
        DataType::Fp32 => typed!(f32, Fp32),
        DataType::Fp64 => typed!(f64, Fp64),
        DataType::Bytes => typed!(Vec<u8>, Bytes),
    })
}

struct State<T> {
    values: Vec<T>,
    datatype: DataType,
    limit: Option<usize>,
    /// Length of the arrays seen at each depth; all arrays at one depth must agree.
    dims: Vec<Option<usize>>,
    /// Depth at which scalars sit; all scalars must sit at one depth.
    leaf_depth: Option<usize>,
}

fn decode_typed<T: JsonElement>(
    json: &str,
    datatype: DataType,
    limit: Option<usize>,
) -> Result<(Vec<T>, Vec<usize>), String> {
    let capacity = reservation::<T>(limit, json.len());
    let mut state = State {
        values: Vec::with_capacity(capacity),
        datatype,
        limit,
        dims: Vec::new(),
        leaf_depth: None,
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    Level {
        state: &mut state,
        depth: 0,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end())
    .map_err(|e| e.to_string())?;
    let depth = state.leaf_depth.unwrap_or(state.dims.len());
    let shape = state.dims[..depth.min(state.dims.len())]
        .iter()
        .map(|d| d.unwrap_or(0))
        .collect();
    Ok((state.values, shape))
}

/// How many elements to reserve room for up front: the count the shape declared, but never
/// more bytes than the JSON itself holds. Each element takes at least two bytes of JSON ("1,"),
/// and an element in memory may be larger than that (a BYTES element is a 24-byte `Vec`
/// header before its contents), so the count is bounded by both: whatever the declared shape
/// says, the reservation is at most the body's size. Elements beyond it (small numbers packed
/// densely) grow the vector as they are actually read.
fn reservation<T>(limit: Option<usize>, json_len: usize) -> usize {
    let per_element = std::mem::size_of::<T>().max(2);
    limit.unwrap_or(0).min(json_len / per_element)
}

struct Level<'s, T> {
    state: &'s mut State<T>,
    depth: usize,
}

impl<T> Level<'_, T> {
    fn leaf<E: de::Error>(self, value: Option<T>, shown: &dyn fmt::Display) -> Result<(), E> {
        let datatype = self.state.datatype;
        let index = self.state.values.len();
        let value = value.ok_or_else(|| {
            E::custom(format!(
                "element {index} is {shown}, which is not a valid {datatype} value"
            ))
        })?;
        match self.state.leaf_depth {
            None => self.state.leaf_depth = Some(self.depth),
            Some(depth) if depth != self.depth => {
                return Err(E::custom(
                    "ragged nested array: elements sit at different depths",
                ))
            }
            Some(_) => {}
        }
        if self.state.limit.is_some_and(|limit| index >= limit) {
            return Err(E::custom(format!(
                "more elements than the {} the shape declares",
                self.state.limit.unwrap_or(0)
            )));
        }
        self.state.values.push(value);
        Ok(())
    }
}

impl<'de, T: JsonElement> DeserializeSeed<'de> for Level<'_, T> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: JsonElement> Visitor<'de> for Level<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} values", self.state.datatype)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.leaf(T::from_bool(value), &value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.leaf(T::from_i64(value), &value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.leaf(T::from_u64(value), &value)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.leaf(T::from_f64(value), &value)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.leaf(T::from_str(value), &format_args!("the string {value:?}"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf(None, &"null")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(format!(
            "found an object where {} values were expected",
            self.state.datatype
        )))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth;
        if self.state.leaf_depth.is_some_and(|leaf| leaf <= depth) {
            return Err(de::Error::custom(
                "ragged nested array: elements sit at different depths",
            ));
        }
        let mut length = 0usize;
        while seq
            .next_element_seed(Level {
                state: &mut *self.state,
                depth: depth + 1,
            })?
            .is_some()
        {
            length += 1;
        }
        if self.state.dims.len() <= depth {
            self.state.dims.resize(depth + 1, None);
        }
        match self.state.dims[depth] {
            None => self.state.dims[depth] = Some(length),
            Some(seen) if seen != length => {
                return Err(de::Error::custom(format!(
                    "ragged nested array: arrays at depth {depth} have lengths {seen} and {length}"
                )))
            }
            Some(_) => {}
        }
        Ok(())
    }
}

/// Serialises tensor elements as one flat JSON array, as Triton answers. FP16 is written as its
/// exact f32 value; BYTES as strings (invalid UTF-8 replaced, since JSON cannot carry it; ask for
/// binary output to get the raw bytes).
pub struct FlatData<'a>(pub &'a TensorData);

impl Serialize for FlatData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn all<S: Serializer, T: Serialize>(
            serializer: S,
            values: &[T],
        ) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(values.len()))?;
            for value in values {
                seq.serialize_element(value)?;
            }
            seq.end()
        }
        match self.0 {
            TensorData::Bool(v) => all(serializer, v),
            TensorData::Uint8(v) => all(serializer, v),
            TensorData::Uint16(v) => all(serializer, v),
            TensorData::Uint32(v) => all(serializer, v),
            TensorData::Uint64(v) => all(serializer, v),
            TensorData::Int8(v) => all(serializer, v),
            TensorData::Int16(v) => all(serializer, v),
            TensorData::Int32(v) => all(serializer, v),
            TensorData::Int64(v) => all(serializer, v),
            TensorData::Fp16(v) => {
                let mut seq = serializer.serialize_seq(Some(v.len()))?;
                for value in v {
                    seq.serialize_element(&value.to_f32())?;
                }
                seq.end()
            }
            TensorData::Fp32(v) => all(serializer, v),
            TensorData::Fp64(v) => all(serializer, v),
            TensorData::Bytes(v) => {
                let mut seq = serializer.serialize_seq(Some(v.len()))?;
                for value in v {
                    seq.serialize_element(&String::from_utf8_lossy(value))?;
                }
                seq.end()
            }
        }
    }
}

/// One element as a JSON value (used where rows are nested, as in KServe V1 answers); null
/// past the end, so a shape that promises more than the data holds cannot panic an answer.
pub fn element_json(data: &TensorData, index: usize) -> serde_json::Value {
    use serde_json::Value;
    fn at<T>(values: &[T], index: usize, json: impl Fn(&T) -> Value) -> Value {
        values.get(index).map_or(Value::Null, json)
    }
    match data {
        TensorData::Bool(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Uint8(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Uint16(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Uint32(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Uint64(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Int8(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Int16(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Int32(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Int64(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Fp16(v) => at(v, index, |x| shortest_f32(x.to_f32())),
        TensorData::Fp32(v) => at(v, index, |&x| shortest_f32(x)),
        TensorData::Fp64(v) => at(v, index, |&x| Value::from(x)),
        TensorData::Bytes(v) => at(v, index, |x| {
            Value::from(String::from_utf8_lossy(x).into_owned())
        }),
    }
}

/// An f32 as the JSON number with the fewest digits that reads back as the same f32
/// (`0.87596554`, not the f64 widening `0.8759654760360718`); non-finite values become null.
fn shortest_f32(value: f32) -> serde_json::Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// The elements `start..start + product(shape)` nested by `shape`.
pub fn nested_json(data: &TensorData, shape: &[usize], start: usize) -> serde_json::Value {
    match shape.split_first() {
        None => element_json(data, start),
        Some((&outer, inner)) => {
            let stride: usize = inner.iter().product();
            serde_json::Value::Array(
                (0..outer)
                    .map(|i| nested_json(data, inner, start + i * stride))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests;
