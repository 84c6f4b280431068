"""floe's dbt-duckdb plugin: dbt sources read from, and models written to, floe's
Iceberg tables over Arrow Flight (pyarrow.flight only; nothing is pickled).

Install it with `pip install './clients/python[dbt]'` and enable it in profiles.yml:

    plugins:
      - module: floe_dbt
        alias: floe
        config: {host: 127.0.0.1, port: 8816}

Config: `uri` (`grpc://host:port` or `grpc+tls://host:port`; else `host` and `port`),
`token` (a service token from `host tokens create`, e.g. `"{{ env_var('FLOE_TOKEN') }}"`) or
`user` and `password`, `tls_root_certs` (a PEM file of the CA to trust for `grpc+tls://`),
`timeout` (seconds, 600: bounds connecting and single calls; streams are never cut by it).

Sources (`meta` or `config`, with `plugin: floe`): the host table is `{schema}.{identifier}`
unless `table` names another; `columns` (alias `selected_fields`), `filter` (alias
`row_filter`), `snapshot_id`, `as_of`, `limit` and `transforms` go into the read.
`if_missing: empty` reads a table that does not exist yet as no rows of `columns` (a
model's own table before its first run, e.g. for an incremental watermark).

Models (`materialized='external'`, `plugin='floe'`): the file dbt-duckdb wrote is streamed
to the host batch by batch. Config: `mode` (`overwrite`, default, `append`, `merge` or
`replace_where`), `target` (`iceberg`, default, or `duckdb`), `table` (default
`{schema}.{identifier}`), `transforms`, `partition_by` (a column or transform such as
`"day(order_date)"`, or a list of them: the Iceberg table's partitioning; `[]` for none,
absent to keep the table's). `merge` replaces the table's rows whose `unique_key` (a
column or a list) the model's rows have and adds the others; `replace_where` replaces the
rows matching `where` (a SQL expression every row of the model must match).

Every model's upload carries the idempotency key `<run_id>:<model>`, and an upload the
host lost contact with is sent again (up to 3 attempts) with the same key: the host
commits it once. `run_id` (config) is dbt's invocation id unless set; set it to your
orchestrator's run id (e.g. `"{{ env_var('AIRFLOW_CTX_DAG_RUN_ID', '') }}"`) so that a
retried task, a new dbt invocation, does not append twice either.
"""
from __future__ import annotations

import json
from typing import Any, Dict

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig, TargetConfig
from dbt.adapters.events.logging import AdapterLogger
from dbt_common.invocation import get_invocation_id
from floe_client import endpoint_batches

logger = AdapterLogger("floe")

CONFIG_KEYS = {"host", "port", "uri", "user", "password", "token", "tls_root_certs", "timeout", "run_id"}
# Attempts at one upload when the host cannot be reached or stops answering.
PUT_ATTEMPTS = 3
MODES = ("overwrite", "append", "merge", "replace_where")
TARGETS = ("iceberg", "duckdb")


class FloeError(Exception):
    """A problem dbt should report as it is."""


