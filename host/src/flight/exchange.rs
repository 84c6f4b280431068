//! DoExchange: the client's batches in, through a transform chain, and back out.

use std::sync::Arc;

use arrow_flight::FlightData;
use arrow_flight::flight_descriptor::DescriptorType;
use futures::Stream;
use futures::stream::BoxStream;

use super::stream;
use crate::command::{ExchangeCommand, parse};
use crate::error::{Error, Result};
use crate::plugins::{Plugins, bind_chain};

pub async fn do_exchange<S>(
    plugins: Arc<Plugins>,
    upload: S,
) -> Result<BoxStream<'static, Result<FlightData, tonic::Status>>>
where
    S: Stream<Item = Result<FlightData, tonic::Status>> + Send + Unpin + 'static,
{
    let (descriptor, mut decoder) = stream::open(upload).await?;
    if descriptor.r#type() != DescriptorType::Cmd {
        return Err(Error::invalid(
            "DoExchange takes a command descriptor: {\"transforms\": [{\"plugin\": ..., \"args\": {...}}]}",
        ));
    }
    let command: ExchangeCommand = parse(&descriptor.cmd, "exchange command")?;
    let schema = stream::schema(&mut decoder).await?;
    let chain = bind_chain(&plugins, &command.transforms, schema).await?;
    Ok(stream::encode(chain, stream::batches(decoder)))
}
