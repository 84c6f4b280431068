//! WebAssembly transform plugins: the warehouse's `registry`, the wasmtime
//! `runtime` and its `sandbox`, and the per-ticket `chain` that runs them.

mod chain;
pub mod registry;
mod runtime;
mod sandbox;

use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use arrow::datatypes::SchemaRef;

pub use chain::Chain;
pub use registry::{Description, Entry, Registry};

use crate::command::Transform;
use crate::config::PluginLimits;
use crate::error::{Context as _, Error, Result};
use crate::storage::Storage;
use runtime::{Runtime, TransformPluginPre};
use sandbox::GuestState;

/// The registry and the engine that runs what it holds.
pub struct Plugins {
    registry: Registry,
    runtime: Runtime,
    engine: String,
}

impl Plugins {
    /// The plugins registered in `warehouse`, precompiled into `home`.
    pub fn open(warehouse: &Storage, home: &Path, limits: PluginLimits) -> Result<Self> {
        let runtime = Runtime::new(limits)?;
        Ok(Self {
            registry: Registry::new(warehouse, home),
            engine: runtime.compatibility(),
            runtime,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Validate a component (it exports the floe world and `describe` works),
    /// precompile it and register it under `name`.
    pub async fn add(&self, name: &str, file: &Path, force: bool) -> Result<Entry> {
        registry::check_name(name)?;
        let replaced = self.registry.get(name).await.ok();
        if let Some(existing) = replaced.as_ref().filter(|_| !force) {
            return Err(Error::AlreadyExists(format!(
                "plugin '{name}' is already registered (sha256 {}, added {}): use --force to replace it",
                existing.sha256,
                existing.added_at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        let wasm = std::fs::read(file).context(format!("reading {}", file.display()))?;
        let (compiled, pre) = self.runtime.compile(&wasm)?;
        let described = self
            .runtime
            .instantiate(name, &pre, CancellationToken::new())?
            .describe()?;
        let args_schema = serde_json::from_str(&described.args_schema).map_err(|err| {
            Error::invalid(format!(
                "describe returned an args schema that is not JSON: {err}"
            ))
        })?;
        let entry = Entry {
            name: name.to_string(),
            sha256: sha256_hex(&wasm),
            size: wasm.len() as u64,
            added_at: chrono::Utc::now(),
            describe: Description {
                name: described.name,
                version: described.version,
                kind: runtime::kind_name(described.kind).to_string(),
                description: described.description,
                args_schema,
                stateless: described.stateless,
            },
        };
        self.registry
            .insert(&entry, &wasm, &compiled, &self.engine)
            .await?;
        if let Some(old) = replaced.filter(|old| old.sha256 != entry.sha256) {
            self.registry.drop_unused(&old.sha256).await?;
        }
        Ok(entry)
    }

    /// Each transform's plugin as registered now (read on every request, so a
    /// running host sees adds and removes at once), loaded once per process.
    async fn resolve(self: &Arc<Self>, transforms: &[Transform]) -> Result<Vec<Resolved>> {
        let mut resolved = Vec::with_capacity(transforms.len());
        for transform in transforms {
            let entry = self.registry.get(&transform.plugin).await?;
            let pre = match self.runtime.loaded(&entry.sha256) {
                Some(pre) => pre,
                None => self.load(&entry.sha256).await?,
            };
            resolved.push(Resolved { entry, pre });
        }
        Ok(resolved)
    }

    /// Load a component from this host's precompiled file, or compile it from the
    /// bytes in the registry when there is none or it is unusable.
    async fn load(self: &Arc<Self>, sha256: &str) -> Result<TransformPluginPre<GuestState>> {
        let compiled = self.registry.compiled_path(sha256, &self.engine);
        let load = |wasm: Option<Vec<u8>>| {
            let (plugins, sha256, compiled) = (self.clone(), sha256.to_string(), compiled.clone());
            crate::blocking::run(move || plugins.runtime.load(&sha256, &compiled, wasm))
        };
        if compiled.exists()
            && let Ok(pre) = load(None).await
        {
            return Ok(pre);
        }
        load(Some(self.registry.wasm(sha256).await?)).await
    }

    /// Bind each transform in order to the schema the previous one produces:
    /// one instance per plugin, bound once. Guests run synchronously: call this
    /// off the async executor.
    fn bind(
        &self,
        transforms: &[Transform],
        resolved: Vec<Resolved>,
        input: SchemaRef,
    ) -> Result<Chain> {
        let mut stages = Vec::with_capacity(transforms.len());
        let mut schema = input.clone();
        let cancel = CancellationToken::new();
        for (transform, Resolved { entry, pre }) in transforms.iter().zip(resolved) {
            let started = std::time::Instant::now();
            let guest = self
                .runtime
                .instantiate(&transform.plugin, &pre, cancel.clone())?;
            let instantiated = started.elapsed();
            let args = serde_json::Value::Object(transform.args.clone()).to_string();
            let role = if entry.describe.kind == runtime::kind_name(runtime::Kind::Filter) {
                chain::Role::Filter
            } else {
                chain::Role::Transform
            };
            let stage = chain::Stage::bind(guest, role, entry.describe.stateless, &schema, &args)?;
            tracing::debug!(
                plugin = %transform.plugin,
                instantiate_us = instantiated.as_micros() as u64,
                bind_us = (started.elapsed() - instantiated).as_micros() as u64,
                "plugin bound"
            );
            schema = stage.output_schema();
            stages.push(stage);
        }
        Ok(Chain::new(input, stages, cancel))
    }
}

/// A plugin of a chain, found in the registry and loaded.
struct Resolved {
    entry: Entry,
    pre: TransformPluginPre<GuestState>,
}

/// [`Plugins::bind`] on a blocking thread; an empty chain costs nothing.
pub async fn bind_chain(
    plugins: &Arc<Plugins>,
    transforms: &[Transform],
    input: SchemaRef,
) -> Result<Chain> {
    if transforms.is_empty() {
        return Ok(Chain::empty(input));
    }
    let resolved = plugins.resolve(transforms).await?;
    let (plugins, transforms) = (plugins.clone(), transforms.to_vec());
    crate::blocking::run(move || plugins.bind(&transforms, resolved, input)).await
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
