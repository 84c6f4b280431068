//! The wasmtime side: one engine per process, each component compiled once and
//! kept as an `InstancePre`, and a fresh sandboxed Store for every bound plugin.
//! Every call into a guest runs under a deadline (epoch interruption) and a
//! memory cap; whatever goes wrong becomes an error naming the plugin.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::sandbox::GuestState;
use crate::config::PluginLimits;
use crate::error::{Context as _, Error, Result};
use crate::metrics::{count, metrics};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transform-plugin",
});

pub use exports::floe::plugin::transform::Kind;
use exports::floe::plugin::transform::{Description, Error as GuestError};

/// A kind as the registry and `host plugins list` spell it.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Transform => "transform",
        Kind::Filter => "filter",
    }
}

/// The interface a plugin must export, as named in errors.
pub const INTERFACE: &str = "floe:plugin/transform@0.3.0";

/// How often the epoch advances: the granularity of the deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);

pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
    limits: PluginLimits,
    /// Ready-to-instantiate components by the sha256 of their bytes.
    loaded: Mutex<HashMap<String, TransformPluginPre<GuestState>>>,
}

impl Runtime {
    pub fn new(limits: PluginLimits) -> Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|err| wasm_error("starting wasmtime", err))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|err| wasm_error("linking WASI", err))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("floe-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the plugin deadline timer")?;
        Ok(Self {
            engine,
            linker,
            limits,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// Which precompiled artifacts this engine can load (wasmtime version and settings).
    pub fn compatibility(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Validate `wasm` as a floe plugin component; returns the precompiled form.
    pub fn compile(&self, wasm: &[u8]) -> Result<(Vec<u8>, TransformPluginPre<GuestState>)> {
        check_header(wasm)?;
        let component = Component::new(&self.engine, wasm)
            .map_err(|err| Error::invalid(format!("not a valid WebAssembly component: {err:#}")))?;
        let pre = self.prepare(&component)?;
        let compiled = component
            .serialize()
            .map_err(|err| wasm_error("precompiling the component", err))?;
        Ok((compiled, pre))
    }

    fn prepare(&self, component: &Component) -> Result<TransformPluginPre<GuestState>> {
        let pre = self.linker.instantiate_pre(component).map_err(|err| {
            Error::invalid(format!(
                "the component imports more than WASI offers a floe plugin: {err:#}"
            ))
        })?;
        TransformPluginPre::new(pre).map_err(|err| {
            let exports = component.component_type();
            let older = exports
                .exports(&self.engine)
                .map(|(name, _)| name.to_string())
                .find(|name| name.starts_with("floe:plugin/transform@"));
            match older {
                Some(older) => Error::invalid(format!(
                    "the component was built against {older}, an older plugin contract: \
                     rebuild it against the current floe-sdk, which exports {INTERFACE}"
                )),
                None => Error::invalid(format!(
                    "the component does not export {INTERFACE} (world transform-plugin in \
                     wit/transform.wit): {err:#}"
                )),
            }
        })
    }

    /// The component with this sha256, if this process has loaded it.
    pub fn loaded(&self, sha256: &str) -> Option<TransformPluginPre<GuestState>> {
        self.loaded
            .lock()
            .expect("plugin cache lock")
            .get(sha256)
            .cloned()
    }

    /// The component with these bytes' sha256, loaded once per process from its
    /// precompiled file, or compiled from `wasm` (and the precompiled file kept)
    /// when that is missing or stale.
    pub fn load(
        &self,
        sha256: &str,
        compiled: &Path,
        wasm: Option<Vec<u8>>,
    ) -> Result<TransformPluginPre<GuestState>> {
        if let Some(pre) = self.loaded(sha256) {
            return Ok(pre);
        }
        // Safety: the registry writes precompiled files itself, from this engine's
        // `Component::serialize`; wasmtime checks the version and settings.
        let pre = match unsafe { Component::deserialize_file(&self.engine, compiled) } {
            Ok(component) => self.prepare(&component)?,
            Err(err) => {
                tracing::info!(sha256, %err, "compiling the plugin again (no usable precompiled file)");
                let bytes = wasm.ok_or_else(|| {
                    Error::internal(format!(
                        "the precompiled plugin {} is unusable: {err}",
                        compiled.display()
                    ))
                })?;
                let (serialized, pre) = self.compile(&bytes)?;
                if let Err(err) = crate::storage::write_atomically(compiled, &serialized) {
                    tracing::warn!(%err, "could not keep the precompiled plugin");
                }
                pre
            }
        };
        self.loaded
            .lock()
            .expect("plugin cache lock")
            .insert(sha256.to_string(), pre.clone());
        Ok(pre)
    }

    /// A fresh instance of a plugin in its own sandboxed Store. Its calls stop at
    /// their deadline, or within a tick once `cancel` is cancelled.
    pub fn instantiate(
        &self,
        name: &str,
        pre: &TransformPluginPre<GuestState>,
        cancel: CancellationToken,
    ) -> Result<Guest> {
        let (store, plugin) = sandboxed(&self.engine, self.limits, name, pre, cancel)?;
        Ok(Guest {
            name: name.to_string(),
            pre: pre.clone(),
            limits: self.limits,
            store,
            plugin,
        })
    }
}

/// An instance of `pre` in a Store of its own, under `limits`.
fn sandboxed(
    engine: &Engine,
    limits: PluginLimits,
    name: &str,
    pre: &TransformPluginPre<GuestState>,
    cancel: CancellationToken,
) -> Result<(Store<GuestState>, TransformPlugin)> {
    let mut store = Store::new(engine, GuestState::new(limits, cancel));
    store.limiter(|state| &mut state.limits);
    // Every tick: is the call past its deadline, or its request gone?
    store.epoch_deadline_callback(|store| {
        let state = store.data();
        Ok(
            if state.cancel.is_cancelled() || Instant::now() >= state.call_ends {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            },
        )
    });
    start_call(&mut store);
    let plugin = pre.instantiate(&mut store).map_err(|err| {
        let printed = log_output(name, &mut store);
        call_error(name, "instantiate", &mut store, &printed, err)
    })?;
    Ok((store, plugin))
}

/// The next call's deadline starts now.
fn start_call(store: &mut Store<GuestState>) {
    let state = store.data_mut();
    state.call_ends = Instant::now() + state.deadline;
    state.limits.refused = None;
    store.set_epoch_deadline(1);
}

/// One instance of a plugin: the calls the contract offers, each under the deadline.
pub struct Guest {
    name: String,
    pre: TransformPluginPre<GuestState>,
    limits: PluginLimits,
    store: Store<GuestState>,
    plugin: TransformPlugin,
}

impl Guest {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether its largest linear memory has grown past three quarters of the cap.
    pub fn nears_memory_cap(&self) -> bool {
        let cap = &self.store.data().limits;
        cap.largest > cap.bytes / 4 * 3
    }

    /// Replace this instance with a fresh one of the same component, in a new
    /// Store (its memory starts small again). Resources bound so far are gone.
    pub fn renew(&mut self) -> Result<()> {
        let cancel = self.store.data().cancel.clone();
        let engine = self.store.engine().clone();
        let (store, plugin) = sandboxed(&engine, self.limits, &self.name, &self.pre, cancel)?;
        self.store = store;
        self.plugin = plugin;
        count(&metrics().plugin_renewals);
        Ok(())
    }

    pub fn describe(&mut self) -> Result<Description> {
        self.call("describe", |plugin, store| {
            plugin.floe_plugin_transform().call_describe(store).map(Ok)
        })
    }

    pub fn bind(&mut self, input_schema: &[u8], args: &str) -> Result<ResourceAny> {
        self.call("bind", |plugin, store| {
            plugin
                .floe_plugin_transform()
                .instance()
                .call_bind(store, input_schema, args)
        })
    }

    pub fn output_schema(&mut self, instance: ResourceAny) -> Result<Vec<u8>> {
        self.call("output-schema", |plugin, store| {
            plugin
                .floe_plugin_transform()
                .instance()
                .call_output_schema(store, instance)
                .map(Ok)
        })
    }

    pub fn input_columns(&mut self, instance: ResourceAny) -> Result<Option<Vec<String>>> {
        self.call("input-columns", |plugin, store| {
            plugin
                .floe_plugin_transform()
                .instance()
                .call_input_columns(store, instance)
                .map(Ok)
        })
    }

    pub fn process(&mut self, instance: ResourceAny, batch: &[u8]) -> Result<Option<Vec<u8>>> {
        self.call("process", |plugin, store| {
            plugin
                .floe_plugin_transform()
                .instance()
                .call_process(store, instance, batch)
        })
    }

    pub fn finish(&mut self, instance: ResourceAny) -> Result<Option<Vec<u8>>> {
        self.call("finish", |plugin, store| {
            plugin
                .floe_plugin_transform()
                .instance()
                .call_finish(store, instance)
        })
    }

    fn call<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(
            &TransformPlugin,
            &mut Store<GuestState>,
        ) -> wasmtime::Result<Result<R, GuestError>>,
    ) -> Result<R> {
        start_call(&mut self.store);
        count(&metrics().plugin_calls);
        let outcome = f(&self.plugin, &mut self.store);
        let printed = log_output(&self.name, &mut self.store);
        match outcome {
            Ok(Ok(value)) => Ok(value),
            // A runtime that catches its own out-of-memory (Python's MemoryError, a
            // JS engine's) reports a plain failure: it was the cap all the same.
            Ok(Err(
                GuestError::InvalidArgs(reported)
                | GuestError::UnsupportedSchema(reported)
                | GuestError::Failed(reported),
            )) if self.store.data().limits.refused.is_some() => {
                Err(memory_error(&self.name, what, &mut self.store, &reported))
            }
            Ok(Err(err)) => Err(guest_error(&self.name, what, err)),
            Err(err) => Err(call_error(&self.name, what, &mut self.store, &printed, err)),
        }
    }
}

/// Pass what the guest printed during a call to the host log, one line per event.
fn log_output(name: &str, store: &mut Store<GuestState>) -> String {
    let (text, dropped) = store.data().output.take();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(plugin = name, "guest: {line}");
    }
    if dropped > 0 {
        tracing::info!(
            plugin = name,
            "guest: … {dropped} more bytes of output dropped"
        );
    }
    text
}