class Plugin(BasePlugin):
    def initialize(self, config: Dict[str, Any]):
        # An unset env_var('...', '') arrives as "": treat it as absent.
        config = {k: v for k, v in config.items() if v not in (None, "")}
        unknown = set(config) - CONFIG_KEYS
        if unknown:
            raise FloeError(f"floe plugin: unknown config key(s) {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}")
        if "uri" in config:
            self.location = str(config["uri"])
            if not self.location.startswith(("grpc://", "grpc+tls://")):
                raise FloeError(f"floe plugin: uri must start with grpc:// or grpc+tls://, not {self.location!r}")
        else:
            host = config.get("host", "127.0.0.1")
            try:
                port = int(config.get("port", 8816))
            except ValueError:
                raise FloeError(f"floe plugin: port must be a number, not {config.get('port')!r}") from None
            self.location = f"grpc://{host}:{port}"
        if "token" in config and ("user" in config or "password" in config):
            raise FloeError("floe plugin: give either token or user and password, not both")
        if ("user" in config) != ("password" in config):
            raise FloeError("floe plugin: user and password go together")
        self.credentials = config
        self.root_certs = None
        if "tls_root_certs" in config:
            try:
                with open(config["tls_root_certs"], "rb") as f:
                    self.root_certs = f.read()
            except OSError as err:
                raise FloeError(f"floe plugin: tls_root_certs: {err}") from None
        self.timeout = float(config.get("timeout", 600))
        self.run_id = str(config["run_id"]) if "run_id" in config else None
        self._client: flight.FlightClient | None = None
        self._hosts: dict[str, flight.FlightClient] = {}

    def client(self) -> flight.FlightClient:
        """Connected and authenticated once, checked at once: a host that is down or
        refuses the credentials fails the run fast, naming floe and the cause."""
        if self._client is None:
            kwargs = {"tls_root_certs": self.root_certs} if self.root_certs else {}
            client = flight.FlightClient(self.location, **kwargs)
            headers = []
            bounded = flight.FlightCallOptions(timeout=min(self.timeout, 30))
            try:
                if "user" in self.credentials:
                    headers.append(client.authenticate_basic_token(
                        str(self.credentials["user"]), str(self.credentials["password"]), bounded))
                elif "token" in self.credentials:
                    headers.append((b"authorization", b"Bearer " + str(self.credentials["token"]).encode()))
                # Unary calls are bounded by `timeout`; streams (reads, writes) are not.
                self.unary = flight.FlightCallOptions(timeout=self.timeout, headers=headers)
                self.streams = flight.FlightCallOptions(headers=headers)
                list(client.do_action(flight.Action("healthcheck", b"{}"),
                                      flight.FlightCallOptions(timeout=min(self.timeout, 30), headers=headers)))
            except flight.FlightUnauthenticatedError as err:
                raise FloeError(
                    f"floe host at {self.location} refused the credentials: {server_message(err)}"
                ) from None
            except (flight.FlightUnavailableError, flight.FlightTimedOutError) as err:
                raise FloeError(
                    f"floe host unreachable at {self.location} (is `host serve` running there?): {err}"
                ) from None
            self._client = client
        return self._client

    def host(self, location: str | None) -> flight.FlightClient:
        """The client for an endpoint's host: another host of the cluster serving the
        warehouse (the same credentials hold there), or this one (None)."""
        if location is None or location == self.location:
            return self.client()
        if location not in self._hosts:
            kwargs = {"tls_root_certs": self.root_certs} if self.root_certs else {}
            self._hosts[location] = flight.FlightClient(location, **kwargs)
        return self._hosts[location]

    def load(self, source_config: SourceConfig):
        """A source as a streaming RecordBatchReader, never a materialized table."""
        command = read_command(source_config)
        what = f"source {source_config.name}.{source_config.identifier} (host table {command['table']})"
        if_missing = source_config.get("if_missing")
        if if_missing not in (None, "", "error", "empty"):
            raise FloeError(f"floe: {what}: 'if_missing' is error (the default) or empty, not {if_missing!r}")
        try:
            info = self.client().get_flight_info(descriptor(command), self.unary)
            return endpoint_batches(info, self.host, self.streams)
        except KeyError as err:  # pyarrow's NotFound
            if if_missing == "empty":
                return missing_as_empty(command, what)
            raise FloeError(f"floe: {what}: {server_message(err)}") from None
        except (pa.ArrowException, flight.FlightError) as err:
            raise FloeError(f"floe: {what}: {server_message(err)}") from None

    def store(self, target_config: TargetConfig):
        config = target_config.config
        relation = target_config.relation
        mode = choice(config, "mode", MODES)
        command = {
            "table": config.get("table") or f"{relation.schema}.{relation.identifier}",
            "mode": mode,
            "target": choice(config, "target", TARGETS),
        }
        transforms = config.get("transforms")
        if transforms:
            command["transforms"] = check_transforms(transforms)
        partition_by = config.get("partition_by")
        if partition_by is not None:
            command["partition_by"] = check_partition_by(partition_by, relation.identifier)
        if mode == "merge":
            command["keys"] = check_unique_key(config.get("unique_key"), relation.identifier)
        if mode == "replace_where":
            where = config.get("where")
            if not isinstance(where, str) or not where.strip():
                raise FloeError(f"floe: model {relation.identifier}: mode replace_where needs 'where', "
                                "the SQL expression the replaced rows match")
            command["where"] = where
        location = target_config.location
        if location is None or location.format != "parquet":
            raise FloeError(f"floe: model {relation.identifier}: use format 'parquet' (the default) with plugin floe")
        source = pq.ParquetFile(location.path)
        empty = model_was_empty(source)
        # The host commits only if exactly this many rows arrive: an upload cut
        # short (a client stopped mid-way) commits nothing.
        command["expect_rows"] = 0 if empty else source.metadata.num_rows
        if command["target"] == "iceberg":
            command["idempotency_key"] = f"{self.run_id or get_invocation_id()}:{relation.identifier}"
        for attempt in range(1, PUT_ATTEMPTS + 1):
            try:
                written = self.put(command, source, empty)
                break
            except (flight.FlightUnavailableError, flight.FlightTimedOutError) as err:
                if attempt == PUT_ATTEMPTS or "idempotency_key" not in command:
                    raise FloeError(f"floe: model {relation.identifier} -> {command['table']}: "
                                    f"{server_message(err)}") from None
                logger.warning(f"floe: {relation.identifier}: the host did not answer ({err}); sending again")
            except (pa.ArrowException, flight.FlightError) as err:
                raise FloeError(f"floe: model {relation.identifier} -> {command['table']}: "
                                f"{server_message(err)}") from None
        if written.get("duplicate"):
            logger.info(f"floe: {relation.identifier} -> {command['table']}: already written by this run "
                        f"(idempotency key {command['idempotency_key']}), snapshot {written.get('snapshot_id')}")
        else:
            logger.info(
                f"floe: {relation.identifier} -> {command['table']}: {written.get('rows')} rows, "
                f"{mode}, snapshot {written.get('snapshot_id')}"
            )
        return written

    def put(self, command: dict, source: pq.ParquetFile, empty: bool) -> dict:
        """One upload of the model's file; the host's answer."""
        writer, reader = self.client().do_put(descriptor(command), source.schema_arrow, self.streams)
        for batch in [] if empty else source.iter_batches(batch_size=65_536):
            writer.write_batch(batch)
        writer.done_writing()
        result = reader.read()
        writer.close()
        return json.loads(result.to_pybytes()) if result is not None else {}


