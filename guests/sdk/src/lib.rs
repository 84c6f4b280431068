//! Write a floe transform plugin as a trait over Arrow [`RecordBatch`]es.
//!
//! The host and the plugin exchange Arrow IPC bytes over the `floe:plugin` WIT
//! contract (`wit/transform.wit`); this crate hides that plumbing. A plugin
//! implements [`Plugin`] (batches in, batches out) and exports itself with
//! [`export_plugin!`], or implements [`RowFilter`] (a mask per batch) and
//! exports itself with [`export_filter!`]:
//!
//! ```ignore
//! use floe_sdk::prelude::*;
//!
//! struct Passthrough(SchemaRef);
//!
//! impl Plugin for Passthrough {
//!     type Args = serde_json::Value;
//!     const NAME: &str = "passthrough";
//!     const DESCRIPTION: &str = "Returns every batch unchanged.";
//!     const ARGS_SCHEMA: &str = r#"{"type": "object"}"#;
//!
//!     fn bind(input: SchemaRef, _args: Self::Args) -> Result<Self> {
//!         Ok(Passthrough(input))
//!     }
//!     fn output_schema(&self) -> SchemaRef {
//!         self.0.clone()
//!     }
//!     fn process(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
//!         Ok(Some(batch))
//!     }
//! }
//!
//! floe_sdk::export_plugin!(Passthrough);
//! ```

mod adapter;

pub use arrow_array;
pub use arrow_schema;
pub use serde;
pub use serde_json;

#[doc(hidden)]
pub use adapter::{Adapter, Filter, Transform};

pub use arrow_array::{BooleanArray, RecordBatch};
pub use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transform-plugin",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "floe_sdk::bindings",
    });
}

/// A plugin's error; the host reports it to the client with the plugin's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The arguments are wrong.
    InvalidArgs(String),
    /// The input schema cannot be handled (a missing column, a type not supported).
    UnsupportedSchema(String),
    /// Anything else.
    Failed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ArrowError> for Error {
    fn from(err: ArrowError) -> Self {
        Error::Failed(err.to_string())
    }
}

/// A transform over a stream of record batches, bound to one input schema and
/// one set of arguments (one instance per ticket). Export it with [`export_plugin!`].
pub trait Plugin: Sized + 'static {
    /// The JSON arguments, parsed with serde (unknown fields should be refused:
    /// use `#[serde(deny_unknown_fields)]`).
    type Args: serde::de::DeserializeOwned;

    const NAME: &str;
    const VERSION: &str = "0.1.0";
    const DESCRIPTION: &str;
    /// A JSON Schema for [`Plugin::Args`], shown by `host plugins inspect`.
    const ARGS_SCHEMA: &str;
    /// True when `process` keeps nothing from one batch to the next and `finish`
    /// returns `None`: the host may then swap in a fresh instance between batches.
    const STATELESS: bool = false;

    /// Check the arguments against the input schema and prepare to run. Called
    /// once per request.
    fn bind(input: SchemaRef, args: Self::Args) -> Result<Self>;

    /// The schema of every batch [`Plugin::process`] and [`Plugin::finish`] return.
    fn output_schema(&self) -> SchemaRef;

    /// The input columns this plugin reads, if not all: the host then scans only
    /// those where it can, and [`Plugin::process`] receives exactly these columns,
    /// in this order.
    fn input_columns(&self) -> Option<Vec<String>> {
        None
    }

    /// One batch of the input columns in; a batch out, or `None` to drop it.
    fn process(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>>;

    /// The input has ended: return whatever state is left.
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        Ok(None)
    }
}

/// A row filter: it says which rows to keep and the host does the rest. It sees
/// only the [`RowFilter::columns`] it reads, so only those cross into the guest
/// and only a mask comes back. Export it with [`export_filter!`].
pub trait RowFilter: Sized + 'static {
    /// The JSON arguments, parsed with serde.
    type Args: serde::de::DeserializeOwned;

    const NAME: &str;
    const VERSION: &str = "0.1.0";
    const DESCRIPTION: &str;
    const ARGS_SCHEMA: &str;
    /// True when `keep` depends only on the batch it is given (most filters do;
    /// one that drops duplicates does not): the host may then swap in a fresh
    /// instance between batches.
    const STATELESS: bool = false;

    /// Check the arguments against the input schema. Called once per request.
    fn bind(input: SchemaRef, args: Self::Args) -> Result<Self>;

    /// The columns the filter reads, if not all: [`RowFilter::keep`] then receives
    /// exactly these, in this order.
    fn columns(&self) -> Option<Vec<String>> {
        None
    }

    /// True for each row of `batch` to keep (null counts as false).
    fn keep(&mut self, batch: &RecordBatch) -> Result<BooleanArray>;
}

/// Export a [`Plugin`] as the component's `floe:plugin/transform` interface.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        type __FloePluginAdapter = $crate::Adapter<$crate::Transform<$plugin>>;
        $crate::bindings::export_bindings!(__FloePluginAdapter with_types_in $crate::bindings);
    };
}

/// Export a [`RowFilter`] as the component's `floe:plugin/transform` interface.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        type __FloePluginAdapter = $crate::Adapter<$crate::Filter<$filter>>;
        $crate::bindings::export_bindings!(__FloePluginAdapter with_types_in $crate::bindings);
    };
}

/// What most plugins need.
pub mod prelude {
    pub use crate::{
        BooleanArray, DataType, Error, Field, Plugin, RecordBatch, Result, RowFilter, Schema,
        SchemaRef, arrow_array, arrow_schema, serde, serde_json,
    };
    pub use serde::Deserialize;
}
