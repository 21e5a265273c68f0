//! The GGUF container: a bounded, validated reader ([`Gguf`]) over the bytes of
//! a whole file, and a small writer ([`GgufWriter`]) for test models and fuzz
//! seeds.
//!
//! Versions 2 and 3, little-endian; every count and length is a u64:
//!
//! ```text
//!  "GGUF" | version: u32 | tensor_count: u64 | kv_count: u64
//!  kv_count     × [ key: string | value_type: u32 | value ]
//!  tensor_count × [ name: string | n_dims: u32 | dims: n_dims × u64 | ggml_type: u32 | offset: u64 ]
//!  zero padding up to a multiple of `general.alignment` (default 32)   ◄── data section starts here
//!  tensor data, each tensor at data start + offset, offsets multiples of the alignment
//!
//!  string = len: u64 | len bytes of UTF-8        array = elem_type: u32 | len: u64 | len values
//! ```
//!
//! `dims[0]` is the innermost dimension: a matrix `[rows, k]` is stored with
//! `dims = [k, rows]`, each row `k` values (or `k / 32` blocks, see [`super::quant`]).
//!
//! Every byte is untrusted. Each count and length is checked against a named
//! limit and against the bytes left before anything is allocated for it; every
//! tensor must have a known type and a shape whose size fits, and its data must
//! lie inside the file, aligned, overlapping no other tensor. A [`Gguf`] that
//! parsed can hand out tensor views without further checks.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use super::quant::GgmlType;
use super::quant::{self, QuantError};

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// File name of the model the host runs, inside the model directory.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Tensor data alignment when `general.alignment` is absent (the GGUF spec's default).
pub const DEFAULT_ALIGNMENT: usize = 32;

/// Largest `general.alignment` accepted: the largest page size in common use
/// (64 KiB); alignment exists so the data can be memory-mapped.
pub const MAX_ALIGNMENT: usize = 64 << 10;

/// Most tensors in one file: large models hold a few thousand.
pub const MAX_TENSORS: u64 = 1 << 16;

/// Most metadata keys in one file: real files carry under a hundred.
pub const MAX_METADATA_KEYS: u64 = 1 << 12;

/// Longest metadata key, in bytes: the GGUF spec's own limit.
pub const MAX_KEY_BYTES: u64 = (1 << 16) - 1;

/// Longest tensor name, in bytes: ggml's own limit is 64; room for other writers.
pub const MAX_TENSOR_NAME_BYTES: u64 = 256;

/// Longest string value, in bytes: chat templates are kilobytes; this leaves
/// room for a whole tokenizer.json embedded as one string.
pub const MAX_STRING_BYTES: u64 = 16 << 20;

/// Most values in one array: vocabularies and merge lists run to a few hundred thousand.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;

/// Deepest nesting of arrays in arrays: no known writer nests deeper, and the
/// bound keeps the reader's recursion shallow.
pub const MAX_ARRAY_DEPTH: usize = 3;

/// Most dimensions of one tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Fewest bytes one metadata entry takes: empty key length, value type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;

/// Fewest bytes one tensor info takes: empty name length, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

// The header's claims are checked against the bytes left as a product of
// these; it must not overflow.
const _: () = assert!(MAX_TENSORS * MIN_TENSOR_INFO_BYTES + MAX_METADATA_KEYS * MIN_KV_BYTES < u64::MAX / 2);
const _: () = assert!(MAX_ARRAY_LEN * 12 < u64::MAX / 2, "array length × element size must not overflow");
const _: () = assert!(MAX_ALIGNMENT.is_power_of_two() && DEFAULT_ALIGNMENT.is_power_of_two());

/// Why a GGUF file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The model file is not there.
    #[error("model file {} not found; run tools/fetch-model.sh to fetch it (GONKA_MODELS sets its directory)", path.display())]
    Missing {
        /// Path tried.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// Path tried.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file: expected magic \"GGUF\", found {found:02x?}")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// The version field reads as a known version only when byte-swapped.
    #[error("big-endian GGUF (version {swapped}) is not supported; expected a little-endian file")]
    BigEndian {
        /// The version after swapping bytes.
        swapped: u32,
    },
    /// A version this reader does not know.
    #[error("GGUF version {version} is not supported; expected 2 or 3")]
    UnsupportedVersion {
        /// Version found.
        version: u32,
    },
    /// The file ends before a field it claims.
    #[error("{at} at byte {offset} needs {needed} bytes, but only {left} are left")]
    Truncated {
        /// Which field.
        at: String,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the file.
        left: usize,
    },
    /// The header claims more tensors or keys than allowed.
    #[error("file claims {count} {what}, above the limit {max}")]
    TooMany {
        /// "tensors" or "metadata keys".
        what: &'static str,
        /// Count claimed.
        count: u64,
        /// Limit.
        max: u64,
    },
    /// A string claims a length above its limit.
    #[error("{at} claims a string of {len} bytes, above the limit {max}")]
    StringTooLong {
        /// Which field.
        at: String,
        /// Length claimed.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// An array claims a length above [`MAX_ARRAY_LEN`].
    #[error("{at} claims an array of {len} values, above the limit {max}")]
    ArrayTooLong {
        /// Which field.
        at: String,
        /// Length claimed.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// Arrays nest deeper than [`MAX_ARRAY_DEPTH`].
    #[error("{at} nests arrays more than {max} deep")]
    NestingTooDeep {
        /// Which field.
        at: String,
        /// Limit.
        max: usize,
    },
    /// A metadata value type id outside 0..=12.
    #[error("{at} has unknown value type {type_id}; expected 0..=12")]
    UnknownValueType {
        /// Which field.
        at: String,
        /// Type id found.
        type_id: u32,
    },
    /// A string that is not UTF-8.
    #[error("{at} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which field.
        at: String,
    },
    /// A bool byte other than 0 or 1.
    #[error("{at} holds bool byte {byte:#04x}; expected 0 or 1")]
    InvalidBool {
        /// Which field.
        at: String,
        /// Byte found.
        byte: u8,
    },
    /// The same metadata key twice.
    #[error("metadata key {key:?} appears twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// The same tensor name twice.
    #[error("tensor {name:?} appears twice")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// `general.alignment` is zero, not a power of two, or above [`MAX_ALIGNMENT`].
    #[error("general.alignment {found} is unusable; expected a power of two up to {max}")]
    BadAlignment {
        /// Alignment found.
        found: u64,
        /// Limit.
        max: usize,
    },
    /// A tensor with no dimensions or more than [`MAX_DIMS`].
    #[error("tensor {name:?} has {n_dims} dimensions; expected 1 to {max}")]
    BadDims {
        /// Tensor name.
        name: String,
        /// Dimensions claimed.
        n_dims: u32,
        /// Limit.
        max: u32,
    },
    /// A dimension of length zero.
    #[error("tensor {name:?} has a dimension of length zero: {dims:?}")]
    ZeroDim {
        /// Tensor name.
        name: String,
        /// Its dims.
        dims: Vec<u64>,
    },
    /// The element count or byte size does not fit in 64 bits.
    #[error("tensor {name:?} with dims {dims:?} has more elements or bytes than can be addressed")]
    ElementOverflow {
        /// Tensor name.
        name: String,
        /// Its dims.
        dims: Vec<u64>,
    },
    /// A ggml type id this reader cannot size.
    #[error("tensor {name:?} has unknown ggml type id {type_id}")]
    UnknownGgmlType {
        /// Tensor name.
        name: String,
        /// Type id found.
        type_id: u32,
    },
    /// A row is not whole blocks of its type.
    #[error("tensor {name:?}: {source}")]
    Shape {
        /// Tensor name.
        name: String,
        /// Why the row cannot be sized.
        #[source]
        source: QuantError,
    },
    /// A data offset that is not a multiple of the alignment.
    #[error("tensor {name:?} at data offset {offset} is not aligned to {alignment} bytes")]
    Misaligned {
        /// Tensor name.
        name: String,
        /// Offset claimed.
        offset: u64,
        /// Alignment required.
        alignment: usize,
    },
    /// Tensor data that runs past the end of the file.
    #[error(
        "tensor {name:?} needs {bytes} bytes at data offset {offset}, past the {data_bytes}-byte data section"
    )]
    OutOfBounds {
        /// Tensor name.
        name: String,
        /// Offset claimed.
        offset: u64,
        /// Bytes its shape takes.
        bytes: usize,
        /// Bytes in the data section.
        data_bytes: usize,
    },
    /// Two tensors sharing bytes.
    #[error("tensors {first:?} and {second:?} overlap in the data section")]
    Overlap {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// A metadata key the caller needs is absent.
    #[error("metadata key {key:?} is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value of another type than the caller needs.
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// Type needed.
        expected: &'static str,
        /// Type found.
        found: String,
    },
    /// An integer that does not fit the type the caller needs.
    #[error("metadata key {key:?}: value {value} does not fit {expected}")]
    OutOfRange {
        /// The key.
        key: String,
        /// Value found.
        value: i128,
        /// Type needed.
        expected: &'static str,
    },
    /// A tensor the caller needs is absent.
    #[error("no tensor named {name:?}")]
    MissingTensor {
        /// The name.
        name: String,
    },
}

