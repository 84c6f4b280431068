//! Schemas and batches as the Arrow IPC stream bytes that cross into guests.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;

pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>, ArrowError> {
    StreamWriter::try_new(Vec::new(), schema)?.into_inner()
}

pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let capacity = batch.get_array_memory_size() + 1024;
    let mut writer = StreamWriter::try_new(Vec::with_capacity(capacity), &batch.schema())?;
    writer.write(batch)?;
    writer.into_inner()
}

pub fn decode_schema(bytes: Vec<u8>) -> Result<SchemaRef, ArrowError> {
    let mut buffer = Buffer::from_vec(bytes);
    let mut decoder = StreamDecoder::new();
    decoder.decode(&mut buffer)?;
    decoder
        .schema()
        .ok_or_else(|| ArrowError::IpcError("no schema message".into()))
}

/// The one batch in a guest's output (zero-copy: it points into `bytes`).
pub fn decode_batch(bytes: Vec<u8>) -> Result<RecordBatch, ArrowError> {
    let mut buffer = Buffer::from_vec(bytes);
    let mut decoder = StreamDecoder::new();
    while !buffer.is_empty() {
        if let Some(batch) = decoder.decode(&mut buffer)? {
            return Ok(batch);
        }
    }
    Err(ArrowError::IpcError("no record batch message".into()))
}
