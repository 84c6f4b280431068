//! Flight data streams and record batches: opening an upload (its descriptor
//! and schema), its batches, and encoding batches for the client. DoPut,
//! DoExchange and DoGet share these.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::error::{Error, Result};

/// An upload opened: the command its first message's descriptor carries (read by
/// `command`), its schema, and the record batches that follow.
pub async fn open<S, C>(
    upload: S,
    command: impl FnOnce(&FlightDescriptor) -> Result<C>,
) -> Result<(
    C,
    SchemaRef,
    impl Stream<Item = Result<RecordBatch>> + Send + 'static,
)>
where
    S: Stream<Item = Result<FlightData, tonic::Status>> + Send + Unpin + 'static,
{
    let (descriptor, mut decoder) = descriptor(upload).await?;
    let command = command(&descriptor)?;
    let schema = schema(&mut decoder).await?;
    Ok((command, schema, batches(decoder)))
}

/// The descriptor the first message carries, and a decoder over the whole stream.
async fn descriptor<S>(mut upload: S) -> Result<(FlightDescriptor, FlightDataDecoder)>
where
    S: Stream<Item = Result<FlightData, tonic::Status>> + Send + Unpin + 'static,
{
    let first = upload
        .next()
        .await
        .ok_or_else(|| Error::invalid("the stream is empty"))?
        .map_err(Error::from)?;
    let descriptor = first
        .flight_descriptor
        .clone()
        .ok_or_else(|| Error::invalid("the stream's first message carries no FlightDescriptor"))?;
    // DoExchange clients may send the descriptor alone, before the schema.
    let head = (!first.data_header.is_empty()).then_some(Ok(first));
    let messages = futures::stream::iter(head)
        .chain(upload)
        .map_err(|status| FlightError::Tonic(Box::new(status)));
    Ok((descriptor, FlightDataDecoder::new(messages)))
}

/// The schema message that opens a Flight data stream.
async fn schema(decoder: &mut FlightDataDecoder) -> Result<SchemaRef> {
    loop {
        match decoder.next().await {
            Some(Ok(data)) => {
                if let DecodedPayload::Schema(schema) = data.payload {
                    return Ok(schema);
                }
            }
            Some(Err(err)) => return Err(upload_error(err)),
            None => return Err(Error::invalid("the stream ended before its schema")),
        }
    }
}

/// The record batches that follow the schema.
fn batches(decoder: FlightDataDecoder) -> impl Stream<Item = Result<RecordBatch>> + Send + 'static {
    decoder.filter_map(|data| async move {
        match data {
            Err(err) => Some(Err(upload_error(err))),
            Ok(data) => match data.payload {
                DecodedPayload::RecordBatch(batch) => Some(Ok(batch)),
                DecodedPayload::Schema(_) => Some(Err(Error::invalid(
                    "the stream changed its schema mid-stream",
                ))),
                DecodedPayload::None => None,
            },
        }
    })
}

fn upload_error(err: FlightError) -> Error {
    match err {
        FlightError::Tonic(status) => {
            Error::Cancelled(format!("the upload was interrupted: {}", status.message()))
        }
        other => Error::invalid(format!("the upload is not a valid Arrow stream: {other}")),
    }
}

/// Batches as Flight data with `schema` (sent first, even when no batch follows).
pub fn encode<S>(
    schema: SchemaRef,
    batches: S,
) -> BoxStream<'static, Result<FlightData, tonic::Status>>
where
    S: Stream<Item = Result<RecordBatch>> + Send + 'static,
{
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches.map_err(|err| FlightError::Tonic(Box::new(tonic::Status::from(err)))))
        .map_err(tonic::Status::from)
        .boxed()
}