type Result<T, E = GgufError> = std::result::Result<T, E>;

/// GGUF metadata value type ids.
mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;

    /// Fewest bytes one value of type `id` takes, or `None` for an unknown id.
    pub fn min_bytes(id: u32) -> Option<u64> {
        Some(match id {
            U8 | I8 | BOOL => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | STRING => 8,
            ARRAY => 4 + 8,
            _ => return None,
        })
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: all elements of one type, stored unboxed so that memory
/// stays within a small factor of the bytes read.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Arrays of arrays; each inner array has its own element type.
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

macro_rules! value_conversions {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Self {
                Value::$variant(x)
            }
        }
        impl From<Vec<$t>> for Array {
            fn from(x: Vec<$t>) -> Self {
                Array::$variant(x)
            }
        }
    )*};
}

value_conversions!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64,
);

impl From<&str> for Value {
    fn from(x: &str) -> Self {
        Value::String(x.to_owned())
    }
}

impl From<Array> for Value {
    fn from(x: Array) -> Self {
        Value::Array(x)
    }
}

impl From<Vec<Array>> for Array {
    fn from(x: Vec<Array>) -> Self {
        Array::Array(x)
    }
}

impl From<Vec<&str>> for Array {
    fn from(x: Vec<&str>) -> Self {
        Array::String(x.into_iter().map(str::to_owned).collect())
    }
}

impl Value {
    /// The value as an integer, if it is one (bools are not).
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(x) => x.into(),
            Value::I8(x) => x.into(),
            Value::U16(x) => x.into(),
            Value::I16(x) => x.into(),
            Value::U32(x) => x.into(),
            Value::I32(x) => x.into(),
            Value::U64(x) => x.into(),
            Value::I64(x) => x.into(),
            _ => return None,
        })
    }

    /// The type's name, for error messages (`"u32"`, `"array of string"`).
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(a) => format!("array of {}", a.elem_name()),
            _ => scalar_name(self.type_id()).to_owned(),
        }
    }

    fn type_id(&self) -> u32 {
        use value_type as t;
        match self {
            Value::U8(_) => t::U8,
            Value::I8(_) => t::I8,
            Value::U16(_) => t::U16,
            Value::I16(_) => t::I16,
            Value::U32(_) => t::U32,
            Value::I32(_) => t::I32,
            Value::F32(_) => t::F32,
            Value::Bool(_) => t::BOOL,
            Value::String(_) => t::STRING,
            Value::Array(_) => t::ARRAY,
            Value::U64(_) => t::U64,
            Value::I64(_) => t::I64,
            Value::F64(_) => t::F64,
        }
    }
}

impl Array {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type's name, for error messages.
    pub fn elem_name(&self) -> &'static str {
        scalar_name(self.elem_type_id())
    }

    fn elem_type_id(&self) -> u32 {
        use value_type as t;
        match self {
            Array::U8(_) => t::U8,
            Array::I8(_) => t::I8,
            Array::U16(_) => t::U16,
            Array::I16(_) => t::I16,
            Array::U32(_) => t::U32,
            Array::I32(_) => t::I32,
            Array::F32(_) => t::F32,
            Array::Bool(_) => t::BOOL,
            Array::String(_) => t::STRING,
            Array::Array(_) => t::ARRAY,
            Array::U64(_) => t::U64,
            Array::I64(_) => t::I64,
            Array::F64(_) => t::F64,
        }
    }
}

fn scalar_name(type_id: u32) -> &'static str {
    const NAMES: [&str; 13] =
        ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"];
    NAMES.get(type_id as usize).copied().unwrap_or("unknown")
}

/// Where one tensor lives and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Unique name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` is the row length (innermost).
    pub dims: Vec<usize>,
    /// Element type.
    pub dtype: GgmlType,
    /// Byte offset of the data from the start of the data section.
    pub offset: usize,
    n_elements: usize,
    n_bytes: usize,
}

impl TensorInfo {
    /// Values in one row: `dims[0]`.
    pub fn row_len(&self) -> usize {
        self.dims[0]
    }

    /// Rows: the product of `dims[1..]`.
    pub fn n_rows(&self) -> usize {
        self.n_elements / self.dims[0]
    }

    /// Values in the whole tensor.
    pub fn n_elements(&self) -> usize {
        self.n_elements
    }

    /// Bytes of the whole tensor's data.
    pub fn n_bytes(&self) -> usize {
        self.n_bytes
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.n_bytes / self.n_rows()
    }
}

/// A tensor's description and the exact bytes of its data.
#[derive(Clone, Copy)]
pub struct TensorView<'a> {
    /// Name, shape, type and offset.
    pub info: &'a TensorInfo,
    /// The data: `info.n_bytes()` bytes, borrowed from the file.
    pub data: &'a [u8],
}

impl fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorView").field("info", self.info).field("data_bytes", &self.data.len()).finish()
    }
}

impl<'a> TensorView<'a> {
    /// The bytes of row `r`, or `None` past the last row.
    pub fn row(&self, r: usize) -> Option<&'a [u8]> {
        let row_bytes = self.info.row_bytes();
        self.data.get(r.checked_mul(row_bytes)?..)?.get(..row_bytes)
    }

    /// The whole tensor as f32, rows back to back.
    pub fn dequantize(&self) -> Result<Vec<f32>, QuantError> {
        quant::dequantize(self.info.dtype, self.data, self.info.n_elements)
    }
}

