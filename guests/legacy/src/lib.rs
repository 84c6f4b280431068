//! `legacy`: a plugin built against the old contract, `floe:plugin@0.1.0`, for the
//! host's test that `host plugins add` refuses it with a message to rebuild. (Under
//! 0.1.0 the host bound a plugin again to a narrower schema; 0.2.0 binds once and
//! sends `process` only the input columns.)

wit_bindgen::generate!({
    inline: r#"
        package floe:plugin@0.1.0;

        interface transform {
            enum kind { transform, filter }
            record description {
                name: string, version: string, kind: kind, description: string, args-schema: string,
            }
            variant error { invalid-args(string), unsupported-schema(string), failed(string) }
            describe: func() -> description;
            resource instance {
                bind: static func(input-schema: list<u8>, args: string) -> result<instance, error>;
                output-schema: func() -> list<u8>;
                input-columns: func() -> option<list<string>>;
                process: func(batch: list<u8>) -> result<option<list<u8>>, error>;
                finish: func() -> result<option<list<u8>>, error>;
            }
        }

        world transform-plugin { export transform; }
    "#,
});

use exports::floe::plugin::transform::{Description, Error, Guest, GuestInstance, Instance, Kind};

struct Legacy;

impl Guest for Legacy {
    type Instance = Passthrough;

    fn describe() -> Description {
        Description {
            name: "legacy".into(),
            version: "0.1.0".into(),
            kind: Kind::Transform,
            description: "Passes batches through, built against floe:plugin@0.1.0.".into(),
            args_schema: "{}".into(),
        }
    }
}

struct Passthrough(Vec<u8>);

impl GuestInstance for Passthrough {
    fn bind(input_schema: Vec<u8>, _args: String) -> Result<Instance, Error> {
        Ok(Instance::new(Passthrough(input_schema)))
    }
    fn output_schema(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn input_columns(&self) -> Option<Vec<String>> {
        None
    }
    fn process(&self, batch: Vec<u8>) -> Result<Option<Vec<u8>>, Error> {
        Ok(Some(batch))
    }
    fn finish(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(None)
    }
}

export!(Legacy);
