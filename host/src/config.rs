//! Settings, each declared once: a field of one of the families below (`Warehouse`,
//! `DuckSettings` for the engine, `SandboxSettings`, `ServerSettings`). Every setting
//! is a flag (`--port`), an environment variable (`FLOE_PORT`) and a key of the TOML
//! file named by `--config` (`port = 8816`). A flag beats the environment, which beats
//! the file, which beats the default. The file's values become the flags' defaults
//! ([`with_file_defaults`]), so all three go through the same parsing and checks.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

/// The warehouse every command works on, and the optional settings file.
#[derive(Debug, Clone, Args)]
pub struct Warehouse {
    /// The warehouse: a local directory (created if missing) or a prefix of an
    /// S3-compatible bucket (s3://bucket/prefix), whose credentials come from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).
    #[arg(
        short,
        long,
        value_name = "DIR|URL",
        env = "FLOE_WAREHOUSE",
        default_value = "warehouse"
    )]
    pub warehouse: String,
    /// The SQL catalog: a PostgreSQL database many hosts share
    /// (postgres://user:password@host:port/db) or a SQLite file
    /// [default: catalog.db in the warehouse; required for an s3:// warehouse].
    #[arg(long, value_name = "URI", env = "FLOE_CATALOG")]
    pub catalog: Option<String>,
    /// The S3 endpoint of a store that is not AWS (MinIO, R2, …), e.g.
    /// http://127.0.0.1:9000 [default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS].
    #[arg(long, value_name = "URL", env = "FLOE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The S3 region [default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1].
    #[arg(long, value_name = "REGION", env = "FLOE_S3_REGION")]
    pub s3_region: Option<String>,
    /// Path-style S3 URLs (endpoint/bucket/key) [default: true with an endpoint, as
    /// most S3-compatible stores need; false on AWS].
    #[arg(long, value_name = "BOOL", env = "FLOE_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// For an s3:// warehouse, the local directory this host keeps its own files in
    /// (plugins, principals, DuckDB's spill) [default: ~/.cache/floe/<bucket>/<prefix>].
    #[arg(long, value_name = "DIR", env = "FLOE_HOST_DIR")]
    pub host_dir: Option<PathBuf>,
    /// A TOML file of settings: any of the keys named by the flags here, with `_` for
    /// `-` (e.g. `port = 8817`). Flags and environment variables override it.
    #[arg(long, value_name = "FILE", env = "FLOE_CONFIG")]
    pub config: Option<PathBuf>,
}

impl Warehouse {
    /// Whether the warehouse is on object storage.
    pub fn is_remote(&self) -> bool {
        self.warehouse.starts_with("s3://")
    }

    /// The host's local directory, created if missing, as an absolute path: the
    /// warehouse itself when it is local.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        if !self.is_remote() && self.warehouse.contains("://") {
            anyhow::bail!(
                "warehouse {}: use a local directory or an s3:// URL",
                self.warehouse
            );
        }
        let dir = match &self.host_dir {
            _ if !self.is_remote() => PathBuf::from(&self.warehouse),
            Some(dir) => dir.clone(),
            None => {
                let home = std::env::var_os("HOME").context("HOME is not set: pass --host-dir")?;
                let place = self
                    .warehouse
                    .trim_start_matches("s3://")
                    .trim_end_matches('/');
                PathBuf::from(home).join(".cache/floe").join(place)
            }
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the directory {}", dir.display()))?;
        dir.canonicalize()
            .with_context(|| format!("resolving the directory {}", dir.display()))
    }
}

/// Which path DuckDB reads Iceberg tables by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ReaderChoice {
    /// The iceberg extension when it loads, else read_parquet.
    #[default]
    Auto,
    /// Always DuckDB's iceberg extension (`iceberg_scan`).
    Extension,
    /// read_parquet over the data files iceberg-rust plans.
    #[value(alias = "read_parquet")]
    ReadParquet,
}

