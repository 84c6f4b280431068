//! Flight SQL's metadata commands, answered from the tables the principal may read:
//! one catalog, `floe`; a schema per namespace; Iceberg and DuckDB tables alike of
//! type `table` (ADBC's spelling, which SQLAlchemy's reflection matches).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData,
    XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Command, Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, SupportedSqlGrammar, XdbcDataType, XdbcDatetimeSubcode,
};

use crate::core::{Core, TableInfo};
use crate::error::{Error, Result};
use crate::limits::Scope;

pub const CATALOG: &str = "floe";
const TABLE_TYPE: &str = "table";

/// What the host says of itself, built once.
pub struct Facts {
    info: SqlInfoData,
    types: XdbcTypeInfoData,
}

impl Facts {
    pub fn new() -> Self {
        Self {
            info: sql_info(),
            types: type_info(),
        }
    }
}

/// The schema of a metadata command's answer.
pub fn schema(command: &Command, facts: &Facts) -> Result<SchemaRef> {
    Ok(match command {
        Command::CommandGetCatalogs(_) => GetCatalogsBuilder::new().schema(),
        Command::CommandGetDbSchemas(c) => c.clone().into_builder().schema(),
        Command::CommandGetTables(c) => c.clone().into_builder().schema(),
        Command::CommandGetTableTypes(c) => c.into_builder().schema(),
        Command::CommandGetSqlInfo(c) => c.clone().into_builder(&facts.info).schema(),
        Command::CommandGetXdbcTypeInfo(_) => facts.types.schema(),
        Command::CommandGetPrimaryKeys(_) => primary_keys_schema(),
        Command::CommandGetImportedKeys(_)
        | Command::CommandGetExportedKeys(_)
        | Command::CommandGetCrossReference(_) => foreign_keys_schema(),
        other => return Err(unsupported(other)),
    })
}

/// A metadata command's answer: one batch.
pub async fn answer(
    core: &Core,
    command: Command,
    scope: &Scope,
    facts: &Facts,
) -> Result<RecordBatch> {
    match command {
        Command::CommandGetCatalogs(c) => {
            let mut builder = c.into_builder();
            builder.append(CATALOG);
            built(builder.build())
        }
        Command::CommandGetDbSchemas(c) => {
            let mut builder = c.into_builder();
            let mut namespaces: Vec<String> = tables(core, scope)
                .await?
                .into_iter()
                .map(|t| t.name.namespace)
                .collect();
            namespaces.sort();
            namespaces.dedup();
            for namespace in namespaces {
                builder.append(CATALOG, namespace);
            }
            built(builder.build())
        }
        Command::CommandGetTables(mut c) => {
            // JDBC tools ask for `TABLE`: a type matches in any case.
            c.table_types.iter_mut().for_each(|t| *t = t.to_lowercase());
            let mut builder = c.into_builder();
            for table in tables(core, scope).await? {
                let columns = columns(&table);
                built(builder.append(
                    CATALOG,
                    &table.name.namespace,
                    &table.name.name,
                    TABLE_TYPE,
                    &columns,
                ))?;
            }
            built(builder.build())
        }
        Command::CommandGetTableTypes(c) => {
            let mut builder = c.into_builder();
            builder.append(TABLE_TYPE);
            built(builder.build())
        }
        Command::CommandGetSqlInfo(c) => built(c.into_builder(&facts.info).build()),
        Command::CommandGetXdbcTypeInfo(c) => built(facts.types.record_batch(c.data_type)),
        // floe's tables declare no keys: the answers are empty, with their schemas.
        Command::CommandGetPrimaryKeys(_) => Ok(RecordBatch::new_empty(primary_keys_schema())),
        Command::CommandGetImportedKeys(_)
        | Command::CommandGetExportedKeys(_)
        | Command::CommandGetCrossReference(_) => Ok(RecordBatch::new_empty(foreign_keys_schema())),
        other => Err(unsupported(&other)),
    }
}

fn built<T, E: std::fmt::Display>(result: std::result::Result<T, E>) -> Result<T> {
    result.map_err(|err| Error::internal(format!("building a metadata answer: {err}")))
}

/// A Flight SQL command floe does not serve, named.
pub fn unsupported(command: &Command) -> Error {
    let name = command.type_url().rsplit('.').next().unwrap_or_default();
    Error::Unimplemented(format!(
        "the Flight SQL command {name} is not supported by floe (it serves SQL queries, \
         prepared statements, ingest and the catalog metadata commands)"
    ))
}

