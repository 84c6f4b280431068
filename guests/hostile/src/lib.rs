//! `hostile`: a plugin that misbehaves on purpose, for the host's sandbox tests.
//! It implements the WIT interface directly (not through `floe_sdk::Plugin`) so
//! that it can also break the contract itself.
//!
//! Args: `{"mode": "loop" | "alloc" | "trap" | "panic" | "bad-ipc" | "wrong-schema" | "print" | "leak" | "pass"}`;
//! the misbehaviour happens in `process`, so binding (and GetFlightInfo) works.
//! It declares itself stateless, so `leak` (a pass-through that never frees a copy
//! of each batch, as some guest runtimes do) shows the host renewing it.

use std::sync::Arc;

use floe_sdk::arrow_schema::Schema;
use floe_sdk::bindings::exports::floe::plugin::transform::{
    Description, Error, Guest, GuestInstance, Instance, Kind,
};

struct Hostile;

struct Bound {
    mode: String,
    input_schema: Vec<u8>,
}

impl Guest for Hostile {
    type Instance = Bound;

    fn describe() -> Description {
        Description {
            name: "hostile".into(),
            version: "0.1.0".into(),
            kind: Kind::Transform,
            description: "Misbehaves on purpose (for tests): loops, allocates, traps, panics."
                .into(),
            args_schema: r#"{"type": "object", "properties": {"mode": {"type": "string"}}}"#.into(),
            stateless: true,
        }
    }
}

impl GuestInstance for Bound {
    fn bind(input_schema: Vec<u8>, args: String) -> Result<Instance, Error> {
        let args: floe_sdk::serde_json::Value =
            floe_sdk::serde_json::from_str(&args).map_err(|e| Error::InvalidArgs(e.to_string()))?;
        let mode = args["mode"].as_str().unwrap_or("pass").to_string();
        Ok(Instance::new(Bound { mode, input_schema }))
    }

    fn output_schema(&self) -> Vec<u8> {
        if self.mode == "wrong-schema" {
            let empty = Arc::new(Schema::empty());
            return arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &empty)
                .and_then(|w| w.into_inner())
                .expect("an empty schema encodes");
        }
        self.input_schema.clone()
    }

    fn input_columns(&self) -> Option<Vec<String>> {
        None
    }

    fn process(&self, batch: Vec<u8>) -> Result<Option<Vec<u8>>, Error> {
        match self.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                // 2 GiB in all (one wasm32 allocation cannot exceed 2 GiB - 1).
                let chunks: Vec<Vec<u8>> = (0..8)
                    .map(|_| std::hint::black_box(vec![1u8; 256 << 20]))
                    .collect();
                Err(Error::Failed(format!("allocated {} chunks", chunks.len())))
            }
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "bad-ipc" => Ok(Some(b"this is not Arrow IPC".to_vec())),
            "print" => {
                for i in 0..100_000 {
                    println!("line {i} of a very chatty plugin");
                }
                Ok(Some(batch))
            }
            "leak" => {
                std::hint::black_box(batch.clone().leak());
                Ok(Some(batch))
            }
            // Declares no columns, returns the input's.
            "wrong-schema" | "pass" => Ok(Some(batch)),
            other => Err(Error::InvalidArgs(format!("unknown mode {other:?}"))),
        }
    }

    fn finish(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(None)
    }
}

floe_sdk::bindings::export_bindings!(Hostile with_types_in floe_sdk::bindings);