/// How the engine reads the warehouse.
#[derive(Debug, Clone, Args)]
pub struct DuckSettings {
    /// DuckDB's extension directory [default: DuckDB's own, ~/.duckdb/extensions].
    #[arg(long, value_name = "DIR", env = "FLOE_EXTENSION_DIR")]
    pub extension_dir: Option<PathBuf>,
    /// How DuckDB reads Iceberg tables.
    #[arg(
        long,
        value_enum,
        value_name = "READER",
        env = "FLOE_ICEBERG_READER",
        default_value_t
    )]
    pub iceberg_reader: ReaderChoice,
    /// DuckDB's memory limit: a share of the machine's RAM ("50%") or a size
    /// ("4GiB", "512MB"). Past it, DuckDB spills to `duckdb.tmp` in the warehouse.
    #[arg(long, value_name = "SIZE", env = "FLOE_DUCKDB_MEMORY_LIMIT", default_value = "50%",
          value_parser = MemoryLimit::parse)]
    pub duckdb_memory_limit: MemoryLimit,
    /// Tables whose plans (metadata and recent snapshots' data files) are kept in
    /// memory, so small reads skip re-reading them; 0 turns the plan cache off
    /// (every read plans from the catalog and reads through `iceberg_scan`).
    #[arg(
        long,
        value_name = "N",
        env = "FLOE_PLAN_CACHE_TABLES",
        default_value_t = 1024
    )]
    pub plan_cache_tables: usize,
    /// The plan cache's memory bound, in MiB (the least recently used tables go first).
    #[arg(
        long,
        value_name = "MIB",
        env = "FLOE_PLAN_CACHE_MIB",
        default_value_t = 256
    )]
    pub plan_cache_mib: usize,
    /// Serve small Iceberg table reads without DuckDB: the host reads the Parquet
    /// files itself (row groups and pages pruned by their statistics, the filter
    /// applied while decoding) when that returns exactly DuckDB's result. `false`
    /// sends every read to DuckDB.
    #[arg(long, value_name = "BOOL", env = "FLOE_DIRECT_READS", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub direct_reads: bool,
    /// The memory bound, in MiB, of the Parquet footers (with page indexes) kept
    /// for direct reads (the least recently used go first).
    #[arg(
        long,
        value_name = "MIB",
        env = "FLOE_FOOTER_CACHE_MIB",
        default_value_t = 64
    )]
    pub footer_cache_mib: usize,
    /// The threads DuckDB runs a query on [default: the machine's cores].
    #[arg(long, value_name = "N", env = "FLOE_DUCKDB_THREADS",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub duckdb_threads: Option<u64>,
}

impl DuckSettings {
    pub fn threads(&self) -> u64 {
        self.duckdb_threads.unwrap_or_else(|| cores() as u64)
    }
}

/// The machine's cores (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A memory size, absolute or as a share of the machine's RAM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    Bytes(u64),
    Percent(f64),
}

impl MemoryLimit {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            return match percent.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(Self::Percent(p)),
                _ => Err(format!(
                    "{text:?} is not a share of RAM between 0% and 100%"
                )),
            };
        }
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown unit {other:?}: use B, KB, MB, GB, KiB, MiB, GiB or %"
                ));
            }
        };
        match number.parse::<f64>() {
            Ok(n) if n >= 1.0 => Ok(Self::Bytes((n * scale as f64) as u64)),
            _ => Err(format!("{text:?} is not a memory size such as 4GiB or 50%")),
        }
    }

    /// The limit in bytes on this machine.
    pub fn bytes(self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes,
            Self::Percent(p) => (physical_memory() as f64 * p / 100.0) as u64,
        }
    }
}

impl std::fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = self.bytes() >> 20;
        match self {
            Self::Bytes(_) => write!(f, "{mib} MiB"),
            Self::Percent(p) => write!(f, "{mib} MiB ({p}% of RAM)"),
        }
    }
}

fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages.max(0) as u64) * (page.max(0) as u64)
}

const DEFAULT_DEADLINE_SECS: f64 = 10.0;
const DEFAULT_PLUGIN_MEMORY_MIB: u64 = 256;

/// The limits of every WASM plugin call.
#[derive(Debug, Clone, Args)]
pub struct SandboxSettings {
    /// The deadline of each call into a WASM plugin, in seconds (at most 3600).
    #[arg(long, visible_alias = "plugin-deadline", value_name = "SECS",
          env = "FLOE_PLUGIN_DEADLINE_SECS", default_value_t = DEFAULT_DEADLINE_SECS,
          value_parser = deadline_secs)]
    pub plugin_deadline_secs: f64,
    /// The memory cap of each WASM plugin instance, in MiB (1 to 4096).
    #[arg(long, visible_alias = "plugin-memory", value_name = "MIB",
          env = "FLOE_PLUGIN_MEMORY_MIB", default_value_t = DEFAULT_PLUGIN_MEMORY_MIB,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub plugin_memory_mib: u64,
}

/// The sandbox limits as the plugin runtime uses them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PluginLimits {
    pub deadline: Duration,
    pub memory_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs_f64(DEFAULT_DEADLINE_SECS),
            memory_bytes: (DEFAULT_PLUGIN_MEMORY_MIB as usize) << 20,
        }
    }
}

impl SandboxSettings {
    pub fn limits(&self) -> PluginLimits {
        PluginLimits {
            deadline: Duration::from_secs_f64(self.plugin_deadline_secs),
            memory_bytes: (self.plugin_memory_mib as usize) << 20,
        }
    }
}

fn deadline_secs(text: &str) -> Result<f64, String> {
    let secs: f64 = text.parse().map_err(|err| format!("{err}"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 3600.0 {
        Ok(secs)
    } else {
        Err(format!(
            "the plugin deadline must be more than 0 and at most 3600 seconds, not {secs}"
        ))
    }
}

/// Where and how the Flight server listens.
#[derive(Debug, Clone, Args)]
pub struct ServerSettings {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", env = "FLOE_ADDRESS", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub address: IpAddr,
    /// The port to listen on (0 picks a free one).
    #[arg(short, long, env = "FLOE_PORT", default_value_t = 8816)]
    pub port: u16,
    /// The largest gRPC message accepted or sent, in MiB (pyarrow sends a whole
    /// batch as one message).
    #[arg(long, value_name = "MIB", env = "FLOE_MAX_MESSAGE_MIB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=2048))]
    pub max_message_mib: u64,
    /// On SIGTERM, how long running requests may finish before they are cancelled,
    /// in seconds. A second SIGTERM (or SIGINT) exits at once.
    #[arg(long, value_name = "SECS", env = "FLOE_SHUTDOWN_GRACE", default_value_t = 30.0,
          value_parser = seconds)]
    pub shutdown_grace: f64,
    /// A connection that sends nothing for this long is closed, in seconds (the host
    /// pings clients at a third of it, and live clients answer).
    #[arg(long, value_name = "SECS", env = "FLOE_IDLE_CONNECTION_TIMEOUT", default_value_t = 60.0,
          value_parser = seconds)]
    pub idle_connection_timeout: f64,
    /// Serve clients without credentials even off loopback, when the warehouse has no
    /// users or service tokens (on loopback they are served anyway until the first
    /// user is added).
    #[arg(long, env = "FLOE_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// How long a bearer token from Handshake is valid, in seconds.
    #[arg(long, value_name = "SECS", env = "FLOE_TOKEN_TTL", default_value_t = 3600.0,
          value_parser = seconds)]
    pub token_ttl: f64,
    /// Serve TLS (`grpc+tls://`) with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", env = "FLOE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", env = "FLOE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require clients to present a certificate signed by this CA (PEM): mutual TLS.
    #[arg(
        long,
        value_name = "FILE",
        env = "FLOE_TLS_CLIENT_CA",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9816)
    /// [default: off].
    #[arg(long, value_name = "ADDR:PORT", env = "FLOE_METRICS_ADDRESS")]
    pub metrics_address: Option<SocketAddr>,
    /// Concurrent requests (HTTP/2 streams) one connection may have open.
    #[arg(long, value_name = "N", env = "FLOE_MAX_STREAMS_PER_CONNECTION", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,
}

