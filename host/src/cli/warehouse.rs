//! From the warehouse settings to where its parts are: its storage (a local
//! directory or an S3 prefix) and its layout (tables, catalog, the host's directory).

use crate::config::Warehouse;
use crate::engines::Layout;
use crate::storage::{S3Access, Storage};

/// Where the warehouse is. For S3, the endpoint and region come from the flags,
/// else the standard AWS variables; credentials from the AWS variables only.
pub fn storage(warehouse: &Warehouse) -> anyhow::Result<Storage> {
    if !warehouse.is_remote() {
        return Ok(Storage::local(&warehouse.dir()?));
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let endpoint = warehouse
        .s3_endpoint
        .clone()
        .or_else(|| var("AWS_ENDPOINT_URL_S3"))
        .or_else(|| var("AWS_ENDPOINT_URL"));
    let region = warehouse
        .s3_region
        .clone()
        .or_else(|| var("AWS_REGION"))
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let path_style = warehouse.s3_path_style.unwrap_or(endpoint.is_some());
    let access = S3Access::from_env(endpoint, region, path_style)?;
    Ok(Storage::s3(&warehouse.warehouse, access)?)
}

/// Where the warehouse's tables, catalog and host files are.
pub fn layout(warehouse: &Warehouse) -> anyhow::Result<Layout> {
    if warehouse.is_remote() && warehouse.catalog.is_none() {
        anyhow::bail!(
            "the s3:// warehouse {} needs --catalog: a postgres:// URI (to share it \
             between hosts) or a SQLite file",
            warehouse.warehouse
        );
    }
    Ok(Layout::new(
        &storage(warehouse)?,
        warehouse.catalog.as_deref(),
        &warehouse.dir()?,
    )?)
}
