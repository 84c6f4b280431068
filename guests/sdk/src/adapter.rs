//! The WIT exports, implemented once: [`Adapter`] over a [`Component`], which
//! is either a [`Plugin`] ([`Transform`]) or a [`RowFilter`] ([`Filter`]).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};

use crate::bindings::exports::floe::plugin::transform as wit;
use floe_wire::ipc;

use crate::{Error, Plugin, Result, RowFilter};

/// What the adapter needs of a plugin, whichever trait it implements.
pub trait Component: Sized + 'static {
    fn describe() -> wit::Description;
    fn bind(input: SchemaRef, args: &str) -> Result<Self>;
    fn output_schema(&self) -> SchemaRef;
    fn input_columns(&self) -> Option<Vec<String>>;
    fn process(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>>;
    fn finish(&mut self) -> Result<Option<RecordBatch>>;
}

fn parse_args<A: serde::de::DeserializeOwned>(args: &str) -> Result<A> {
    let args = if args.trim().is_empty() { "{}" } else { args };
    serde_json::from_str(args).map_err(|err| Error::InvalidArgs(err.to_string()))
}

/// A [`Plugin`] as a component.
pub struct Transform<P>(P);

impl<P: Plugin> Component for Transform<P> {
    fn describe() -> wit::Description {
        description(
            P::NAME,
            P::VERSION,
            wit::Kind::Transform,
            P::DESCRIPTION,
            P::ARGS_SCHEMA,
            P::STATELESS,
        )
    }
    fn bind(input: SchemaRef, args: &str) -> Result<Self> {
        P::bind(input, parse_args(args)?).map(Transform)
    }
    fn output_schema(&self) -> SchemaRef {
        self.0.output_schema()
    }
    fn input_columns(&self) -> Option<Vec<String>> {
        self.0.input_columns()
    }
    fn process(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        self.0.process(batch)
    }
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        self.0.finish()
    }
}

/// A [`RowFilter`] as a component: it answers each batch of the columns it
/// reads with a one-column boolean batch (the contract for filters).
pub struct Filter<F> {
    filter: F,
    input: SchemaRef,
    columns: Option<Vec<String>>,
}

impl<F: RowFilter> Component for Filter<F> {
    fn describe() -> wit::Description {
        description(
            F::NAME,
            F::VERSION,
            wit::Kind::Filter,
            F::DESCRIPTION,
            F::ARGS_SCHEMA,
            F::STATELESS,
        )
    }
    fn bind(input: SchemaRef, args: &str) -> Result<Self> {
        let filter = F::bind(input.clone(), parse_args(args)?)?;
        let columns = filter.columns();
        Ok(Filter {
            filter,
            input,
            columns,
        })
    }
    fn output_schema(&self) -> SchemaRef {
        self.input.clone()
    }
    fn input_columns(&self) -> Option<Vec<String>> {
        self.columns.clone()
    }
    fn process(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let keep: ArrayRef = Arc::new(self.filter.keep(&batch)?);
        let schema = Schema::new(vec![Field::new("keep", keep.data_type().clone(), true)]);
        Ok(Some(RecordBatch::try_new(Arc::new(schema), vec![keep])?))
    }
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        Ok(None)
    }
}

fn description(
    name: &str,
    version: &str,
    kind: wit::Kind,
    text: &str,
    args: &str,
    stateless: bool,
) -> wit::Description {
    wit::Description {
        name: name.to_string(),
        version: version.to_string(),
        kind,
        description: text.to_string(),
        args_schema: args.to_string(),
        stateless,
    }
}

/// The type the export macros export for a component `C`.
pub struct Adapter<C>(PhantomData<C>);

/// A bound component: one per ticket.
pub struct Bound<C> {
    component: RefCell<C>,
    output_schema: Vec<u8>,
}

impl<C: Component> wit::Guest for Adapter<C> {
    type Instance = Bound<C>;

    fn describe() -> wit::Description {
        C::describe()
    }
}

impl<C: Component> wit::GuestInstance for Bound<C> {
    fn bind(input_schema: Vec<u8>, args: String) -> Result<wit::Instance, wit::Error> {
        let input = ipc::decode_schema(input_schema)
            .map_err(|err| wit::Error::Failed(format!("the input schema is unreadable: {err}")))?;
        let component = C::bind(input, &args).map_err(into_wit)?;
        let output_schema = ipc::encode_schema(&component.output_schema()).map_err(failed)?;
        Ok(wit::Instance::new(Bound {
            component: RefCell::new(component),
            output_schema,
        }))
    }

    fn output_schema(&self) -> Vec<u8> {
        self.output_schema.clone()
    }

    fn input_columns(&self) -> Option<Vec<String>> {
        self.component.borrow().input_columns()
    }

    fn process(&self, batch: Vec<u8>) -> Result<Option<Vec<u8>>, wit::Error> {
        let batch = ipc::decode_batch(batch).map_err(failed)?;
        let output = self
            .component
            .borrow_mut()
            .process(batch)
            .map_err(into_wit)?;
        encode(output)
    }

    fn finish(&self) -> Result<Option<Vec<u8>>, wit::Error> {
        encode(self.component.borrow_mut().finish().map_err(into_wit)?)
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