impl ServerSettings {
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    pub fn max_message_bytes(&self) -> usize {
        (self.max_message_mib as usize) << 20
    }

    pub fn idle_connection_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_connection_timeout)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace)
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs_f64(self.token_ttl)
    }

    /// The server's TLS configuration, read from the PEM files; None without --tls-cert.
    pub fn tls(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("reading the TLS {what} {}", path.display()))
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
            read(cert, "certificate (--tls-cert)")?,
            read(key, "key (--tls-key)")?,
        ));
        if let Some(ca) = &self.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(
                ca,
                "client CA (--tls-client-ca)",
            )?));
        }
        Ok(Some(tls))
    }

    /// `grpc` or `grpc+tls`, as clients write it.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "grpc+tls"
        } else {
            "grpc"
        }
    }

    /// Whether clients without credentials are served while no principal exists.
    pub fn serves_anonymous(&self) -> bool {
        self.address.is_loopback() || self.allow_anonymous
    }
}

const DEFAULT_REQUEST_TIMEOUT_SECS: f64 = 900.0;
const DEFAULT_MAX_CONCURRENT_QUERIES: u32 = 16;
const DEFAULT_QUEUE_TIMEOUT_SECS: f64 = 5.0;
const DEFAULT_IDLE_UPLOAD_TIMEOUT_SECS: f64 = 300.0;

/// What one request, and all of them together, may use.
#[derive(Debug, Clone, Args)]
pub struct RequestLimits {
    /// The longest a request may run, in seconds; a client's shorter gRPC deadline
    /// wins. Past it the request's query and plugins are stopped (DeadlineExceeded).
    #[arg(long, value_name = "SECS", env = "FLOE_REQUEST_TIMEOUT", default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS,
          value_parser = seconds)]
    pub request_timeout: f64,
    /// Queries DuckDB runs at once; more wait up to --queue-timeout, then are
    /// refused (ResourceExhausted).
    #[arg(long, value_name = "N", env = "FLOE_MAX_CONCURRENT_QUERIES", default_value_t = DEFAULT_MAX_CONCURRENT_QUERIES,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_concurrent_queries: u32,
    /// Requests running WASM plugins at once [default: half the cores, at least 1];
    /// more wait up to --queue-timeout, then are refused (ResourceExhausted).
    #[arg(long, value_name = "N", env = "FLOE_MAX_CONCURRENT_PLUGINS",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_concurrent_plugins: Option<u32>,
    /// How long a request waits for a query or plugin slot, in seconds.
    #[arg(long, value_name = "SECS", env = "FLOE_QUEUE_TIMEOUT", default_value_t = DEFAULT_QUEUE_TIMEOUT_SECS,
          value_parser = seconds)]
    pub queue_timeout: f64,
    /// An upload that sends nothing for this long is aborted (nothing committed),
    /// in seconds.
    #[arg(long, value_name = "SECS", env = "FLOE_IDLE_UPLOAD_TIMEOUT", default_value_t = DEFAULT_IDLE_UPLOAD_TIMEOUT_SECS,
          value_parser = seconds)]
    pub idle_upload_timeout: f64,
}