async fn tables(core: &Core, scope: &Scope) -> Result<Vec<TableInfo>> {
    let mut tables = core.list_tables(scope).await?;
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

/// A table's columns with the Flight SQL column metadata JDBC and ADBC read
/// (the SQL type name above all).
fn columns(table: &TableInfo) -> Schema {
    let fields = table.schema.fields().iter().map(|field| {
        let field = utc_named(field);
        let mut metadata = field.metadata().clone();
        let mut put = |key: &str, value: String| {
            metadata.insert(format!("ARROW:FLIGHT:SQL:{key}"), value);
        };
        put("CATALOG_NAME", CATALOG.into());
        put("SCHEMA_NAME", table.name.namespace.clone());
        put("TABLE_NAME", table.name.name.clone());
        if let Some(name) = Core::sql_type_name(field.data_type()) {
            put("TYPE_NAME", name);
        }
        if let DataType::Decimal128(precision, scale) = field.data_type() {
            put("PRECISION", precision.to_string());
            put("SCALE", scale.to_string());
        }
        put("IS_AUTO_INCREMENT", "0".into());
        put("IS_CASE_SENSITIVE", "1".into());
        put("IS_READ_ONLY", "1".into());
        put("IS_SEARCHABLE", "1".into());
        Arc::new(field.with_metadata(metadata))
    });
    Schema::new(fields.collect::<Vec<_>>())
}

/// Iceberg's `timestamptz` is UTC, which iceberg-rust spells `+00:00` and DuckDB's
/// results `UTC`: a table's columns are described as queries return them.
fn utc_named(field: &Field) -> Field {
    match field.data_type() {
        DataType::Timestamp(unit, Some(tz)) if tz.as_ref() == "+00:00" => field
            .clone()
            .with_data_type(DataType::Timestamp(*unit, Some("UTC".into()))),
        _ => field.clone(),
    }
}

fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// The server and SQL facts GetSqlInfo reports (and JDBC's DatabaseMetaData asks).
fn sql_info() -> SqlInfoData {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "floe");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    // Statements only read (writes are ingest, never SQL); no transactions.
    for (fact, value) in [
        (SqlInfo::FlightSqlServerReadOnly, true),
        (SqlInfo::FlightSqlServerSql, true),
        (SqlInfo::FlightSqlServerSubstrait, false),
        (SqlInfo::FlightSqlServerCancel, false),
        (SqlInfo::FlightSqlServerBulkIngestion, true),
        (SqlInfo::FlightSqlServerIngestTransactionsSupported, false),
        (SqlInfo::SqlDdlCatalog, false),
        (SqlInfo::SqlDdlSchema, false),
        (SqlInfo::SqlDdlTable, false),
        (SqlInfo::SqlAllTablesAreSelectable, true),
        (SqlInfo::SqlSupportsColumnAliasing, true),
        (SqlInfo::SqlNullPlusNullIsNull, true),
        (SqlInfo::SqlSupportsTableCorrelationNames, true),
        (SqlInfo::SqlSupportsDifferentTableCorrelationNames, false),
        (SqlInfo::SqlSupportsExpressionsInOrderBy, true),
        (SqlInfo::SqlSupportsOrderByUnrelated, true),
        (SqlInfo::SqlSupportsLikeEscapeClause, true),
        (SqlInfo::SqlSupportsNonNullableColumns, true),
        (SqlInfo::SqlCatalogAtStart, true),
        (SqlInfo::SqlSelectForUpdateSupported, false),
        (SqlInfo::SqlStoredProceduresSupported, false),
        (SqlInfo::SqlCorrelatedSubqueriesSupported, true),
        (SqlInfo::SqlTransactionsSupported, false),
        (SqlInfo::SqlBatchUpdatesSupported, false),
        (SqlInfo::SqlSavepointsSupported, false),
        (SqlInfo::SqlNamedParametersSupported, false),
    ] {
        info.append(fact, value);
    }
    info.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    info.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    info.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    info.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    info.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedAtEnd as i32,
    );
    info.append(SqlInfo::SqlSearchStringEscape, "\\");
    info.append(SqlInfo::SqlExtraNameCharacters, "");
    info.append(
        SqlInfo::SqlSupportedGrammar,
        1i32 << SupportedSqlGrammar::SqlExtendedGrammar as i32
            | 1 << SupportedSqlGrammar::SqlCoreGrammar as i32
            | 1 << SupportedSqlGrammar::SqlMinimumGrammar as i32,
    );
    info.append(SqlInfo::SqlSchemaTerm, "schema");
    info.append(SqlInfo::SqlCatalogTerm, "catalog");
    info.append(SqlInfo::SqlProcedureTerm, "procedure");
    info.append(SqlInfo::SqlMaxColumnNameLength, 0i64);
    info.append(
        SqlInfo::SqlMaxTableNameLength,
        crate::command::MAX_NAME_PART as i64,
    );
    info.append(
        SqlInfo::SqlDbSchemaNameLength,
        crate::command::MAX_NAME_PART as i64,
    );
    info.build().expect("the SQL facts are well-formed")
}