def missing_as_empty(command: dict, what: str) -> pa.Table:
    """No rows of the source's `columns` (typed NULL: they hold nothing to type)."""
    if "columns" not in command:
        raise FloeError(f"floe: {what}: 'if_missing: empty' needs 'columns', the columns to read as empty")
    logger.info(f"floe: {what} does not exist yet: read as empty")
    return pa.table({c: pa.array([], pa.null()) for c in command["columns"]})


def model_was_empty(source: pq.ParquetFile) -> bool:
    """dbt-duckdb writes an empty model as one row of NULLs (to keep its columns) and
    hides that row from its own view; so does floe: such a file uploads no rows."""
    if source.metadata.num_rows != 1:
        return False
    row = source.read()
    return all(column.null_count == 1 for column in row.columns)


def descriptor(command: dict) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(json.dumps(command))


def read_command(source: SourceConfig) -> dict:
    table = source.get("table") or f"{source.schema}.{source.identifier}"
    command: dict = {"table": table}
    columns = first(source, "columns", "selected_fields")
    if columns is not None:
        if isinstance(columns, str):
            columns = [c.strip() for c in columns.split(",") if c.strip()]
        if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns) or not columns:
            raise FloeError(f"floe: source {source.name}.{source.identifier}: 'columns' must be a list of column names")
        command["columns"] = list(columns)
    row_filter = first(source, "filter", "row_filter")
    if row_filter is not None:
        if not isinstance(row_filter, str):
            raise FloeError(f"floe: source {source.name}.{source.identifier}: 'filter' must be a SQL expression string")
        command["filter"] = row_filter
    for key in ("snapshot_id", "limit"):
        value = source.get(key)
        if value not in (None, ""):
            try:
                command[key] = int(value)
            except (TypeError, ValueError):
                raise FloeError(f"floe: source {source.name}.{source.identifier}: '{key}' must be an integer, not {value!r}") from None
    if source.get("as_of") not in (None, ""):
        command["as_of"] = str(source.get("as_of"))
    if source.get("transforms"):
        command["transforms"] = check_transforms(source.get("transforms"))
    return command


def first(source: SourceConfig, key: str, alias: str):
    return source.get(key) if source.get(key) is not None else source.get(alias)


def choice(config, key: str, allowed: tuple) -> str:
    value = config.get(key) or allowed[0]
    if value not in allowed:
        raise FloeError(f"floe: '{key}' must be one of {', '.join(allowed)}, not {value!r}")
    return value


def check_unique_key(unique_key, model: str) -> list:
    keys = [unique_key] if isinstance(unique_key, str) else unique_key
    if not keys or not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) and k for k in keys):
        raise FloeError(f"floe: model {model}: mode merge needs 'unique_key', a column or a list of them, "
                        f"not {unique_key!r}")
    return list(keys)


def check_partition_by(partition_by, model: str) -> list:
    items = [partition_by] if isinstance(partition_by, str) else partition_by
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise FloeError(
            f"floe: model {model}: 'partition_by' is a column or transform (\"day(ts)\", \"bucket(16, id)\") "
            f"or a list of them, not {partition_by!r}"
        )
    return list(items)


def check_transforms(transforms) -> list:
    if not isinstance(transforms, list) or not all(isinstance(t, dict) and "plugin" in t for t in transforms):
        raise FloeError("floe: 'transforms' must be a list of {plugin: name, args: {...}}")
    return [{"plugin": t["plugin"], "args": t.get("args") or {}} for t in transforms]


def server_message(err: Exception) -> str:
    """The host's message without gRPC's debug context."""
    text = str(err)
    for marker in ("with message: ", "message: "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return text.split(". gRPC client debug context")[0].strip()
