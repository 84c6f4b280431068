//! Arrow IPC stream bytes <-> schemas and batches: a schema message, then (for a
//! batch) one record batch message.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, Schema, SchemaRef};

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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int32Array;
    use arrow_schema::{DataType, Field};
    use std::sync::Arc;

    #[test]
    fn batches_and_schemas_round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(vec![1, 2]))])
                .unwrap();
        assert_eq!(
            decode_schema(encode_schema(&schema).unwrap()).unwrap(),
            schema
        );
        assert_eq!(decode_batch(encode_batch(&batch).unwrap()).unwrap(), batch);
        assert!(decode_batch(encode_schema(&schema).unwrap()).is_err());
    }
}