/// A parsed, validated GGUF file that owns its bytes.
pub struct Gguf {
    bytes: Vec<u8>,
    version: u32,
    alignment: usize,
    /// Start of the data section in `bytes`.
    data_offset: usize,
    /// Entries in file order.
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    /// Tensors in file order.
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl fmt::Debug for Gguf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("bytes", &self.bytes.len())
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// The model file's path: `$GONKA_MODELS` (default `~/.cache/gonka/models`)
/// joined with [`DEFAULT_MODEL_FILE`].
pub fn default_model_path() -> PathBuf {
    let dir = match std::env::var_os("GONKA_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::home_dir().unwrap_or_default().join(".cache/gonka/models"),
    };
    dir.join(DEFAULT_MODEL_FILE)
}

impl Gguf {
    /// Reads and parses the file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => GgufError::Missing { path: path.to_owned() },
            _ => GgufError::Io { path: path.to_owned(), source },
        })?;
        Self::parse(bytes)
    }

    /// Parses and validates a whole file (see the module documentation).
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        let mut r = Reader { bytes: &bytes, pos: 0 };
        let (version, n_tensors, n_keys) = read_header(&mut r)?;
        let (metadata, key_index) = read_metadata(&mut r, n_keys)?;
        let alignment = match key_index.get("general.alignment") {
            Some(&i) => check_alignment(&metadata[i].1)?,
            None => DEFAULT_ALIGNMENT,
        };
        let (tensors, tensor_index) = read_tensor_infos(&mut r, n_tensors)?;
        let data_offset = r.pos.next_multiple_of(alignment);
        if !tensors.is_empty() {
            r.take((data_offset - r.pos) as u64, At::Header("padding before the tensor data"))?;
        }
        check_layout(&tensors, alignment, bytes.len().saturating_sub(data_offset))?;
        Ok(Self { bytes, version, alignment, data_offset, metadata, key_index, tensors, tensor_index })
    }

    /// GGUF version: 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data, in bytes.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Start of the data section in [`Self::as_bytes`].
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// An integer of any type whose value fits a u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        int_value(key, self.require(key)?, "u32")
    }

    /// An integer of any type whose value fits a u64.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        int_value(key, self.require(key)?, "u64")
    }

    /// An f32, or an f64 rounded to f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match self.require(key)? {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            other => Err(wrong_type(key, "f32", other)),
        }
    }

    /// A bool.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            Value::Bool(x) => Ok(*x),
            other => Err(wrong_type(key, "bool", other)),
        }
    }

    /// A string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            other => Err(wrong_type(key, "string", other)),
        }
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn get_str_array(&self, key: &str) -> Result<&[String]> {
        match self.require(key)? {
            Value::Array(Array::String(v)) => Ok(v),
            other => Err(wrong_type(key, "array of string", other)),
        }
    }

    /// An array of integers of any type whose values fit i32 (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        let array = match self.require(key)? {
            Value::Array(a) => a,
            other => return Err(wrong_type(key, "array of integers", other)),
        };
        match array {
            Array::I32(v) => Ok(v.clone()),
            Array::U8(v) => narrow(key, v),
            Array::I8(v) => narrow(key, v),
            Array::U16(v) => narrow(key, v),
            Array::I16(v) => narrow(key, v),
            Array::U32(v) => narrow(key, v),
            Array::U64(v) => narrow(key, v),
            Array::I64(v) => narrow(key, v),
            _ => Err(wrong_type(key, "array of integers", &Value::Array(array.clone()))),
        }
    }

    /// An array of f32, or of f64 rounded to f32 (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        match self.require(key)? {
            Value::Array(Array::F32(v)) => Ok(v.clone()),
            Value::Array(Array::F64(v)) => Ok(v.iter().map(|&x| x as f32).collect()),
            other => Err(wrong_type(key, "array of f32", other)),
        }
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The description of tensor `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Tensor `name` with its data.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info =
            self.tensor_info(name).ok_or_else(|| GgufError::MissingTensor { name: name.to_owned() })?;
        let start = self.data_offset + info.offset;
        // Parsing checked that every tensor lies inside the data section.
        Ok(TensorView { info, data: &self.bytes[start..start + info.n_bytes] })
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { key: key.to_owned() })
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> GgufError {
    GgufError::WrongType { key: key.to_owned(), expected, found: found.type_name() }
}

/// `value` as an integer of type `T`, named `expected` in errors.
fn int_value<T: TryFrom<i128>>(key: &str, value: &Value, expected: &'static str) -> Result<T> {
    let x = value.as_i128().ok_or_else(|| wrong_type(key, expected, value))?;
    T::try_from(x).map_err(|_| GgufError::OutOfRange { key: key.to_owned(), value: x, expected })
}

fn narrow<S: Copy + Into<i128>>(key: &str, values: &[S]) -> Result<Vec<i32>> {
    let fit = |&x: &S| {
        let x: i128 = x.into();
        i32::try_from(x).map_err(|_| GgufError::OutOfRange { key: key.to_owned(), value: x, expected: "i32" })
    };
    values.iter().map(fit).collect()
}

fn check_alignment(value: &Value) -> Result<usize> {
    let found: u64 = int_value("general.alignment", value, "u64")?;
    match usize::try_from(found) {
        Ok(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => Ok(a),
        _ => Err(GgufError::BadAlignment { found, max: MAX_ALIGNMENT }),
    }
}

/// Which field is being read, for error messages.
#[derive(Clone, Copy, Debug)]
enum At<'k> {
    Header(&'static str),
    KeyName(u64),
    Value(&'k str),
    TensorName(u64),
    Tensor(&'k str),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Header(what) => write!(f, "{what}"),
            At::KeyName(i) => write!(f, "key of metadata entry {i}"),
            At::Value(key) => write!(f, "value of metadata key {key:?}"),
            At::TensorName(i) => write!(f, "name of tensor {i}"),
            At::Tensor(name) => write!(f, "info of tensor {name:?}"),
        }
    }
}

/// A cursor over untrusted bytes: every read is checked against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Fails unless `needed` more bytes are there.
    fn ensure(&self, needed: u64, at: At<'_>) -> Result<()> {
        if needed > self.left() as u64 {
            return Err(GgufError::Truncated {
                at: at.to_string(),
                offset: self.pos,
                needed,
                left: self.left(),
            });
        }
        Ok(())
    }

    fn take(&mut self, n: u64, at: At<'_>) -> Result<&'a [u8]> {
        self.ensure(n, at)?;
        // `ensure` bounded `n` by the bytes left, so it fits a usize.
        let bytes = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += bytes.len();
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self, at: At<'_>) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64, at)?);
        Ok(out)
    }

    fn u32(&mut self, at: At<'_>) -> Result<u32> {
        self.fixed(at).map(u32::from_le_bytes)
    }

    fn u64(&mut self, at: At<'_>) -> Result<u64> {
        self.fixed(at).map(u64::from_le_bytes)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    fn string(&mut self, max: u64, at: At<'_>) -> Result<String> {
        let len = self.u64(at)?;
        if len > max {
            return Err(GgufError::StringTooLong { at: at.to_string(), len, max });
        }
        let bytes = self.take(len, at)?;
        let s = std::str::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 { at: at.to_string() })?;
        Ok(s.to_owned())
    }

    /// `len` little-endian values of `N` bytes each.
    fn le_vec<const N: usize, T>(
        &mut self,
        len: usize,
        decode: fn([u8; N]) -> T,
        at: At<'_>,
    ) -> Result<Vec<T>> {
        let bytes = self.take((len * N) as u64, at)?;
        Ok(bytes.as_chunks::<N>().0.iter().map(|c| decode(*c)).collect())
    }
}

/// Magic, version and the two counts, each count checked against its limit
/// and against the least the rest of the file must hold for it.
fn read_header(r: &mut Reader<'_>) -> Result<(u32, u64, u64)> {
    let found: [u8; 4] = r.fixed(At::Header("magic"))?;
    if found != MAGIC {
        return Err(GgufError::BadMagic { found });
    }
    let version = r.u32(At::Header("version"))?;
    if !matches!(version, 2 | 3) {
        let swapped = version.swap_bytes();
        return Err(match swapped {
            1..=3 => GgufError::BigEndian { swapped },
            _ => GgufError::UnsupportedVersion { version },
        });
    }
    let n_tensors = r.u64(At::Header("tensor count"))?;
    if n_tensors > MAX_TENSORS {
        return Err(GgufError::TooMany { what: "tensors", count: n_tensors, max: MAX_TENSORS });
    }
    let n_keys = r.u64(At::Header("metadata key count"))?;
    if n_keys > MAX_METADATA_KEYS {
        return Err(GgufError::TooMany { what: "metadata keys", count: n_keys, max: MAX_METADATA_KEYS });
    }
    let least = n_keys * MIN_KV_BYTES + n_tensors * MIN_TENSOR_INFO_BYTES;
    r.ensure(least, At::Header("metadata and tensor infos the header claims"))?;
    Ok((version, n_tensors, n_keys))
}

type Metadata = (Vec<(String, Value)>, HashMap<String, usize>);

fn read_metadata(r: &mut Reader<'_>, n_keys: u64) -> Result<Metadata> {
    // `read_header` checked `n_keys` against the bytes left, so this is bounded by the file.
    let mut entries = Vec::with_capacity(n_keys as usize);
    let mut index = HashMap::with_capacity(n_keys as usize);
    for i in 0..n_keys {
        let key = r.string(MAX_KEY_BYTES, At::KeyName(i))?;
        if index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        let at = At::Value(&key);
        let type_id = r.u32(at)?;
        let value = read_value(r, type_id, at)?;
        index.insert(key.clone(), entries.len());
        entries.push((key, value));
    }
    Ok((entries, index))
}

fn read_value(r: &mut Reader<'_>, type_id: u32, at: At<'_>) -> Result<Value> {
    use value_type as t;
    Ok(match type_id {
        t::U8 => Value::U8(r.fixed::<1>(at)?[0]),
        t::I8 => Value::I8(i8::from_le_bytes(r.fixed(at)?)),
        t::U16 => Value::U16(u16::from_le_bytes(r.fixed(at)?)),
        t::I16 => Value::I16(i16::from_le_bytes(r.fixed(at)?)),
        t::U32 => Value::U32(r.u32(at)?),
        t::I32 => Value::I32(i32::from_le_bytes(r.fixed(at)?)),
        t::F32 => Value::F32(f32::from_le_bytes(r.fixed(at)?)),
        t::BOOL => Value::Bool(to_bool(r.fixed::<1>(at)?[0], at)?),
        t::STRING => Value::String(r.string(MAX_STRING_BYTES, at)?),
        t::ARRAY => Value::Array(read_array(r, 1, at)?),
        t::U64 => Value::U64(r.u64(at)?),
        t::I64 => Value::I64(i64::from_le_bytes(r.fixed(at)?)),
        t::F64 => Value::F64(f64::from_le_bytes(r.fixed(at)?)),
        _ => return Err(GgufError::UnknownValueType { at: at.to_string(), type_id }),
    })
}

/// An array at nesting `depth` (1 for a metadata value that is an array).
fn read_array(r: &mut Reader<'_>, depth: usize, at: At<'_>) -> Result<Array> {
    use value_type as t;
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep { at: at.to_string(), max: MAX_ARRAY_DEPTH });
    }
    let type_id = r.u32(at)?;
    let len = r.u64(at)?;
    if len > MAX_ARRAY_LEN {
        return Err(GgufError::ArrayTooLong { at: at.to_string(), len, max: MAX_ARRAY_LEN });
    }
    let min_bytes =
        t::min_bytes(type_id).ok_or_else(|| GgufError::UnknownValueType { at: at.to_string(), type_id })?;
    // Every element takes at least `min_bytes`, so this bounds what is allocated below by the file.
    r.ensure(len * min_bytes, at)?;
    let len = len as usize;
    Ok(match type_id {
        t::U8 => Array::U8(r.take(len as u64, at)?.to_vec()),
        t::I8 => Array::I8(r.le_vec(len, i8::from_le_bytes, at)?),
        t::U16 => Array::U16(r.le_vec(len, u16::from_le_bytes, at)?),
        t::I16 => Array::I16(r.le_vec(len, i16::from_le_bytes, at)?),
        t::U32 => Array::U32(r.le_vec(len, u32::from_le_bytes, at)?),
        t::I32 => Array::I32(r.le_vec(len, i32::from_le_bytes, at)?),
        t::F32 => Array::F32(r.le_vec(len, f32::from_le_bytes, at)?),
        t::BOOL => {
            Array::Bool(r.take(len as u64, at)?.iter().map(|&b| to_bool(b, at)).collect::<Result<_>>()?)
        }
        t::STRING => Array::String((0..len).map(|_| r.string(MAX_STRING_BYTES, at)).collect::<Result<_>>()?),
        t::ARRAY => Array::Array((0..len).map(|_| read_array(r, depth + 1, at)).collect::<Result<_>>()?),
        t::U64 => Array::U64(r.le_vec(len, u64::from_le_bytes, at)?),
        t::I64 => Array::I64(r.le_vec(len, i64::from_le_bytes, at)?),
        t::F64 => Array::F64(r.le_vec(len, f64::from_le_bytes, at)?),
        _ => return Err(GgufError::UnknownValueType { at: at.to_string(), type_id }),
    })
}

fn to_bool(byte: u8, at: At<'_>) -> Result<bool> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(GgufError::InvalidBool { at: at.to_string(), byte }),
    }
}

type Tensors = (Vec<TensorInfo>, HashMap<String, usize>);

fn read_tensor_infos(r: &mut Reader<'_>, n_tensors: u64) -> Result<Tensors> {
    // `read_header` checked `n_tensors` against the bytes left, so this is bounded by the file.
    let mut infos = Vec::with_capacity(n_tensors as usize);
    let mut index = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let info = read_tensor_info(r, i)?;
        if index.insert(info.name.clone(), infos.len()).is_some() {
            return Err(GgufError::DuplicateTensor { name: info.name });
        }
        infos.push(info);
    }
    Ok((infos, index))
}

/// One tensor info, its shape checked: known type, non-empty, whole blocks
/// per row, element count and byte size within 64 bits.
fn read_tensor_info(r: &mut Reader<'_>, i: u64) -> Result<TensorInfo> {
    let name = r.string(MAX_TENSOR_NAME_BYTES, At::TensorName(i))?;
    let at = At::Tensor(&name);
    let n_dims = r.u32(at)?;
    if !(1..=MAX_DIMS).contains(&n_dims) {
        return Err(GgufError::BadDims { name, n_dims, max: MAX_DIMS });
    }
    let dims = (0..n_dims).map(|_| r.u64(at)).collect::<Result<Vec<u64>>>()?;
    let type_id = r.u32(at)?;
    let offset = r.u64(at)?;
    if dims.contains(&0) {
        return Err(GgufError::ZeroDim { name, dims });
    }
    let Some(dtype) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownGgmlType { name, type_id });
    };
    let n_elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    let sizes = n_elements.and_then(|n| usize::try_from(n).ok()).zip(usize::try_from(dims[0]).ok());
    let Some((n_elements, row_len)) = sizes else {
        return Err(GgufError::ElementOverflow { name, dims });
    };
    let row_bytes = match quant::row_bytes(dtype, row_len) {
        Ok(b) => b,
        Err(QuantError::TooLarge { .. }) => return Err(GgufError::ElementOverflow { name, dims }),
        Err(source) => return Err(GgufError::Shape { name, source }),
    };
    let Some(n_bytes) = row_bytes.checked_mul(n_elements / row_len) else {
        return Err(GgufError::ElementOverflow { name, dims });
    };
    // An offset beyond `usize` cannot be inside the file; `check_layout` reports it.
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let dims = dims.iter().map(|&d| d as usize).collect();
    Ok(TensorInfo { name, dims, dtype, offset, n_elements, n_bytes })
}

/// Each tensor aligned and inside the data section, no two sharing a byte.
fn check_layout(tensors: &[TensorInfo], alignment: usize, data_bytes: usize) -> Result<()> {
    for t in tensors {
        if !t.offset.is_multiple_of(alignment) {
            return Err(GgufError::Misaligned { name: t.name.clone(), offset: t.offset as u64, alignment });
        }
        if t.offset.checked_add(t.n_bytes).is_none_or(|end| end > data_bytes) {
            let (name, offset) = (t.name.clone(), t.offset as u64);
            return Err(GgufError::OutOfBounds { name, offset, bytes: t.n_bytes, data_bytes });
        }
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        // Both ends are inside the data section, so the sum cannot overflow.
        if pair[0].offset + pair[0].n_bytes > pair[1].offset {
            return Err(GgufError::Overlap { first: pair[0].name.clone(), second: pair[1].name.clone() });
        }
    }
    Ok(())
}

/// Builds a GGUF v3 file: metadata in insertion order, then tensors, each
/// aligned to `general.alignment` (when set) or [`DEFAULT_ALIGNMENT`].
/// Meant for tests, fuzz seeds and test models; misuse panics.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(TensorInfo, Vec<u8>)>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`, replacing any earlier value.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key.to_owned(), value)),
        }
        self
    }

    /// Adds a tensor with `dims` in GGUF order (row length first).
    ///
    /// # Panics
    /// On a duplicate name, 0 or more than [`MAX_DIMS`] dims, an empty
    /// dimension, or `data` not exactly the size of the shape.
    pub fn add_tensor(&mut self, name: &str, dims: &[usize], dtype: GgmlType, data: Vec<u8>) -> &mut Self {
        assert!(self.tensors.iter().all(|(t, _)| t.name != name), "tensor {name:?} added twice");
        assert!((1..=MAX_DIMS as usize).contains(&dims.len()), "tensor {name:?} has {} dims", dims.len());
        assert!(!dims.contains(&0), "tensor {name:?} has an empty dimension: {dims:?}");
        let n_elements: usize = dims.iter().product();
        let row = quant::row_bytes(dtype, dims[0]).unwrap_or_else(|e| panic!("tensor {name:?}: {e}"));
        let n_bytes = row * (n_elements / dims[0]);
        assert_eq!(data.len(), n_bytes, "tensor {name:?} {dims:?} {dtype} data size");
        let info =
            TensorInfo { name: name.to_owned(), dims: dims.to_vec(), dtype, offset: 0, n_elements, n_bytes };
        self.tensors.push((info, data));
        self
    }

    /// The file's bytes. No padding follows the last tensor.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, v)) => check_alignment(v).unwrap_or_else(|e| panic!("{e}")),
            None => DEFAULT_ALIGNMENT,
        };
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_string(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            write_value(&mut out, value);
        }
        let mut end = 0;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for (t, _) in &self.tensors {
            let offset = usize::next_multiple_of(end, alignment);
            offsets.push(offset);
            end = offset + t.n_bytes;
            write_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            t.dims.iter().for_each(|&d| out.extend_from_slice(&(d as u64).to_le_bytes()));
            out.extend_from_slice(&t.dtype.id().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
        }
        let data_offset = out.len().next_multiple_of(alignment);
        for ((_, data), offset) in self.tensors.iter().zip(offsets) {
            out.resize(data_offset + offset, 0);
            out.extend_from_slice(data);
        }
        out
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => write_string(out, s),
        Value::Array(a) => write_array(out, a),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn write_array(out: &mut Vec<u8>, array: &Array) {
    fn le<const N: usize, T: Copy>(out: &mut Vec<u8>, values: &[T], encode: fn(T) -> [u8; N]) {
        values.iter().for_each(|&v| out.extend_from_slice(&encode(v)));
    }
    out.extend_from_slice(&array.elem_type_id().to_le_bytes());
    out.extend_from_slice(&(array.len() as u64).to_le_bytes());
    match array {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => le(out, v, i8::to_le_bytes),
        Array::U16(v) => le(out, v, u16::to_le_bytes),
        Array::I16(v) => le(out, v, i16::to_le_bytes),
        Array::U32(v) => le(out, v, u32::to_le_bytes),
        Array::I32(v) => le(out, v, i32::to_le_bytes),
        Array::F32(v) => le(out, v, f32::to_le_bytes),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| write_string(out, s)),
        Array::Array(v) => v.iter().for_each(|a| write_array(out, a)),
        Array::U64(v) => le(out, v, u64::to_le_bytes),
        Array::I64(v) => le(out, v, i64::to_le_bytes),
        Array::F64(v) => le(out, v, f64::to_le_bytes),
    }
}

