//! The WIT exports, implemented once for every [`Plugin`].

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::exports::floe::plugin::transform as wit;
use crate::{Error, Kind, Plugin, RecordBatch, ipc};

/// The type [`export_plugin!`](crate::export_plugin) exports for a plugin `P`.
pub struct Adapter<P>(PhantomData<P>);

/// A bound plugin: one per ticket.
pub struct Bound<P> {
    plugin: RefCell<P>,
    output_schema: Vec<u8>,
}

impl<P: Plugin> wit::Guest for Adapter<P> {
    type Instance = Bound<P>;

    fn describe() -> wit::Description {
        wit::Description {
            name: P::NAME.to_string(),
            version: P::VERSION.to_string(),
            kind: match P::KIND {
                Kind::Transform => wit::Kind::Transform,
                Kind::Filter => wit::Kind::Filter,
            },
            description: P::DESCRIPTION.to_string(),
            args_schema: P::ARGS_SCHEMA.to_string(),
        }
    }
}

impl<P: Plugin> wit::GuestInstance for Bound<P> {
    fn bind(input_schema: Vec<u8>, args: String) -> Result<wit::Instance, wit::Error> {
        let input = ipc::decode_schema(input_schema)
            .map_err(|err| wit::Error::Failed(format!("the input schema is unreadable: {err}")))?;
        let args: P::Args = serde_json::from_str(if args.trim().is_empty() { "{}" } else { &args })
            .map_err(|err| wit::Error::InvalidArgs(err.to_string()))?;
        let plugin = P::bind(input, args).map_err(into_wit)?;
        let output_schema = ipc::encode_schema(&plugin.output_schema()).map_err(failed)?;
        Ok(wit::Instance::new(Bound {
            plugin: RefCell::new(plugin),
            output_schema,
        }))
    }

    fn output_schema(&self) -> Vec<u8> {
        self.output_schema.clone()
    }

    fn input_columns(&self) -> Option<Vec<String>> {
        self.plugin.borrow().input_columns()
    }

    fn process(&self, batch: Vec<u8>) -> Result<Option<Vec<u8>>, wit::Error> {
        let batch = ipc::decode_batch(batch).map_err(failed)?;
        let output = self.plugin.borrow_mut().process(batch).map_err(into_wit)?;
        encode(output)
    }

    fn finish(&self) -> Result<Option<Vec<u8>>, wit::Error> {
        encode(self.plugin.borrow_mut().finish().map_err(into_wit)?)
    }
}

fn encode(batch: Option<RecordBatch>) -> Result<Option<Vec<u8>>, wit::Error> {
    batch
        .map(|batch| ipc::encode_batch(&batch).map_err(failed))
        .transpose()
}

fn failed(err: arrow_schema::ArrowError) -> wit::Error {
    wit::Error::Failed(err.to_string())
}

fn into_wit(err: Error) -> wit::Error {
    match err {
        Error::InvalidArgs(msg) => wit::Error::InvalidArgs(msg),
        Error::UnsupportedSchema(msg) => wit::Error::UnsupportedSchema(msg),
        Error::Failed(msg) => wit::Error::Failed(msg),
    }
}
