//! Flight SQL's bulk ingest (ADBC `adbc_ingest`) as a floe write: the same
//! streaming upload and all-or-nothing commit as a JSON DoPut, into Iceberg.

use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};

use super::metadata::CATALOG;
use crate::command::{PutCommand, TableName, Target, WriteMode, check_idempotency_key};
use crate::error::{Error, Result, quote};

/// The ingest option (ADBC `adbc.ingest.option…` / `CommandStatementIngest.options`)
/// that makes a retried ingest harmless, as `idempotency_key` does for a DoPut.
pub const IDEMPOTENCY_KEY: &str = "idempotency_key";

/// An ingest, as floe writes it.
#[derive(Debug)]
pub struct Ingest {
    pub command: PutCommand,
    /// The table must exist already (ADBC's `append`, or `replace` without create).
    pub existing_only: bool,
}

/// ADBC's modes are pairs of (if the table is missing, if it exists):
/// `create` = (create, fail), `append` = (fail, append), `replace` = (create,
/// replace), `create_append` = (create, append). Replace is floe's atomic overwrite.
pub fn ingest(command: CommandStatementIngest) -> Result<Ingest> {
    if command.temporary {
        return Err(Error::invalid(
            "temporary tables are not supported: every floe table is an Iceberg table in the catalog",
        ));
    }
    if command.transaction_id.is_some() {
        return Err(no_transactions());
    }
    let mut options = command.options;
    let idempotency_key = options.remove(IDEMPOTENCY_KEY);
    if let Some(key) = &idempotency_key {
        check_idempotency_key(key)?;
    }
    if let Some(option) = options.keys().next() {
        return Err(Error::invalid(format!(
            "unknown ingest option {}: floe's ingest takes only {IDEMPOTENCY_KEY}",
            quote(option)
        )));
    }
    if let Some(catalog) = command.catalog.as_deref().filter(|c| *c != CATALOG) {
        return Err(Error::not_found(format!(
            "catalog {} not found: floe's one catalog is {CATALOG}",
            quote(catalog)
        )));
    }
    let table = match command.schema.as_deref() {
        Some(schema) => TableName::new(schema, &command.table)?,
        None => TableName::parse(&command.table)?,
    };
    let options = command.table_definition_options.unwrap_or_default();
    let create = match options.if_not_exist() {
        TableNotExistOption::Create => true,
        TableNotExistOption::Fail | TableNotExistOption::Unspecified => false,
    };
    let mode = match (options.if_exists(), create) {
        (TableExistsOption::Fail | TableExistsOption::Unspecified, true) => WriteMode::Create,
        (TableExistsOption::Append, _) => WriteMode::Append,
        (TableExistsOption::Replace, _) => WriteMode::Overwrite,
        (TableExistsOption::Fail | TableExistsOption::Unspecified, false) => {
            return Err(Error::invalid(
                "this ingest may neither create the table nor write to an existing one: \
                 use mode create, append, replace or create_append",
            ));
        }
    };
    Ok(Ingest {
        command: PutCommand {
            table,
            mode,
            target: Target::Iceberg,
            transforms: Vec::new(),
            partition_by: None,
            keys: None,
            replace_where: None,
            expect_rows: None,
            expect_batches: None,
            idempotency_key,
        },
        existing_only: !create,
    })
}

pub fn no_transactions() -> Error {
    Error::Unimplemented(
        "transactions are not supported: floe's statements only read, and each ingest \
         commits on its own, all or nothing"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use arrow_flight::sql::TableDefinitionOptions;

    use super::*;

    fn command(
        if_not_exist: TableNotExistOption,
        if_exists: TableExistsOption,
    ) -> CommandStatementIngest {
        CommandStatementIngest {
            table_definition_options: Some(TableDefinitionOptions {
                if_not_exist: if_not_exist as i32,
                if_exists: if_exists as i32,
            }),
            table: "t".into(),
            schema: Some("raw".into()),
            ..Default::default()
        }
    }

    #[test]
    fn adbc_modes_map_to_floe_modes() {
        use TableExistsOption as E;
        use TableNotExistOption as N;
        for (missing, exists, mode, existing_only) in [
            (N::Create, E::Fail, WriteMode::Create, false),
            (N::Fail, E::Append, WriteMode::Append, true),
            (N::Create, E::Replace, WriteMode::Overwrite, false),
            (N::Create, E::Append, WriteMode::Append, false),
        ] {
            let ingest = ingest(command(missing, exists)).unwrap();
            assert_eq!(ingest.command.mode, mode);
            assert_eq!(ingest.existing_only, existing_only);
            assert_eq!(ingest.command.table.to_string(), "raw.t");
        }
        assert!(ingest(command(N::Fail, E::Fail)).is_err());
    }

    #[test]
    fn temporary_tables_and_transactions_are_refused() {
        let mut temporary = command(TableNotExistOption::Create, TableExistsOption::Fail);
        temporary.temporary = true;
        assert!(
            ingest(temporary)
                .unwrap_err()
                .to_string()
                .contains("temporary")
        );
        let mut other = command(TableNotExistOption::Create, TableExistsOption::Fail);
        other.catalog = Some("spark".into());
        assert!(matches!(ingest(other), Err(Error::NotFound(_))));
    }
}
