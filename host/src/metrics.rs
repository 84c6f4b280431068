//! The host's counters, in Prometheus' text format. One registry per process
//! ([`metrics()`]), as the `metrics` facade crates do, so the engines and the plugin
//! runtime count what happens where it happens without threading a handle through.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Default)]
pub struct Metrics {
    /// (rpc, code) -> count.
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// rpc -> (bucket counts, sum of seconds, count).
    latency: Mutex<BTreeMap<&'static str, (Vec<u64>, f64, u64)>>,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub commit_retries: AtomicU64,
    pub compactions: AtomicU64,
    pub plugin_calls: AtomicU64,
    pub plugin_timeouts: AtomicU64,
    pub plugin_traps: AtomicU64,
    pub plugin_memory_refusals: AtomicU64,
    pub plugin_renewals: AtomicU64,
    pub active_uploads: AtomicI64,
    pub plan_cache_hits: AtomicU64,
    pub plan_cache_misses: AtomicU64,
    pub scan_files_skipped: AtomicU64,
    pub plan_cache_tables: AtomicU64,
    pub plan_cache_bytes: AtomicU64,
    pub direct_reads: AtomicU64,
    pub footer_cache_files: AtomicU64,
    pub footer_cache_bytes: AtomicU64,
    pub live_hosts: AtomicU64,
    pub split_reads: AtomicU64,
}

pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

/// Add one to a counter.
pub fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// One finished RPC.
    pub fn request(&self, rpc: &'static str, code: tonic::Code, took: Duration) {
        let code = code_name(code);
        *self
            .requests
            .lock()
            .expect("metrics")
            .entry((rpc, code))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut latency = self.latency.lock().expect("metrics");
        let (buckets, sum, count) = latency
            .entry(rpc)
            .or_insert_with(|| (vec![0; BUCKETS.len()], 0.0, 0));
        for (bucket, le) in buckets.iter_mut().zip(BUCKETS) {
            if secs <= *le {
                *bucket += 1;
            }
        }
        *sum += secs;
        *count += 1;
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "floe_requests_total",
            "counter",
            "Flight RPCs by method and gRPC status code.",
        );
        for ((rpc, code), n) in self.requests.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "floe_requests_total{{rpc=\"{rpc}\",code=\"{code}\"}} {n}"
            );
        }
        head(
            &mut out,
            "floe_request_duration_seconds",
            "histogram",
            "Flight RPC latency, to the end of the response stream.",
        );
        for (rpc, (buckets, sum, count)) in self.latency.lock().expect("metrics").iter() {
            for (n, le) in buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "floe_request_duration_seconds_bucket{{rpc=\"{rpc}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "floe_request_duration_seconds_bucket{{rpc=\"{rpc}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "floe_request_duration_seconds_sum{{rpc=\"{rpc}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "floe_request_duration_seconds_count{{rpc=\"{rpc}\"}} {count}"
            );
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        head(
            &mut out,
            "floe_rows_total",
            "counter",
            "Rows received (in) and sent (out).",
        );
        let _ = writeln!(
            out,
            "floe_rows_total{{direction=\"in\"}} {}",
            load(&self.rows_in)
        );
        let _ = writeln!(
            out,
            "floe_rows_total{{direction=\"out\"}} {}",
            load(&self.rows_out)
        );
        head(
            &mut out,
            "floe_bytes_total",
            "counter",
            "Arrow IPC bytes received (in) and sent (out).",
        );
        let _ = writeln!(
            out,
            "floe_bytes_total{{direction=\"in\"}} {}",
            load(&self.bytes_in)
        );
        let _ = writeln!(
            out,
            "floe_bytes_total{{direction=\"out\"}} {}",
            load(&self.bytes_out)
        );
        for (name, counter, help) in [
            (
                "floe_commit_retries_total",
                &self.commit_retries,
                "Iceberg commits retried after a conflict.",
            ),
            (
                "floe_compactions_total",
                &self.compactions,
                "Iceberg compactions committed.",
            ),
            (
                "floe_plugin_calls_total",
                &self.plugin_calls,
                "Calls into WASM plugins.",
            ),
            (
                "floe_plugin_timeouts_total",
                &self.plugin_timeouts,
                "Plugin calls stopped at their deadline.",
            ),
            (
                "floe_plugin_traps_total",
                &self.plugin_traps,
                "Plugin calls that trapped.",
            ),
            (
                "floe_plugin_memory_refusals_total",
                &self.plugin_memory_refusals,
                "Plugin memory growths refused at the cap.",
            ),
            (
                "floe_plugin_renewals_total",
                &self.plugin_renewals,
                "Stateless plugin instances replaced by fresh ones near their memory cap.",
            ),
            (
                "floe_plan_cache_hits_total",
                &self.plan_cache_hits,
                "Table plans (metadata, snapshot files) found in the plan cache.",
            ),
            (
                "floe_plan_cache_misses_total",
                &self.plan_cache_misses,
                "Table plans read from storage (new tables, new commits, evictions).",
            ),
            (
                "floe_scan_files_skipped_total",
                &self.scan_files_skipped,
                "Data files table reads left out because their column bounds rule out the filter.",
            ),
            (
                "floe_direct_reads_total",
                &self.direct_reads,
                "Table reads the host served from the Parquet files itself, without DuckDB.",
            ),
            (
                "floe_split_reads_total",
                &self.split_reads,
                "Table reads answered with several endpoints, one per live host at most.",
            ),
        ] {
            head(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", load(counter));
        }
        for (name, gauge, help) in [
            (
                "floe_plan_cache_tables",
                &self.plan_cache_tables,
                "Tables in the plan cache.",
            ),
            (
                "floe_plan_cache_bytes",
                &self.plan_cache_bytes,
                "The plan cache's approximate size.",
            ),
            (
                "floe_footer_cache_files",
                &self.footer_cache_files,
                "Parquet footers kept for direct reads.",
            ),
            (
                "floe_footer_cache_bytes",
                &self.footer_cache_bytes,
                "The footer cache's approximate size.",
            ),
            (
                "floe_live_hosts",
                &self.live_hosts,
                "Hosts serving the warehouse, as of this host's last heartbeat.",
            ),
        ] {
            head(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", load(gauge));
        }
        head(
            &mut out,
            "floe_active_uploads",
            "gauge",
            "Uploads in progress.",
        );
        let _ = writeln!(
            out,
            "floe_active_uploads {}",
            self.active_uploads.load(Ordering::Relaxed)
        );
        out
    }
}

/// Serve [`Metrics::render`] over HTTP on `addr` (any path; Prometheus scrapes
/// `/metrics`) until the process ends.
pub async fn serve(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot serve metrics on {addr}: {err}"))?;
    tracing::info!(address = %listener.local_addr()?, "metrics at http://{}/metrics", listener.local_addr()?);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                // Out of descriptors, say: back off rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            tokio::spawn(async move {
                let answer = hyper::service::service_fn(|_request| async {
                    let body = Full::new(Bytes::from(metrics().render()));
                    hyper::Response::builder()
                        .header("content-type", "text/plain; version=0.0.4")
                        .body(body)
                });
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, answer)
                    .await;
            });
        }
    });
    Ok(())
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
