//! Arrow IPC stream bytes <-> schemas and batches, as they cross the boundary.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, Schema, SchemaRef};

pub fn decode_schema(bytes: Vec<u8>) -> Result<SchemaRef, ArrowError> {
    let mut buffer = Buffer::from_vec(bytes);
    let mut decoder = StreamDecoder::new();
    decoder.decode(&mut buffer)?;
    decoder
        .schema()
        .ok_or_else(|| ArrowError::IpcError("the bytes hold no schema message".into()))
}

/// The one batch of an IPC stream (zero-copy: the batch's buffers point into `bytes`).
pub fn decode_batch(bytes: Vec<u8>) -> Result<RecordBatch, ArrowError> {
    let mut buffer = Buffer::from_vec(bytes);
    let mut decoder = StreamDecoder::new();
    while !buffer.is_empty() {
        if let Some(batch) = decoder.decode(&mut buffer)? {
            return Ok(batch);
        }
    }
    Err(ArrowError::IpcError(
        "the bytes hold no record batch".into(),
    ))
}

pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>, ArrowError> {
    StreamWriter::try_new(Vec::new(), schema)?.into_inner()
}

pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let capacity = batch.get_array_memory_size() + 1024;
    let mut writer = StreamWriter::try_new(Vec::with_capacity(capacity), &batch.schema())?;
    writer.write(batch)?;
    writer.into_inner()
}
