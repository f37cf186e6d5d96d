//! Byte encodings of keys and rows.
//!
//! Keys are memcomparable: comparing the bytes compares the values, so RocksDB's order
//! is the values' order and a prefix scan finds a relation's rows. Rows are a compact
//! tagged encoding of the types segstream stores; decoding checks every length, so a
//! damaged value is an error, never a panic.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::datatypes::{
    Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampNanosecondType,
};
use datafusion::common::ScalarValue;
use segstream_types::{Error, Result};

/// The smallest key greater than every key that starts with `prefix` (`None` if the
/// prefix is all `0xFF`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Appends the memcomparable form of a key value (TEXT or an integer).
pub fn encode_key(value: &ScalarValue, out: &mut Vec<u8>) -> Result<()> {
    match value {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            // 0x00 is escaped as 0x00 0xFF and the string ends with 0x00 0x00, so a
            // string sorts before every longer string it is a prefix of.
            for &b in s.as_bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xFF);
                }
            }
            out.extend_from_slice(&[0, 0]);
        }
        ScalarValue::Int16(Some(v)) => out.extend_from_slice(&((*v as u16) ^ 0x8000).to_be_bytes()),
        ScalarValue::Int32(Some(v)) => out.extend_from_slice(&((*v as u32) ^ 0x8000_0000).to_be_bytes()),
        ScalarValue::Int64(Some(v)) => {
            out.extend_from_slice(&((*v as u64) ^ 0x8000_0000_0000_0000).to_be_bytes())
        }
        other => return Err(Error::invalid_input(format!("{other:?} cannot be a key"))),
    }
    Ok(())
}

/// Appends an order-preserving encoding of any stored value (NULL first). Used for
/// MIN/MAX multisets and group keys, where byte order must be value order.
pub fn encode_sortable(value: &ScalarValue, out: &mut Vec<u8>) -> Result<()> {
    if value.is_null() {
        out.push(NULL);
        return Ok(());
    }
    out.push(PRESENT);
    let int = |v: i64, out: &mut Vec<u8>| out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
    match value {
        ScalarValue::Utf8(Some(_)) | ScalarValue::LargeUtf8(Some(_)) | ScalarValue::Utf8View(Some(_)) => {
            encode_key(value, out)?
        }
        ScalarValue::Boolean(Some(b)) => out.push(u8::from(*b)),
        ScalarValue::Int16(Some(v)) => int(*v as i64, out),
        ScalarValue::Int32(Some(v)) | ScalarValue::Date32(Some(v)) => int(*v as i64, out),
        ScalarValue::Int64(Some(v)) | ScalarValue::TimestampNanosecond(Some(v), _) => int(*v, out),
        ScalarValue::Float32(Some(v)) => out.extend_from_slice(&sortable_float(*v as f64)),
        ScalarValue::Float64(Some(v)) => out.extend_from_slice(&sortable_float(*v)),
        other => {
            return Err(Error::invalid_input(format!("values of type {} are not stored", other.data_type())))
        }
    }
    Ok(())
}

/// [`encode_sortable`] of the value at `row` of `array`, read from the array's own type
/// without building a `ScalarValue` (the per-row path of grouping and MIN/MAX). Returns
/// `false`, writing nothing, for a type it does not read this way.
pub fn encode_sortable_at(array: &dyn Array, row: usize, out: &mut Vec<u8>) -> bool {
    if array.is_null(row) {
        out.push(NULL);
        return true;
    }
    let int = |v: i64, out: &mut Vec<u8>| out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
    let text = |s: &str, out: &mut Vec<u8>| {
        for &b in s.as_bytes() {
            out.push(b);
            if b == 0 {
                out.push(0xFF);
            }
        }
        out.extend_from_slice(&[0, 0]);
    };
    match array.data_type() {
        DataType::Utf8 => {
            out.push(PRESENT);
            text(array.as_string::<i32>().value(row), out)
        }
        DataType::LargeUtf8 => {
            out.push(PRESENT);
            text(array.as_string::<i64>().value(row), out)
        }
        DataType::Utf8View => {
            out.push(PRESENT);
            text(array.as_string_view().value(row), out)
        }
        DataType::Boolean => {
            out.push(PRESENT);
            out.push(u8::from(array.as_boolean().value(row)))
        }
        DataType::Int16 => {
            out.push(PRESENT);
            int(array.as_primitive::<Int16Type>().value(row) as i64, out)
        }
        DataType::Int32 => {
            out.push(PRESENT);
            int(array.as_primitive::<Int32Type>().value(row) as i64, out)
        }
        DataType::Date32 => {
            out.push(PRESENT);
            int(array.as_primitive::<Date32Type>().value(row) as i64, out)
        }
        DataType::Int64 => {
            out.push(PRESENT);
            int(array.as_primitive::<Int64Type>().value(row), out)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            out.push(PRESENT);
            int(array.as_primitive::<TimestampNanosecondType>().value(row), out)
        }
        DataType::Float32 => {
            out.push(PRESENT);
            out.extend_from_slice(&sortable_float(array.as_primitive::<Float32Type>().value(row) as f64))
        }
        DataType::Float64 => {
            out.push(PRESENT);
            out.extend_from_slice(&sortable_float(array.as_primitive::<Float64Type>().value(row)))
        }
        _ => return false,
    }
    true
}