fn guest_error(name: &str, what: &str, err: GuestError) -> Error {
    match err {
        GuestError::InvalidArgs(msg) => {
            Error::invalid(format!("plugin '{name}': invalid args: {msg}"))
        }
        GuestError::UnsupportedSchema(msg) => {
            Error::invalid(format!("plugin '{name}': unsupported input schema: {msg}"))
        }
        GuestError::Failed(msg) => {
            Error::internal(format!("plugin '{name}' failed in {what}: {msg}"))
        }
    }
}

/// A trap, a timeout or a memory failure, told apart and named.
fn call_error(
    name: &str,
    what: &str,
    store: &mut Store<GuestState>,
    printed: &str,
    err: wasmtime::Error,
) -> Error {
    let deadline = store.data().deadline;
    let interrupted = err.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
    if interrupted && store.data().cancel.is_cancelled() {
        return Error::Cancelled(format!(
            "plugin '{name}' was stopped in {what}: its request ended"
        ));
    }
    if interrupted {
        count(&metrics().plugin_timeouts);
        return Error::DeadlineExceeded(format!(
            "plugin '{name}' exceeded its deadline of {:?} in {what}",
            deadline
        ));
    }
    if store.data().limits.refused.is_some() {
        return memory_error(name, what, store, "");
    }
    count(&metrics().plugin_traps);
    tracing::debug!(plugin = name, error = ?err, "guest call failed");
    let cause = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => err
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    Error::internal(format!(
        "plugin '{name}' crashed in {what}: {cause}{}",
        panic_message(printed)
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    ))
}