/// The SQL types floe's tables hold, as XDBC describes them.
fn type_info() -> XdbcTypeInfoData {
    use XdbcDataType as X;
    let mut types = XdbcTypeInfoDataBuilder::new();
    let mut add = |name: &str, data_type: X, size: Option<i32>, quoted: bool| {
        let (sql_data_type, datetime_subcode) = match data_type {
            // XDBC numbers DATE 1, which prost names after its alias YEAR.
            X::XdbcDate => (X::XdbcDatetime, Some(XdbcDatetimeSubcode::XdbcSubcodeYear)),
            X::XdbcTime => (X::XdbcDatetime, Some(XdbcDatetimeSubcode::XdbcSubcodeTime)),
            X::XdbcTimestamp => (
                X::XdbcDatetime,
                Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
            ),
            other => (other, None),
        };
        let numeric = matches!(
            data_type,
            X::XdbcTinyint
                | X::XdbcSmallint
                | X::XdbcInteger
                | X::XdbcBigint
                | X::XdbcFloat
                | X::XdbcDouble
                | X::XdbcDecimal
        );
        types.append(XdbcTypeInfo {
            type_name: name.into(),
            data_type,
            column_size: size,
            literal_prefix: quoted.then(|| "'".into()),
            literal_suffix: quoted.then(|| "'".into()),
            create_params: (data_type == X::XdbcDecimal)
                .then(|| vec!["precision".into(), "scale".into()]),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: data_type == X::XdbcVarchar,
            searchable: Searchable::Full,
            unsigned_attribute: numeric.then_some(false),
            fixed_prec_scale: data_type == X::XdbcDecimal,
            auto_increment: Some(false),
            local_type_name: Some(name.into()),
            minimum_scale: (data_type == X::XdbcDecimal).then_some(0),
            maximum_scale: (data_type == X::XdbcDecimal).then_some(38),
            sql_data_type,
            datetime_subcode,
            num_prec_radix: numeric.then_some(10),
            interval_precision: None,
        });
    };
    add("BOOLEAN", X::XdbcBit, Some(1), false);
    add("TINYINT", X::XdbcTinyint, Some(3), false);
    add("SMALLINT", X::XdbcSmallint, Some(5), false);
    add("INTEGER", X::XdbcInteger, Some(10), false);
    add("BIGINT", X::XdbcBigint, Some(19), false);
    add("FLOAT", X::XdbcFloat, Some(7), false);
    add("DOUBLE", X::XdbcDouble, Some(15), false);
    add("DECIMAL", X::XdbcDecimal, Some(38), false);
    add("VARCHAR", X::XdbcVarchar, None, true);
    add("BLOB", X::XdbcVarbinary, None, true);
    add("DATE", X::XdbcDate, Some(10), true);
    add("TIME", X::XdbcTime, Some(15), true);
    add("TIMESTAMP", X::XdbcTimestamp, Some(26), true);
    add("TIMESTAMPTZ", X::XdbcTimestamp, Some(32), true);
    types.build().expect("the type list is well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::sql::{CommandGetPrimaryKeys, CommandGetSqlInfo};

    #[test]
    fn the_facts_build_and_answer() {
        let facts = Facts::new();
        let info = CommandGetSqlInfo { info: vec![] }
            .into_builder(&facts.info)
            .build()
            .unwrap();
        assert!(info.num_rows() > 30);
        assert!(facts.types.record_batch(None).unwrap().num_rows() >= 14);
        let keys = Command::CommandGetPrimaryKeys(CommandGetPrimaryKeys::default());
        assert_eq!(schema(&keys, &facts).unwrap().fields().len(), 6);
    }
}