fn sortable_float(v: f64) -> [u8; 8] {
    let bits = v.to_bits();
    let bits = if bits >> 63 == 1 { !bits } else { bits ^ (1 << 63) };
    bits.to_be_bytes()
}

/// A growing byte buffer for state values: fixed-width numbers and length-prefixed
/// byte strings, read back by [`ByteReader`].
#[derive(Default)]
pub struct ByteWriter(pub Vec<u8>);

impl ByteWriter {
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.0.extend_from_slice(v);
        self
    }
}

/// Reads what a [`ByteWriter`] wrote; every read checks the length left.
pub struct ByteReader<'a> {
    reader: Reader<'a>,
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { reader: Reader { bytes, at: 0 } }
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.reader.array()?))
    }

    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.reader.array()?))
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.reader.take(1)?[0])
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = u32::from_le_bytes(self.reader.array()?) as usize;
        self.reader.take(len)
    }

    pub fn is_done(&self) -> bool {
        self.reader.at == self.reader.bytes.len()
    }
}

/// The memcomparable form of a clock instant (signed, so order is time order).
pub fn encode_instant(nanos: i64) -> [u8; 8] {
    ((nanos as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn decode_instant(bytes: &[u8]) -> Result<i64> {
    let array: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?;
    Ok((u64::from_be_bytes(array) ^ (1 << 63)) as i64)
}

const NULL: u8 = 0;
const PRESENT: u8 = 1;

/// Encodes one row of values of the supported types.
pub fn encode_row(values: &[ScalarValue]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * 9);
    for value in values {
        if value.is_null() {
            out.push(NULL);
            continue;
        }
        out.push(PRESENT);
        match value {
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            ScalarValue::Boolean(Some(b)) => out.push(u8::from(*b)),
            ScalarValue::Int16(Some(v)) => out.extend_from_slice(&v.to_le_bytes()),
            ScalarValue::Int32(Some(v)) | ScalarValue::Date32(Some(v)) => {
                out.extend_from_slice(&v.to_le_bytes())
            }
            ScalarValue::Int64(Some(v)) | ScalarValue::TimestampNanosecond(Some(v), _) => {
                out.extend_from_slice(&v.to_le_bytes())
            }
            ScalarValue::Float32(Some(v)) => out.extend_from_slice(&v.to_le_bytes()),
            ScalarValue::Float64(Some(v)) => out.extend_from_slice(&v.to_le_bytes()),
            other => {
                return Err(Error::invalid_input(format!(
                    "values of type {} are not stored",
                    other.data_type()
                )))
            }
        }
    }
    Ok(out)
}

/// One column of a row encoded by [`encode_row`], the others skipped rather than
/// decoded: a timer's member key, read for every timer that fires.
pub fn decode_row_column(schema: &SchemaRef, bytes: &[u8], column: usize) -> Result<ScalarValue> {
    let mut reader = Reader { bytes, at: 0 };
    for field in schema.fields().iter().take(column) {
        if reader.take(1)?[0] == NULL {
            continue;
        }
        let width = match field.data_type() {
            DataType::Utf8 => u32::from_le_bytes(reader.array()?) as usize,
            DataType::Boolean => 1,
            DataType::Int16 => 2,
            DataType::Int32 | DataType::Date32 | DataType::Float32 => 4,
            DataType::Int64 | DataType::Timestamp(TimeUnit::Nanosecond, _) | DataType::Float64 => 8,
            other => return Err(Error::internal(format!("no row encoding for {other}"))),
        };
        reader.take(width)?;
    }
    let field = schema.fields().get(column..=column).ok_or_else(corrupt)?;
    read_values(&mut reader, field)?.pop().ok_or_else(corrupt)
}

/// Decodes a row encoded by [`encode_row`] for `schema`.
pub fn decode_row(schema: &SchemaRef, bytes: &[u8]) -> Result<Vec<ScalarValue>> {
    let mut reader = Reader { bytes, at: 0 };
    let values = read_values(&mut reader, schema.fields())?;
    if reader.at != bytes.len() {
        return Err(corrupt());
    }
    Ok(values)
}

/// The values of `fields`, in order, from where `reader` is.
fn read_values(
    reader: &mut Reader<'_>,
    fields: &[datafusion::arrow::datatypes::FieldRef],
) -> Result<Vec<ScalarValue>> {
    let mut values = Vec::with_capacity(fields.len());
    for field in fields {
        let data_type = field.data_type();
        if reader.take(1)?[0] == NULL {
            values.push(ScalarValue::try_from(data_type).map_err(|e| Error::internal(e.to_string()))?);
            continue;
        }
        values.push(match data_type {
            DataType::Utf8 => {
                let len = u32::from_le_bytes(reader.array()?) as usize;
                let s = std::str::from_utf8(reader.take(len)?).map_err(|_| corrupt())?;
                ScalarValue::Utf8(Some(s.to_string()))
            }
            DataType::Boolean => ScalarValue::Boolean(Some(reader.take(1)?[0] != 0)),
            DataType::Int16 => ScalarValue::Int16(Some(i16::from_le_bytes(reader.array()?))),
            DataType::Int32 => ScalarValue::Int32(Some(i32::from_le_bytes(reader.array()?))),
            DataType::Date32 => ScalarValue::Date32(Some(i32::from_le_bytes(reader.array()?))),
            DataType::Int64 => ScalarValue::Int64(Some(i64::from_le_bytes(reader.array()?))),
            DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
                ScalarValue::TimestampNanosecond(Some(i64::from_le_bytes(reader.array()?)), tz.clone())
            }
            DataType::Float32 => ScalarValue::Float32(Some(f32::from_le_bytes(reader.array()?))),
            DataType::Float64 => ScalarValue::Float64(Some(f64::from_le_bytes(reader.array()?))),
            other => return Err(Error::internal(format!("no row encoding for {other}"))),
        });
    }
    Ok(values)
}

/// Encodes every row of a batch, column by column, into the bytes [`encode_row`] gives
/// for the same values (the ingest path, which has whole batches).
pub fn encode_batch_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let mut rows: Vec<Vec<u8>> = row_lengths(batch)?.into_iter().map(Vec::with_capacity).collect();
    encode_columns(batch, |i, bytes| rows[i].extend_from_slice(bytes))?;
    Ok(rows)
}