impl RequestLimits {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.queue_timeout)
    }

    pub fn idle_upload_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_upload_timeout)
    }

    pub fn max_concurrent_plugins(&self) -> u32 {
        self.max_concurrent_plugins
            .unwrap_or_else(|| (cores() / 2).max(1) as u32)
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT_SECS,
            max_concurrent_queries: DEFAULT_MAX_CONCURRENT_QUERIES,
            max_concurrent_plugins: None,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT_SECS,
            idle_upload_timeout: DEFAULT_IDLE_UPLOAD_TIMEOUT_SECS,
        }
    }
}

/// A positive number of seconds, at most a day.
fn seconds(text: &str) -> Result<f64, String> {
    let secs: f64 = text.parse().map_err(|err| format!("{err}"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(secs)
    } else {
        Err(format!(
            "must be more than 0 and at most 86400 seconds, not {secs}"
        ))
    }
}

/// How hosts sharing a warehouse find each other and split reads between them.
#[derive(Debug, Clone, Args)]
pub struct ClusterSettings {
    /// The address other hosts hand out for this one, as clients reach it
    /// (`grpc://db-reader-1:8816`) [default: the listening address and port; the
    /// machine's hostname when listening on all addresses].
    #[arg(long, value_name = "URI", env = "FLOE_ADVERTISE")]
    pub advertise: Option<String>,
    /// How often the host renews its registration in the catalog, in seconds; it
    /// drops out of the cluster three missed heartbeats later.
    #[arg(long, value_name = "SECS", env = "FLOE_HEARTBEAT", default_value_t = 5.0,
          value_parser = seconds)]
    pub heartbeat: f64,
    /// A table read over more data than this, in MiB, is split into endpoints (one
    /// per live host at most, each a group of the snapshot's files) that clients
    /// fetch in parallel; 0 never splits.
    #[arg(
        long,
        value_name = "MIB",
        env = "FLOE_SPLIT_READS_AT",
        default_value_t = 64
    )]
    pub split_reads_at: u64,
}

impl ClusterSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat)
    }

    /// Where clients reach a host listening on `local` with `scheme`.
    pub fn advertised(&self, scheme: &str, local: SocketAddr) -> String {
        if let Some(uri) = &self.advertise {
            return uri.clone();
        }
        let host = match local.ip() {
            ip if ip.is_unspecified() => hostname().unwrap_or_else(|| "localhost".into()),
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("{scheme}://{host}:{}", local.port())
    }
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0)?;
    (rc == 0 && end > 0).then(|| String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// How long Iceberg tables keep old snapshots and files nothing references. A
/// table's own `history.expire.max-snapshot-age-ms` and
/// `history.expire.min-snapshots-to-keep` properties take precedence.
#[derive(Debug, Clone, Args)]
pub struct MaintenanceSettings {
    /// Snapshots younger than this are kept (e.g. 7d, 36h); older ones are expired
    /// after commits, beyond the --snapshot-retain-last newest.
    #[arg(long, value_name = "AGE", env = "FLOE_SNAPSHOT_RETENTION", default_value = "7d",
          value_parser = crate::age::parse_age)]
    pub snapshot_retention: chrono::Duration,
    /// The newest snapshots every table keeps, however old.
    #[arg(long, value_name = "N", env = "FLOE_SNAPSHOT_RETAIN_LAST", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub snapshot_retain_last: u64,
    /// Files in a table's directory that no metadata references are removed once
    /// older than this (a write in progress is younger).
    #[arg(long, value_name = "AGE", env = "FLOE_ORPHAN_AGE", default_value = "1d",
          value_parser = crate::age::parse_orphan_age)]
    pub orphan_age: chrono::Duration,
    /// Expire snapshots and remove orphan files in the background after commits.
    #[arg(long, env = "FLOE_BACKGROUND_MAINTENANCE", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub background_maintenance: bool,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        Self {
            snapshot_retention: chrono::Duration::days(7),
            snapshot_retain_last: 10,
            orphan_age: chrono::Duration::days(1),
            background_maintenance: true,
        }
    }
}