/// Access to the real model file for tests of the whole `llm` module.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::OnceLock;
    use std::time::Instant;

    use super::{Gguf, default_model_path};

    static MODEL: OnceLock<Gguf> = OnceLock::new();

    /// The real model, parsed once per test binary, or `None` with a printed
    /// note when the file is absent. With `GONKA_REQUIRE_MODEL=1` an absent
    /// file fails the test instead.
    pub(crate) fn real_model() -> Option<&'static Gguf> {
        let path = default_model_path();
        if !path.exists() {
            let note = format!("model file {} absent; run tools/fetch-model.sh", path.display());
            assert!(
                std::env::var("GONKA_REQUIRE_MODEL").as_deref() != Ok("1"),
                "{note} (GONKA_REQUIRE_MODEL=1)"
            );
            println!("skipping: {note}");
            return None;
        }
        Some(MODEL.get_or_init(|| {
            let start = Instant::now();
            let model = Gguf::open(&path).unwrap_or_else(|e| panic!("the real model must parse: {e}"));
            println!("parsed {} ({} bytes) in {:?}", path.display(), model.as_bytes().len(), start.elapsed());
            model
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::quant::{quantize_q4_1, quantize_q8_0};

    /// Raw header and field bytes, for files the writer refuses to make.
    struct Raw(Vec<u8>);

    impl Raw {
        fn header(version: u32, n_tensors: u64, n_keys: u64) -> Self {
            Raw(MAGIC.to_vec()).u32(version).u64(n_tensors).u64(n_keys)
        }

        fn u32(mut self, x: u32) -> Self {
            self.0.extend_from_slice(&x.to_le_bytes());
            self
        }

        fn u64(mut self, x: u64) -> Self {
            self.0.extend_from_slice(&x.to_le_bytes());
            self
        }

        fn str(mut self, s: &str) -> Self {
            write_string(&mut self.0, s);
            self
        }

        fn bytes(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }

        /// One tensor info.
        fn tensor(self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Self {
            let r = self.str(name).u32(dims.len() as u32);
            dims.iter().fold(r, |r, &d| r.u64(d)).u32(type_id).u64(offset)
        }

        /// A file of these tensors (no metadata) and `data_bytes` of zero data.
        fn tensors(infos: &[(&str, &[u64], GgmlType, u64)], data_bytes: usize) -> Vec<u8> {
            let r = Raw::header(3, infos.len() as u64, 0);
            let Raw(mut out) = infos.iter().fold(r, |r, &(n, d, t, o)| r.tensor(n, d, t.id(), o));
            out.resize(out.len().next_multiple_of(DEFAULT_ALIGNMENT) + data_bytes, 0);
            out
        }

        fn parse(self) -> Result<Gguf> {
            Gguf::parse(self.0)
        }
    }

    /// A small file with every value type, nested arrays, four tensor types
    /// and a non-default alignment.
    fn sample_writer() -> GgufWriter {
        let mut w = GgufWriter::new();
        w.set("general.architecture", "llama")
            .set("general.alignment", 64u32)
            .set("t.u8", 7u8)
            .set("t.i8", -7i8)
            .set("t.u16", 700u16)
            .set("t.i16", -700i16)
            .set("t.i32", -70_000i32)
            .set("t.f32", 0.5f32)
            .set("t.bool", true)
            .set("t.u64", u64::MAX)
            .set("t.i64", i64::MIN)
            .set("t.f64", -2.25f64)
            .set("tokenizer.ggml.tokens", Array::from(vec!["a", "b", "ab", "é"]))
            .set("tokenizer.ggml.token_type", Array::from(vec![1i32, 1, 1, 3]))
            .set("tokenizer.ggml.scores", Array::from(vec![0.0f32, -1.0, -2.0, -3.0]))
            .set("t.flags", Array::from(vec![true, false]))
            .set("t.nested", Array::from(vec![Array::from(vec![1u8, 2]), Array::from(vec!["x"])]));
        let x: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
        let f32_bytes: Vec<u8> = x[..6].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16_bytes: Vec<u8> = x[..3].iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        w.add_tensor("norm", &[6], GgmlType::F32, f32_bytes)
            .add_tensor("half", &[3], GgmlType::F16, f16_bytes)
            .add_tensor("q4", &[32, 4], GgmlType::Q4_1, quantize_q4_1(&x))
            .add_tensor("q8", &[64, 2], GgmlType::Q8_0, quantize_q8_0(&x));
        w
    }

    #[test]
    fn writer_output_parses_back_to_the_same_file() {
        let w = sample_writer();
        let bytes = w.to_bytes();
        let g = Gguf::parse(bytes.clone()).expect("the writer's output parses");
        assert_eq!((g.version(), g.alignment()), (3, 64));
        assert!(g.data_offset().is_multiple_of(64));
        let want: Vec<_> = w.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(g.metadata().collect::<Vec<_>>(), want, "metadata in file order");
        for (t, data) in &w.tensors {
            let view = g.tensor(&t.name).expect("tensor written");
            assert_eq!((&view.info.dims, view.info.dtype), (&t.dims, t.dtype), "{}", t.name);
            assert_eq!(view.data, &data[..], "{} data", t.name);
            assert!(view.info.offset.is_multiple_of(64), "{} aligned", t.name);
        }
        let names: Vec<&str> = g.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["norm", "half", "q4", "q8"]);
        let q8 = g.tensor("q8").expect("q8 written");
        assert_eq!((q8.info.row_len(), q8.info.n_rows(), q8.row(1).map(<[u8]>::len)), (64, 2, Some(68)));
        assert_eq!(q8.row(2), None);
        // A second writer fed the parsed metadata and tensors writes the same bytes.
        let mut again = GgufWriter::new();
        for (key, value) in g.metadata() {
            again.set(key, value.clone());
        }
        for t in g.tensors() {
            again.add_tensor(&t.name, &t.dims, t.dtype, g.tensor(&t.name).expect("listed").data.to_vec());
        }
        assert_eq!(again.to_bytes(), bytes, "write ∘ parse is the identity");
    }

    #[test]
    fn typed_accessors_convert_and_name_the_key() {
        let g = Gguf::parse(sample_writer().to_bytes()).expect("sample parses");
        assert_eq!(g.get_u32("t.u8").ok(), Some(7));
        assert_eq!(g.get_u32("general.alignment").ok(), Some(64));
        assert_eq!(g.get_u64("t.u64").ok(), Some(u64::MAX));
        assert_eq!(g.get_f32("t.f64").ok(), Some(-2.25));
        assert_eq!(g.get_bool("t.bool").ok(), Some(true));
        assert_eq!(g.get_str("general.architecture").ok(), Some("llama"));
        assert_eq!(g.get_str_array("tokenizer.ggml.tokens").expect("tokens"), ["a", "b", "ab", "é"]);
        assert_eq!(g.get_i32_array("tokenizer.ggml.token_type").expect("types"), [1, 1, 1, 3]);
        assert_eq!(
            g.get_i32_array("t.nested").map_err(|e| e.to_string()).err().as_deref(),
            Some("metadata key \"t.nested\": expected array of integers, found array of array")
        );
        assert_eq!(g.get_f32_array("tokenizer.ggml.scores").expect("scores"), [0.0, -1.0, -2.0, -3.0]);
        let err = g.get_u32("t.i8").expect_err("negative");
        assert!(matches!(&err, GgufError::OutOfRange { value: -7, .. }), "{err}");
        assert_eq!(err.to_string(), "metadata key \"t.i8\": value -7 does not fit u32");
        assert!(matches!(g.get_u32("t.u64"), Err(GgufError::OutOfRange { .. })));
        let err = g.get_u32("general.architecture").expect_err("a string");
        assert_eq!(err.to_string(), "metadata key \"general.architecture\": expected u32, found string");
        let err = g.get_str("nope").expect_err("absent");
        assert_eq!(err.to_string(), "metadata key \"nope\" is missing");
        assert!(matches!(g.tensor("nope"), Err(GgufError::MissingTensor { .. })));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample_writer().to_bytes();
        for len in 0..bytes.len() {
            assert!(
                Gguf::parse(bytes[..len].to_vec()).is_err(),
                "a file cut to {len} of {} bytes parsed",
                bytes.len()
            );
        }
    }

    #[test]
    fn version_2_parses_and_other_versions_are_rejected() {
        let mut bytes = sample_writer().to_bytes();
        bytes[4] = 2;
        assert_eq!(Gguf::parse(bytes).expect("v2 has the v3 layout").version(), 2);
        for (version, want) in [(1, "UnsupportedVersion"), (4, "UnsupportedVersion"), (3 << 24, "BigEndian")]
        {
            let err = Raw::header(version, 0, 0).parse().expect_err("bad version");
            assert!(format!("{err:?}").starts_with(want), "version {version:#x}: {err}");
        }
        let err = Raw::header(2 << 24, 0, 0).parse().expect_err("big-endian");
        assert_eq!(
            err.to_string(),
            "big-endian GGUF (version 2) is not supported; expected a little-endian file"
        );
    }

    #[test]
    fn bad_magic_is_rejected() {
        let mut bytes = sample_writer().to_bytes();
        bytes[..4].copy_from_slice(b"GGML");
        assert!(matches!(Gguf::parse(bytes), Err(GgufError::BadMagic { found }) if &found == b"GGML"));
    }

    #[test]
    fn huge_string_lengths_are_rejected_before_allocating() {
        let err = Raw::header(3, 0, 1).u64(u64::MAX).bytes(&[0; 16]).parse().expect_err("key length");
        assert!(matches!(err, GgufError::StringTooLong { len: u64::MAX, max: MAX_KEY_BYTES, .. }), "{err}");
        // Under the limit but past the end of the file.
        let err = Raw::header(3, 0, 1).u64(1000).bytes(&[b'a'; 16]).parse().expect_err("short key");
        assert!(matches!(err, GgufError::Truncated { needed: 1000, left: 16, .. }), "{err}");
        let value = Raw::header(3, 0, 1).str("k").u32(value_type::STRING);
        let err = value.u64(MAX_STRING_BYTES + 1).bytes(&[0; 16]).parse().expect_err("value length");
        assert!(matches!(err, GgufError::StringTooLong { max: MAX_STRING_BYTES, .. }), "{err}");
        let err = Raw::header(3, 1, 0).u64(1 << 40).bytes(&[0; 32]).parse().expect_err("tensor name length");
        assert!(matches!(err, GgufError::StringTooLong { max: MAX_TENSOR_NAME_BYTES, .. }), "{err}");
    }

    #[test]
    fn huge_array_lengths_are_rejected_before_allocating() {
        let array = || Raw::header(3, 0, 1).str("k").u32(value_type::ARRAY);
        let err = array().u32(value_type::U64).u64(u64::MAX).parse().expect_err("huge");
        assert!(matches!(err, GgufError::ArrayTooLong { len: u64::MAX, .. }), "{err}");
        // Under the limit, but eight bytes per element cannot fit in what is left.
        let err = array().u32(value_type::U64).u64(MAX_ARRAY_LEN).bytes(&[0; 64]).parse().expect_err("short");
        assert!(matches!(err, GgufError::Truncated { needed, .. } if needed == 8 * MAX_ARRAY_LEN), "{err}");
        let err = array().u32(value_type::STRING).u64(9).bytes(&[0; 64]).parse().expect_err("strings");
        assert!(matches!(err, GgufError::Truncated { needed: 72, left: 64, .. }), "{err}");
    }

    #[test]
    fn too_many_tensors_or_keys_are_rejected() {
        let err = Raw::header(3, MAX_TENSORS + 1, 0).parse().expect_err("tensors");
        assert!(matches!(err, GgufError::TooMany { what: "tensors", .. }), "{err}");
        let err = Raw::header(3, 0, MAX_METADATA_KEYS + 1).parse().expect_err("keys");
        assert!(matches!(err, GgufError::TooMany { what: "metadata keys", .. }), "{err}");
        // Within the limits, but more than the file could hold.
        let err = Raw::header(3, MAX_TENSORS, 0).bytes(&[0; 100]).parse().expect_err("short");
        assert!(matches!(err, GgufError::Truncated { left: 100, .. }), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let value = |type_id: u32| Raw::header(3, 0, 1).str("k").u32(type_id);
        let err = value(13).bytes(&[0; 8]).parse().expect_err("type 13");
        assert!(matches!(err, GgufError::UnknownValueType { type_id: 13, .. }), "{err}");
        let err = value(value_type::ARRAY).u32(99).u64(0).parse().expect_err("element type 99");
        assert!(matches!(err, GgufError::UnknownValueType { type_id: 99, .. }), "{err}");
        let err = value(value_type::BOOL).bytes(&[2]).parse().expect_err("bool 2");
        assert!(matches!(err, GgufError::InvalidBool { byte: 2, .. }), "{err}");
        let err = value(value_type::STRING).u64(2).bytes(&[0xc3, 0x28]).parse().expect_err("bad UTF-8");
        assert!(matches!(err, GgufError::InvalidUtf8 { .. }), "{err}");
        assert_eq!(err.to_string(), "value of metadata key \"k\" is not valid UTF-8");
        let mut nested = value(value_type::ARRAY);
        for _ in 0..MAX_ARRAY_DEPTH {
            nested = nested.u32(value_type::ARRAY).u64(1);
        }
        let err = nested.u32(value_type::U8).u64(0).parse().expect_err("too deep");
        assert!(matches!(err, GgufError::NestingTooDeep { .. }), "{err}");
        let twice = Raw::header(3, 0, 2).str("k").u32(value_type::U8).bytes(&[1]).str("k").u32(0).bytes(&[2]);
        assert!(matches!(twice.parse(), Err(GgufError::DuplicateKey { key }) if key == "k"));
    }

    #[test]
    fn bad_alignment_is_rejected() {
        for (value, found) in [(Value::U32(0), 0), (Value::U32(48), 48), (Value::U64(1 << 20), 1 << 20)] {
            let mut raw = Raw::header(3, 0, 1).str("general.alignment").u32(value.type_id());
            write_value(&mut raw.0, &value);
            let err = raw.parse().expect_err("bad alignment");
            assert!(
                matches!(err, GgufError::BadAlignment { found: f, .. } if f == found),
                "{value:?}: {err}"
            );
        }
        let raw = Raw::header(3, 0, 1).str("general.alignment").u32(value_type::I8).bytes(&[0xff]);
        assert!(matches!(raw.parse(), Err(GgufError::OutOfRange { value: -1, .. })));
    }

    #[test]
    #[should_panic(expected = "general.alignment")]
    fn writer_refuses_an_alignment_the_reader_would_reject() {
        GgufWriter::new().set("general.alignment", 48u32).to_bytes();
    }

    #[test]
    fn bad_shapes_are_rejected() {
        let q4 = GgmlType::Q4_1;
        let err = Gguf::parse(Raw::tensors(&[("t", &[], q4, 0)], 0)).expect_err("no dims");
        assert!(matches!(err, GgufError::BadDims { n_dims: 0, .. }), "{err}");
        let err = Gguf::parse(Raw::tensors(&[("t", &[32, 1, 1, 1, 1], q4, 0)], 20)).expect_err("5 dims");
        assert!(matches!(err, GgufError::BadDims { n_dims: 5, .. }), "{err}");
        let err = Gguf::parse(Raw::tensors(&[("t", &[32, 0], q4, 0)], 0)).expect_err("empty");
        assert!(matches!(err, GgufError::ZeroDim { .. }), "{err}");
        let err =
            Gguf::parse(Raw::tensors(&[("t", &[1 << 32, 1 << 32], GgmlType::F32, 0)], 0)).expect_err("2^64");
        assert!(matches!(err, GgufError::ElementOverflow { .. }), "{err}");
        // 2^62 f32 values fit a u64 count but not a byte size.
        let err =
            Gguf::parse(Raw::tensors(&[("t", &[1 << 31, 1 << 31], GgmlType::F32, 0)], 0)).expect_err("bytes");
        assert!(matches!(err, GgufError::ElementOverflow { .. }), "{err}");
        let err = Gguf::parse(Raw::tensors(&[("t", &[33, 2], q4, 0)], 64)).expect_err("33 not whole blocks");
        assert!(
            matches!(err, GgufError::Shape { source: QuantError::NotBlockMultiple { k: 33, .. }, .. }),
            "{err}"
        );
        for type_id in [4, 16, 31, 1000] {
            let bytes = Raw::header(3, 1, 0).tensor("t", &[32], type_id, 0).0;
            let err = Gguf::parse(bytes).expect_err("unknown type");
            assert!(matches!(err, GgufError::UnknownGgmlType { type_id: t, .. } if t == type_id), "{err}");
            assert!(err.to_string().contains(&format!("type id {type_id}")), "{err}");
        }
    }

    #[test]
    fn bad_layouts_are_rejected() {
        let f32s = GgmlType::F32;
        let ok = Raw::tensors(&[("a", &[8], f32s, 0), ("b", &[8], f32s, 32)], 64);
        assert_eq!(Gguf::parse(ok).expect("valid layout").tensors().len(), 2);
        let err = Gguf::parse(Raw::tensors(&[("a", &[8], f32s, 32)], 63)).expect_err("one byte short");
        assert!(matches!(err, GgufError::OutOfBounds { offset: 32, bytes: 32, data_bytes: 63, .. }), "{err}");
        let err =
            Gguf::parse(Raw::tensors(&[("a", &[8], f32s, u64::MAX - 31)], 64)).expect_err("offset wraps");
        assert!(matches!(err, GgufError::OutOfBounds { .. }), "{err}");
        let err = Gguf::parse(Raw::tensors(&[("a", &[8], f32s, 4)], 64)).expect_err("misaligned");
        assert!(matches!(err, GgufError::Misaligned { offset: 4, alignment: 32, .. }), "{err}");
        let err = Gguf::parse(Raw::tensors(&[("a", &[16], f32s, 32), ("b", &[8], f32s, 64)], 128));
        assert!(matches!(err, Err(GgufError::Overlap { first, second }) if first == "a" && second == "b"));
        let err = Gguf::parse(Raw::tensors(&[("a", &[8], f32s, 0), ("a", &[8], f32s, 32)], 64));
        assert!(matches!(err, Err(GgufError::DuplicateTensor { name }) if name == "a"));
        // Tensor infos present, but the file ends before the padding that starts the data.
        let bytes = Raw::header(3, 1, 0).tensor("a", &[1], 0, 0).0;
        assert!(matches!(Gguf::parse(bytes), Err(GgufError::Truncated { .. })));
    }

    #[test]
    fn missing_file_names_the_path_and_the_fetch_script() {
        let path = Path::new("/nonexistent/dir/model.gguf");
        let err = Gguf::open(path).expect_err("absent file");
        let message = err.to_string();
        assert!(matches!(err, GgufError::Missing { .. }), "{message}");
        assert!(message.contains("/nonexistent/dir/model.gguf") && message.contains("tools/fetch-model.sh"));
        assert!(default_model_path().ends_with(DEFAULT_MODEL_FILE));
    }

    #[test]
    fn real_file_matches_the_known_model() {
        let Some(g) = testing::real_model() else { return };
        assert_eq!(g.version(), 3);
        assert_eq!(g.get_str("general.architecture").expect("architecture"), "llama");
        for (key, want) in [
            ("llama.block_count", 30),
            ("llama.embedding_length", 576),
            ("llama.feed_forward_length", 1536),
            ("llama.attention.head_count", 9),
            ("llama.attention.head_count_kv", 3),
        ] {
            assert_eq!(g.get_u32(key).expect("llama shape key"), want, "{key}");
        }
        let tokens = g.get_str_array("tokenizer.ggml.tokens").expect("vocabulary");
        assert_eq!(tokens.len(), 49152);
        assert_eq!(g.get_i32_array("tokenizer.ggml.token_type").expect("token types").len(), 49152);
        assert!(!g.get_str_array("tokenizer.ggml.merges").expect("merges").is_empty());
        assert!(g.get_str("tokenizer.chat_template").expect("chat template").contains("im_start"));
        let bos = g.get_u32("tokenizer.ggml.bos_token_id").expect("bos") as usize;
        println!("bos {bos} = {:?}, {} metadata keys:", tokens[bos], g.metadata().count());
        for (key, value) in g.metadata() {
            match value {
                Value::Array(a) => println!("  {key}: {} × {}", a.len(), a.elem_name()),
                Value::String(s) if s.len() > 60 => println!("  {key}: string of {} bytes", s.len()),
                _ => println!("  {key}: {value:?}"),
            }
        }
        let count = |dtype| g.tensors().iter().filter(|t| t.dtype == dtype).count();
        assert_eq!(g.tensors().len(), 272);
        assert_eq!((count(GgmlType::Q4_1), count(GgmlType::F32), count(GgmlType::Q8_0)), (210, 61, 1));
        let embd = g.tensor_info("token_embd.weight").expect("token embedding");
        assert_eq!((embd.dims.as_slice(), embd.dtype), (&[576, 49152][..], GgmlType::Q8_0));
        assert!(g.tensor_info("output.weight").is_none(), "the output projection is tied to the embedding");
        for t in g.tensors().iter().filter(|t| t.name.starts_with("blk.0.")) {
            println!("  {} {:?} {} at {}", t.name, t.dims, t.dtype, t.offset);
        }
    }

    /// Writes the `gguf_parse` fuzz seeds: small writer files and the first
    /// 4 KiB of the real model. Run by hand after a format change.
    #[test]
    #[ignore = "writes files under fuzz/seeds; run by hand"]
    fn write_fuzz_seeds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/gguf_parse");
        std::fs::create_dir_all(&dir).expect("seed directory");
        let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).expect("seed written");
        write("sample", &sample_writer().to_bytes());
        let mut w = GgufWriter::new();
        let x: Vec<f32> = (0..64).map(|i| i as f32 - 20.0).collect();
        w.set("general.architecture", "llama").set("llama.block_count", 1u32);
        w.add_tensor("q4_0", &[32], GgmlType::Q4_0, vec![0x11; 18])
            .add_tensor("bf16", &[4, 2], GgmlType::BF16, vec![0x3f; 16])
            .add_tensor("q8", &[32, 2], GgmlType::Q8_0, quantize_q8_0(&x));
        write("tensors", &w.to_bytes());
        write("empty", &GgufWriter::new().to_bytes());
        if let Some(g) = testing::real_model() {
            write("real_header", &g.as_bytes()[..4096]);
        }
    }
}