/// Rows of one relation encoded as [`encode_row`] encodes them, one after another in one
/// buffer: the row count (`i64`), then each row length-prefixed (`u32`), as a
/// [`ByteWriter`] writes them. A stream's stored event block and a journal record's rows
/// have this layout, so an ingested batch is encoded once, into one allocation, for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowBlock(Vec<u8>);

impl RowBlock {
    /// Every row of `batch`, encoded column by column.
    pub fn encode(batch: &RecordBatch) -> Result<Self> {
        let lengths = row_lengths(batch)?;
        let total: usize = 8 + lengths.iter().map(|n| 4 + n).sum::<usize>();
        let mut bytes = vec![0u8; total];
        bytes[..8].copy_from_slice(&(lengths.len() as i64).to_le_bytes());
        // Where each row's next value goes.
        let mut cursors = Vec::with_capacity(lengths.len());
        let mut at = 8;
        for &n in &lengths {
            bytes[at..at + 4].copy_from_slice(&(n as u32).to_le_bytes());
            cursors.push(at + 4);
            at += 4 + n;
        }
        encode_columns(batch, |i, value| {
            let at = cursors[i];
            bytes[at..at + value.len()].copy_from_slice(value);
            cursors[i] = at + value.len();
        })?;
        Ok(Self(bytes))
    }

