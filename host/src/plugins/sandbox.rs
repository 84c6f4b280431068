//! What a guest gets from the host: nothing but a clock, randomness and a
//! stdout/stderr that land in the host's log. No preopened directories, no
//! environment, no arguments, no network.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::PluginLimits;

/// How much of a guest's output is kept per call; the rest is dropped.
const OUTPUT_LIMIT: usize = 4 * 1024;

/// The state of one guest's Store.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: MemoryCap,
    pub deadline: Duration,
    /// When the call running now must end.
    pub call_ends: Instant,
    /// Cancelled when the request the guest serves has ended.
    pub cancel: CancellationToken,
    pub output: GuestOutput,
}

impl GuestState {
    pub fn new(limits: PluginLimits, cancel: CancellationToken) -> Self {
        let output = GuestOutput::default();
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: MemoryCap::new(limits.memory_bytes),
            deadline: limits.deadline,
            call_ends: Instant::now() + limits.deadline,
            cancel,
            output,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// `StoreLimits` that remembers when it refused to grow memory, so a guest that
/// dies of it is reported as out of memory rather than as a plain trap, and how
/// large a memory has grown (the cap applies to each linear memory).
pub struct MemoryCap {
    limits: StoreLimits,
    pub bytes: usize,
    pub refused: Option<usize>,
    pub largest: usize,
}

impl MemoryCap {
    fn new(bytes: usize) -> Self {
        Self {
            limits: StoreLimitsBuilder::new().memory_size(bytes).build(),
            bytes,
            refused: None,
            largest: 0,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.largest = self.largest.max(desired);
        } else {
            self.refused = Some(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

/// A guest's stdout and stderr: kept up to a limit, then silently dropped (a
/// chatty guest must not fail because the host stopped listening).
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: usize,
}

impl GuestOutput {
    /// What the guest wrote since the last call, as text, and how many bytes
    /// beyond the limit were dropped.
    pub fn take(&self) -> (String, usize) {
        let captured = std::mem::take(&mut *self.0.lock().expect("guest output lock"));
        (
            String::from_utf8_lossy(&captured.kept).into_owned(),
            captured.dropped,
        )
    }

    fn push(&self, bytes: &[u8]) {
        let mut captured = self.0.lock().expect("guest output lock");
        let kept = bytes
            .len()
            .min(OUTPUT_LIMIT.saturating_sub(captured.kept.len()));
        captured.kept.extend_from_slice(&bytes[..kept]);
        captured.dropped += bytes.len() - kept;
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