/// The guest was refused memory at its cap during the call; `reported` is what it
/// said of it, if it survived to say anything.
fn memory_error(name: &str, what: &str, store: &mut Store<GuestState>, reported: &str) -> Error {
    let cap = &mut store.data_mut().limits;
    let desired = cap.refused.take().unwrap_or_default();
    count(&metrics().plugin_memory_refusals);
    let reported = match reported {
        "" => String::new(),
        text => format!("; it reported: {text}"),
    };
    Error::ResourceExhausted(format!(
        "plugin '{name}' exceeded its memory limit of {} MiB in {what} (it asked for {} MiB){reported}",
        cap.bytes >> 20,
        desired >> 20
    ))
}

/// What a Rust guest printed when it panicked: "panicked at <where>:" and the message.
fn panic_message(printed: &str) -> Option<String> {
    let mut lines = printed.lines();
    let at = lines.find(|l| l.contains("panicked at"))?;
    let at = at.split("panicked at").nth(1).unwrap_or(at).trim();
    Some(match lines.next() {
        Some(message) => format!("panicked at {at} {}", message.trim()),
        None => format!("panicked at {at}"),
    })
}

fn check_header(wasm: &[u8]) -> Result<()> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(Error::invalid(
            "a core WebAssembly module, not a component: build plugins for wasm32-wasip2 \
             (or wrap the module with `wasm-tools component new`)",
        )),
        Some([0, b'a', b's', b'm', ..]) => Ok(()),
        _ => Err(Error::invalid(
            "not a WebAssembly file (it does not start with \\0asm)",
        )),
    }
}

fn wasm_error(context: &str, err: wasmtime::Error) -> Error {
    Error::internal(format!("{context}: {err:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_components_get_past_the_header() {
        let msg = |bytes: &[u8]| check_header(bytes).unwrap_err().to_string();
        assert!(msg(b"hello world").contains("not a WebAssembly file"));
        assert!(msg(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn garbage_after_a_component_header_is_refused_by_wasmtime() {
        let runtime = Runtime::new(PluginLimits::default()).unwrap();
        let err = runtime.compile(b"\0asm\x0d\0\x01\0garbage").err().unwrap();
        assert!(
            err.to_string()
                .contains("not a valid WebAssembly component"),
            "{err}"
        );
    }

    #[test]
    fn a_rust_panic_message_is_found_in_guest_output() {
        let printed = "\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(printed).as_deref(),
            Some("panicked at src/lib.rs:3:5: boom")
        );
        assert_eq!(panic_message("just logging"), None);
    }
}