    /// A block of rows already encoded one by one.
    pub fn from_rows<'r>(rows: impl ExactSizeIterator<Item = &'r [u8]>) -> Self {
        let mut w = ByteWriter::default();
        w.i64(rows.len() as i64);
        for row in rows {
            w.bytes(row);
        }
        Self(w.0)
    }

    /// Reads a block at the start of `reader`'s bytes (checking every length), leaving
    /// the reader after it.
    pub fn read(reader: &mut ByteReader<'_>) -> Result<Self> {
        let start = reader.reader.at;
        let n = reader.i64()?;
        if n < 0 {
            return Err(corrupt());
        }
        for _ in 0..n {
            reader.bytes()?;
        }
        Ok(Self(reader.reader.bytes[start..reader.reader.at].to_vec()))
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        i64::from_le_bytes(self.0[..8].try_into().unwrap_or([0; 8])) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each row's bytes (lengths were checked when the block was made or read).
    pub fn rows(&self) -> BlockRows<'_> {
        BlockRows { reader: ByteReader::new(&self.0[8..]), left: self.len() }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// The rows of a [`RowBlock`], in order.
pub struct BlockRows<'a> {
    reader: ByteReader<'a>,
    left: usize,
}

impl<'a> Iterator for BlockRows<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.reader.bytes().ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for BlockRows<'_> {}

/// What each row of `batch` takes encoded (without a length prefix).
fn row_lengths(batch: &RecordBatch) -> Result<Vec<usize>> {
    let mut lengths = vec![0usize; batch.num_rows()];
    for column in batch.columns() {
        let width = match column.data_type() {
            DataType::Utf8 => {
                let values = column.as_string::<i32>();
                for (i, n) in lengths.iter_mut().enumerate() {
                    *n += if values.is_null(i) { 1 } else { 5 + values.value_length(i) as usize };
                }
                continue;
            }
            DataType::Null => 0,
            DataType::Boolean => 1,
            DataType::Int16 => 2,
            DataType::Int32 | DataType::Date32 | DataType::Float32 => 4,
            DataType::Int64 | DataType::Timestamp(TimeUnit::Nanosecond, _) | DataType::Float64 => 8,
            other => return Err(Error::invalid_input(format!("values of type {other} are not stored"))),
        };
        for (i, n) in lengths.iter_mut().enumerate() {
            *n += if column.is_null(i) { 1 } else { 1 + width };
        }
    }
    Ok(lengths)
}

/// Encodes `batch` column by column: `put(row, bytes)` receives each row's values in
/// column order, as [`encode_row`] lays them out.
fn encode_columns(batch: &RecordBatch, mut put: impl FnMut(usize, &[u8])) -> Result<()> {
    let n = batch.num_rows();
    for column in batch.columns() {
        macro_rules! fixed {
            ($t:ty) => {{
                let values = column.as_primitive::<$t>();
                for i in 0..n {
                    if values.is_null(i) {
                        put(i, &[NULL]);
                    } else {
                        put(i, &[PRESENT]);
                        put(i, &values.value(i).to_le_bytes());
                    }
                }
            }};
        }
        match column.data_type() {
            DataType::Utf8 => {
                let values = column.as_string::<i32>();
                for i in 0..n {
                    if values.is_null(i) {
                        put(i, &[NULL]);
                    } else {
                        let s = values.value(i);
                        put(i, &[PRESENT]);
                        put(i, &(s.len() as u32).to_le_bytes());
                        put(i, s.as_bytes());
                    }
                }
            }
            DataType::Boolean => {
                let values = column.as_boolean();
                for i in 0..n {
                    if values.is_null(i) {
                        put(i, &[NULL]);
                    } else {
                        put(i, &[PRESENT, u8::from(values.value(i))]);
                    }
                }
            }
            DataType::Int16 => fixed!(Int16Type),
            DataType::Int32 => fixed!(Int32Type),
            DataType::Date32 => fixed!(Date32Type),
            DataType::Int64 => fixed!(Int64Type),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => fixed!(TimestampNanosecondType),
            DataType::Float32 => fixed!(Float32Type),
            DataType::Float64 => fixed!(Float64Type),
            DataType::Null => (0..n).for_each(|i| put(i, &[NULL])),
            other => return Err(Error::invalid_input(format!("values of type {other} are not stored"))),
        }
    }
    Ok(())
}

