//! `host plugins add|list|inspect|remove`: the registry without a running host.

use anyhow::Context as _;

use super::PluginsCommand;
use super::warehouse::storage;
use crate::config::Warehouse;
use crate::plugins::{Entry, Plugins, Registry};

pub async fn run(command: PluginsCommand) -> anyhow::Result<()> {
    match command {
        PluginsCommand::Add {
            name,
            file,
            force,
            warehouse,
            sandbox,
        } => {
            let plugins =
                Plugins::open(&storage(&warehouse)?, &warehouse.dir()?, sandbox.limits())?;
            let entry = plugins
                .add(&name, &file, force)
                .await
                .with_context(|| format!("cannot add {} as plugin '{name}'", file.display()))?;
            println!(
                "added plugin '{}': {} {} ({}), sha256 {}, {} bytes",
                entry.name,
                entry.describe.name,
                entry.describe.version,
                entry.describe.kind,
                entry.sha256,
                entry.size
            );
        }
        PluginsCommand::List { warehouse } => {
            let entries = registry(&warehouse)?.list().await?;
            println!(
                "{:<20} {:<10} {:<10} {:<64} {:>9}  added at",
                "name", "version", "kind", "sha256", "size"
            );
            for entry in entries {
                println!(
                    "{:<20} {:<10} {:<10} {:<64} {:>9}  {}",
                    entry.name,
                    entry.describe.version,
                    entry.describe.kind,
                    entry.sha256,
                    entry.size,
                    entry.added_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
        }
        PluginsCommand::Inspect { name, warehouse } => {
            let entry = registry(&warehouse)?.get(&name).await?;
            print_entry(&entry);
        }
        PluginsCommand::Remove { name, warehouse } => {
            let entry = registry(&warehouse)?.remove(&name).await?;
            println!("removed plugin '{}' (sha256 {})", entry.name, entry.sha256);
        }
    }
    Ok(())
}

fn registry(warehouse: &Warehouse) -> anyhow::Result<Registry> {
    Ok(Registry::new(&storage(warehouse)?, &warehouse.dir()?))
}

fn print_entry(entry: &Entry) {
    let d = &entry.describe;
    println!("name:        {}", entry.name);
    println!("plugin:      {} {} ({})", d.name, d.version, d.kind);
    println!("description: {}", d.description);
    println!(
        "stateless:   {}",
        if d.stateless {
            "yes (the host may replace its instance between batches)"
        } else {
            "no"
        }
    );
    println!("sha256:      {}", entry.sha256);
    println!("size:        {} bytes", entry.size);
    println!(
        "added at:    {}",
        entry.added_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    println!(
        "args schema:\n{}",
        serde_json::to_string_pretty(&d.args_schema).expect("JSON values serialize")
    );
}