/// Every setting: `host serve` uses them all, `host doctor` shows them all.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub warehouse: Warehouse,
    #[command(flatten)]
    pub duck: DuckSettings,
    #[command(flatten)]
    pub sandbox: SandboxSettings,
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub limits: RequestLimits,
    #[command(flatten)]
    pub maintenance: MaintenanceSettings,
    #[command(flatten)]
    pub cluster: ClusterSettings,
}

/// The `--config` file a parse named, in whichever subcommand.
pub fn config_file(matches: &clap::ArgMatches) -> Option<PathBuf> {
    if let Ok(Some(path)) = matches.try_get_one::<PathBuf>("config") {
        return Some(path.clone());
    }
    matches.subcommand().and_then(|(_, sub)| config_file(sub))
}

/// `command` with the settings of the TOML file `path` as its defaults. A key that
/// names no setting, or a value that is not a plain string, number or boolean, is
/// refused with the file and the key named.
pub fn with_file_defaults(command: clap::Command, path: &Path) -> anyhow::Result<clap::Command> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let known = settings(&command);
    let mut values = Vec::new();
    for (key, value) in table {
        anyhow::ensure!(
            known.contains(&key),
            "{}: unknown setting {key:?}; the settings are: {}",
            path.display(),
            known.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => anyhow::bail!(
                "{}: setting {key:?} must be a string, number or boolean, not {}",
                path.display(),
                other.type_str()
            ),
        };
        values.push((key, text));
    }
    Ok(set_defaults(command, &values))
}

/// Every setting's name: the arguments that have an environment variable.
fn settings(command: &clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = command
        .get_arguments()
        .filter(|arg| arg.get_env().is_some() && arg.get_id() != "config")
        .map(|arg| arg.get_id().to_string())
        .collect();
    for sub in command.get_subcommands() {
        names.extend(settings(sub));
    }
    names
}

fn set_defaults(command: clap::Command, values: &[(String, String)]) -> clap::Command {
    command
        .mut_args(
            |arg| match values.iter().find(|(key, _)| arg.get_id() == key.as_str()) {
                Some((_, value)) if arg.get_env().is_some() => arg.default_value(value.clone()),
                _ => arg,
            },
        )
        .mut_subcommands(|sub| set_defaults(sub, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(file: &str, args: &[&str]) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("floe.toml");
        std::fs::write(&path, file)?;
        let command = with_file_defaults(Probe::command(), &path)?;
        let matches =
            command.try_get_matches_from(std::iter::once("probe").chain(args.iter().copied()))?;
        Ok(Probe::from_arg_matches(&matches)?.settings)
    }

    #[test]
    fn the_file_beats_defaults_and_flags_beat_the_file() {
        let probe = parse(
            "port = 9000\nplugin_memory_mib = 64\niceberg_reader = \"read-parquet\"",
            &[],
        )
        .unwrap();
        assert_eq!(probe.server.port, 9000);
        assert_eq!(probe.sandbox.plugin_memory_mib, 64);
        assert_eq!(probe.duck.iceberg_reader, ReaderChoice::ReadParquet);
        assert_eq!(probe.sandbox.plugin_deadline_secs, DEFAULT_DEADLINE_SECS);
        let probe = parse(
            "port = 9000",
            &["--port", "9001", "--plugin-deadline", "0.5"],
        )
        .unwrap();
        assert_eq!(probe.server.port, 9001);
        assert_eq!(probe.sandbox.limits().deadline, Duration::from_millis(500));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = parse("prot = 1", &[]).unwrap_err().to_string();
        assert!(err.contains("\"prot\"") && err.contains("port"), "{err}");
        for (file, flag) in [
            ("plugin_memory_mib = 0", "plugin-memory-mib"),
            ("plugin_deadline_secs = 0", "plugin-deadline-secs"),
        ] {
            let err = parse(file, &[]).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
        let err = parse("port = [1]", &[]).unwrap_err().to_string();
        assert!(err.contains("\"port\""), "{err}");
    }
}