/// One column being built from values, typed, so rows become arrays without going
/// through `ScalarValue` for each value.
enum ColumnBuilder {
    Utf8(StringBuilder),
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Date32(Date32Builder),
    Int64(Int64Builder),
    Timestamp(TimestampNanosecondBuilder, Option<Arc<str>>),
    Float32(Float32Builder),
    Float64(Float64Builder),
}

impl ColumnBuilder {
    fn new(data_type: &DataType, capacity: usize) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 8)),
            DataType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Int16 => Self::Int16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Date32 => Self::Date32(Date32Builder::with_capacity(capacity)),
            DataType::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
                Self::Timestamp(TimestampNanosecondBuilder::with_capacity(capacity), tz.clone())
            }
            DataType::Float32 => Self::Float32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            _ => return None,
        })
    }

    /// Appends a value of the builder's type (or NULL); `false` for any other value.
    fn push(&mut self, value: &ScalarValue) -> bool {
        match (self, value) {
            (Self::Utf8(b), ScalarValue::Utf8(v)) => b.append_option(v.as_deref()),
            (Self::Boolean(b), ScalarValue::Boolean(v)) => b.append_option(*v),
            (Self::Int16(b), ScalarValue::Int16(v)) => b.append_option(*v),
            (Self::Int32(b), ScalarValue::Int32(v)) => b.append_option(*v),
            (Self::Date32(b), ScalarValue::Date32(v)) => b.append_option(*v),
            (Self::Int64(b), ScalarValue::Int64(v)) => b.append_option(*v),
            (Self::Timestamp(b, _), ScalarValue::TimestampNanosecond(v, _)) => b.append_option(*v),
            (Self::Float32(b), ScalarValue::Float32(v)) => b.append_option(*v),
            (Self::Float64(b), ScalarValue::Float64(v)) => b.append_option(*v),
            (b, ScalarValue::Null) => b.push_null(),
            _ => return false,
        }
        true
    }

    fn push_null(&mut self) {
        match self {
            Self::Utf8(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Date32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Timestamp(b, _) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
        }
    }

    /// Appends the next value of an encoded row (see [`encode_row`]).
    fn push_encoded(&mut self, reader: &mut Reader<'_>) -> Result<()> {
        if reader.take(1)?[0] == NULL {
            self.push_null();
            return Ok(());
        }
        match self {
            Self::Utf8(b) => {
                let len = u32::from_le_bytes(reader.array()?) as usize;
                b.append_value(std::str::from_utf8(reader.take(len)?).map_err(|_| corrupt())?)
            }
            Self::Boolean(b) => b.append_value(reader.take(1)?[0] != 0),
            Self::Int16(b) => b.append_value(i16::from_le_bytes(reader.array()?)),
            Self::Int32(b) => b.append_value(i32::from_le_bytes(reader.array()?)),
            Self::Date32(b) => b.append_value(i32::from_le_bytes(reader.array()?)),
            Self::Int64(b) => b.append_value(i64::from_le_bytes(reader.array()?)),
            Self::Timestamp(b, _) => b.append_value(i64::from_le_bytes(reader.array()?)),
            Self::Float32(b) => b.append_value(f32::from_le_bytes(reader.array()?)),
            Self::Float64(b) => b.append_value(f64::from_le_bytes(reader.array()?)),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Utf8(mut b) => Arc::new(b.finish()),
            Self::Boolean(mut b) => Arc::new(b.finish()),
            Self::Int16(mut b) => Arc::new(b.finish()),
            Self::Int32(mut b) => Arc::new(b.finish()),
            Self::Date32(mut b) => Arc::new(b.finish()),
            Self::Int64(mut b) => Arc::new(b.finish()),
            Self::Timestamp(mut b, tz) => Arc::new(b.finish().with_timezone_opt(tz)),
            Self::Float32(mut b) => Arc::new(b.finish()),
            Self::Float64(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Row `row` of a batch as values: what operators that work one row at a time use.
pub fn row_values(batch: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>> {
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, row))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(e.to_string()))
}

/// Builds a batch from decoded rows.
pub fn rows_to_batch(schema: &SchemaRef, rows: &[Vec<ScalarValue>]) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let typed = ColumnBuilder::new(field.data_type(), rows.len())
            .and_then(|mut builder| rows.iter().all(|r| builder.push(&r[i])).then(|| builder.finish()));
        let array = match typed {
            Some(array) => array,
            None if rows.is_empty() => datafusion::arrow::array::new_empty_array(field.data_type()),
            None => ScalarValue::iter_to_array(rows.iter().map(|r| r[i].clone()))
                .map_err(|e| Error::internal(e.to_string()))?,
        };
        columns.push(array);
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| Error::internal(e.to_string()))
}

