//! Host settings: defaults that need no setup, an optional TOML file, then flags.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::engines::duckdb::ReaderChoice;
use crate::plugins::Limits;

pub const DEFAULT_PORT: u16 = 8816;

#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the warehouse directory.
    pub warehouse: PathBuf,
    pub address: IpAddr,
    pub port: u16,
    /// DuckDB's extension directory (None: DuckDB's default, ~/.duckdb/extensions).
    pub extension_dir: Option<PathBuf>,
    pub iceberg_reader: ReaderChoice,
    /// The largest gRPC message accepted (pyarrow sends whole batches as one message).
    pub max_message_bytes: usize,
    /// The deadline and memory cap of every WASM plugin call.
    pub plugin_limits: Limits,
}

/// The `--config FILE` format; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub warehouse: Option<PathBuf>,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub extension_dir: Option<PathBuf>,
    pub iceberg_reader: Option<ReaderChoice>,
    pub max_message_mib: Option<usize>,
    pub plugin_deadline_secs: Option<f64>,
    pub plugin_memory_mib: Option<usize>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Settings given on the command line (None: not given).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub warehouse: Option<PathBuf>,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub extension_dir: Option<PathBuf>,
    pub iceberg_reader: Option<ReaderChoice>,
    pub plugin_deadline_secs: Option<f64>,
    pub plugin_memory_mib: Option<usize>,
}

impl Config {
    /// Defaults, overlaid by the file, overlaid by the flags.
    pub fn resolve(file: Option<&Path>, flags: Overrides) -> anyhow::Result<Self> {
        let file = file.map(FileConfig::load).transpose()?.unwrap_or_default();
        let warehouse = flags
            .warehouse
            .or(file.warehouse)
            .unwrap_or_else(|| PathBuf::from("warehouse"));
        std::fs::create_dir_all(&warehouse)
            .with_context(|| format!("creating the warehouse directory {}", warehouse.display()))?;
        let warehouse = warehouse.canonicalize().with_context(|| {
            format!("resolving the warehouse directory {}", warehouse.display())
        })?;
        Ok(Self {
            warehouse,
            address: flags
                .address
                .or(file.address)
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: flags.port.or(file.port).unwrap_or(DEFAULT_PORT),
            extension_dir: flags.extension_dir.or(file.extension_dir),
            iceberg_reader: flags
                .iceberg_reader
                .or(file.iceberg_reader)
                .unwrap_or_default(),
            max_message_bytes: file.max_message_mib.unwrap_or(256) * 1024 * 1024,
            plugin_limits: plugin_limits(
                flags.plugin_deadline_secs.or(file.plugin_deadline_secs),
                flags.plugin_memory_mib.or(file.plugin_memory_mib),
            )?,
        })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

fn plugin_limits(deadline_secs: Option<f64>, memory_mib: Option<usize>) -> anyhow::Result<Limits> {
    let mut limits = Limits::default();
    if let Some(secs) = deadline_secs {
        anyhow::ensure!(
            secs.is_finite() && secs > 0.0 && secs <= 3600.0,
            "the plugin deadline must be between 0 and 3600 seconds, not {secs}"
        );
        limits.deadline = std::time::Duration::from_secs_f64(secs);
    }
    if let Some(mib) = memory_mib {
        anyhow::ensure!(
            (1..=4096).contains(&mib),
            "the plugin memory cap must be 1 to 4096 MiB, not {mib}"
        );
        limits.memory_bytes = mib << 20;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_limits_default_and_refuse_nonsense() {
        let limits = plugin_limits(None, None).unwrap();
        assert_eq!(limits.deadline, std::time::Duration::from_secs(10));
        assert_eq!(limits.memory_bytes, 256 << 20);
        let limits = plugin_limits(Some(0.5), Some(64)).unwrap();
        assert_eq!(limits.deadline, std::time::Duration::from_millis(500));
        assert_eq!(limits.memory_bytes, 64 << 20);
        for (secs, mib) in [(Some(0.0), None), (Some(f64::NAN), None), (None, Some(0))] {
            assert!(plugin_limits(secs, mib).is_err(), "{secs:?} {mib:?}");
        }
    }
}