/// Builds a batch from rows encoded by [`encode_row`] for `schema`, without decoding
/// them to values first.
pub fn encoded_rows_to_batch<'r>(
    schema: &SchemaRef,
    rows: impl ExactSizeIterator<Item = &'r [u8]>,
) -> Result<RecordBatch> {
    let n = rows.len();
    let builders: Option<Vec<ColumnBuilder>> =
        schema.fields().iter().map(|f| ColumnBuilder::new(f.data_type(), n)).collect();
    let Some(mut builders) = builders else {
        let decoded = rows.map(|bytes| decode_row(schema, bytes)).collect::<Result<Vec<_>>>()?;
        return rows_to_batch(schema, &decoded);
    };
    for bytes in rows {
        let mut reader = Reader { bytes, at: 0 };
        for builder in &mut builders {
            builder.push_encoded(&mut reader)?;
        }
        if reader.at != bytes.len() {
            return Err(corrupt());
        }
    }
    let columns = builders.into_iter().map(ColumnBuilder::finish).collect();
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
    )
    .map_err(|e| Error::internal(e.to_string()))
}

fn corrupt() -> Error {
    Error::storage("a stored row is damaged (it does not decode for its relation's schema)")
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(corrupt)?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    /// The per-row path gives exactly the bytes of the `ScalarValue` path.
    #[test]
    fn sortable_at_a_row_matches_sortable_of_the_value() {
        use datafusion::arrow::array::{
            BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
            LargeStringArray, StringArray, StringViewArray, TimestampNanosecondArray,
        };
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("a\0b"), None, Some("")])),
            Arc::new(LargeStringArray::from(vec![Some("x"), None, Some("yz")])),
            Arc::new(StringViewArray::from(vec![Some("a long string past twelve bytes"), None, Some("s")])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            Arc::new(Int16Array::from(vec![Some(-3), None, Some(i16::MAX)])),
            Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(7)])),
            Arc::new(Date32Array::from(vec![Some(-1), None, Some(19_000)])),
            Arc::new(Int64Array::from(vec![Some(i64::MIN), None, Some(42)])),
            Arc::new(TimestampNanosecondArray::from(vec![Some(-5), None, Some(1_700_000_000_000_000_000)])),
            Arc::new(Float32Array::from(vec![Some(-0.5), None, Some(f32::INFINITY)])),
            Arc::new(Float64Array::from(vec![Some(-1e300), None, Some(f64::NAN)])),
        ];
        for array in &arrays {
            for row in 0..array.len() {
                let mut expected = Vec::new();
                encode_sortable(&ScalarValue::try_from_array(array, row).unwrap(), &mut expected).unwrap();
                let mut got = Vec::new();
                assert!(encode_sortable_at(array.as_ref(), row, &mut got), "{}", array.data_type());
                assert_eq!(got, expected, "{} row {row}", array.data_type());
            }
        }
    }

    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};

    fn key(v: ScalarValue) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(&v, &mut out).expect("key");
        out
    }

    #[test]
    fn keys_sort_like_values() {
        let texts = ["", "a", "a\0", "a\0b", "ab", "b"];
        let encoded: Vec<_> = texts.iter().map(|t| key(ScalarValue::from(*t))).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "{encoded:?}");
        let ints = [i64::MIN, -1, 0, 1, i64::MAX];
        let encoded: Vec<_> = ints.iter().map(|i| key(ScalarValue::Int64(Some(*i)))).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }

    #[test]
    fn sortable_values_and_instants_keep_their_order() {
        let sort = |v: ScalarValue| {
            let mut out = Vec::new();
            encode_sortable(&v, &mut out).expect("encodes");
            out
        };
        let floats = [-1e300, -2.5, -0.0, 0.5, 3.0, 1e300];
        let encoded: Vec<_> = floats.iter().map(|f| sort(ScalarValue::Float64(Some(*f)))).collect();
        assert!(encoded.windows(2).all(|w| w[0] <= w[1]), "{encoded:?}");
        assert!(sort(ScalarValue::Int64(None)) < sort(ScalarValue::Int64(Some(i64::MIN))));
        let instants = [i64::MIN, -5, 0, 7, i64::MAX];
        let encoded: Vec<_> = instants.iter().map(|i| encode_instant(*i)).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(decode_instant(&encode_instant(-5)).unwrap(), -5);
        let mut w = ByteWriter::default();
        w.i64(-3).f64(2.5).bytes(b"abc").u8(9);
        let mut r = ByteReader::new(&w.0);
        assert_eq!(
            (r.i64().unwrap(), r.f64().unwrap(), r.bytes().unwrap(), r.u8().unwrap()),
            (-3, 2.5, &b"abc"[..], 9)
        );
        assert!(r.is_done() && r.u8().is_err());
    }

    #[test]
    fn rows_round_trip_and_damage_is_an_error() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        let row = vec![
            ScalarValue::from("u1"),
            ScalarValue::Int64(None),
            ScalarValue::Float64(Some(2.5)),
            ScalarValue::TimestampNanosecond(Some(7), None),
        ];
        let bytes = encode_row(&row).expect("encode");
        assert_eq!(decode_row(&schema, &bytes).expect("decode"), row);
        assert!(decode_row(&schema, &bytes[..bytes.len() - 1]).is_err());
        assert!(decode_row(&schema, &[bytes.as_slice(), &[0]].concat()).is_err());
        // One column alone, the others (text, NULL, fixed width) skipped.
        for (column, value) in row.iter().enumerate() {
            assert_eq!(&decode_row_column(&schema, &bytes, column).expect("column"), value);
        }
        assert!(decode_row_column(&schema, &bytes[..3], 3).is_err());
        assert!(decode_row_column(&schema, &bytes, 4).is_err());
        let other = vec![
            ScalarValue::from("u2"),
            ScalarValue::Int64(Some(-4)),
            ScalarValue::Float64(None),
            ScalarValue::TimestampNanosecond(Some(-9), None),
        ];
        let batch = rows_to_batch(&schema, &[row.clone(), other.clone()]).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        // The column-wise encoding is the row-wise one, and decoding many rows straight
        // into a batch gives the batch back.
        let encoded = encode_batch_rows(&batch).expect("encode batch");
        assert_eq!(encoded, vec![bytes, encode_row(&other).unwrap()]);
        // A block is the same rows, length-prefixed after their count, read back whole.
        let block = RowBlock::encode(&batch).expect("encode block");
        assert_eq!(block, RowBlock::from_rows(encoded.iter().map(Vec::as_slice)));
        assert_eq!(block.rows().collect::<Vec<_>>(), encoded.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let mut reader = ByteReader::new(block.as_bytes());
        assert_eq!(RowBlock::read(&mut reader).expect("read"), block);
        assert!(reader.is_done());
        let cut = &block.as_bytes()[..block.as_bytes().len() - 1];
        assert!(RowBlock::read(&mut ByteReader::new(cut)).is_err());
        let decoded = encoded_rows_to_batch(&schema, encoded.iter().map(Vec::as_slice)).expect("decode");
        assert_eq!(decoded, batch);
        assert!(encoded_rows_to_batch(&schema, std::iter::once(&encoded[0][..3])).is_err());
    }
}
