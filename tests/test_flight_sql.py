"""Flight SQL on floe's port, end to end with real clients: ADBC (the Python dbapi),
arrow-rs's `flight_sql_client` command line, and SQLAlchemy over ADBC as BI tools
use it. The same host answers floe's JSON commands meanwhile, unchanged."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import sqlalchemy
from adbc_driver_manager import Error as AdbcError

import data
from floe_client import TARGET_DIR, Client, Host
from test_auth import PASSWORD, add_user, token

FLIGHT_SQL_CLIENT = TARGET_DIR / "flight-sql-client" / "bin" / "flight_sql_client"
SQL = "type.googleapis.com/arrow.flight.protocol.sql."


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("flightsql") / "warehouse"
    wh.mkdir()
    add_user(wh, "root", "admin")
    add_user(wh, "reader", "read:raw")
    return wh


@pytest.fixture(scope="module")
def host(warehouse):
    with Host(warehouse, "--iceberg-reader", "extension") as h:
        root = Client(h.location, user="root", password=PASSWORD)
        root.put({"table": "raw.orders"}, data.table(1_000))
        root.put({"table": "marts.summary"}, pa.table({"n": [1]}))
        yield h


@pytest.fixture(scope="module")
def root(host) -> Client:
    return Client(host.location, user="root", password=PASSWORD)


def connect(host, user: str = "root"):
    return flightsql.connect(host.location, db_kwargs={"username": user, "password": PASSWORD}, autocommit=True)


def query(host, sql: str, parameters=None, user: str = "root") -> pa.Table:
    with connect(host, user) as conn, conn.cursor() as cur:
        cur.execute(sql, parameters)
        return cur.fetch_arrow_table()


# --- a minimal protobuf writer/reader, for what no client sends on purpose -------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def any_message(name: str, *fields: bytes) -> bytes:
    return field(1, (SQL + name).encode()) + field(2, b"".join(fields))


def fields(message: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a message (all that these tests read)."""
    out, i = {}, 0
    while i < len(message):
        key, i = read_varint(message, i)
        length, i = read_varint(message, i)
        out[key >> 3] = message[i : i + length]
        i += length
    return out


def read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]
        n |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return n, i


# --- ADBC --------------------------------------------------------------------------


def test_adbc_queries_equal_the_json_path(host, root):
    got = query(host, "SELECT * FROM raw.orders WHERE id < 100 ORDER BY id")
    want = root.read({"sql": "SELECT * FROM raw.orders WHERE id < 100 ORDER BY id"})
    assert got.num_rows == 100
    assert got.equals(want)
    assert query(host, "SELECT 1 AS one").to_pylist() == [{"one": 1}]


def test_adbc_binds_parameters_through_a_prepared_statement(host, root):
    got = query(host, "SELECT id, name FROM raw.orders WHERE id BETWEEN ? AND ? ORDER BY id", (10, 14))
    assert got.column("id").to_pylist() == [10, 11, 12, 13, 14]
    # Values of other types, cast by DuckDB to what the query compares them with.
    day = query(host, "SELECT count(*) AS n FROM raw.orders WHERE day = ?", (dt.date(1970, 1, 11),))
    want = root.read({"sql": "SELECT count(*) AS n FROM raw.orders WHERE day = DATE '1970-01-11'"})
    assert day.column("n").to_pylist() == want.column("n").to_pylist()
    assert query(host, "SELECT ? AS x, ? AS y", ("text", None)).to_pylist() == [{"x": "text", "y": None}]
    # One prepared statement, run with new values each time.
    with connect(host) as conn, conn.cursor() as cur:
        for n in (3, 5):
            cur.execute("SELECT count(*) AS n FROM raw.orders WHERE id < ?", (n,))
            assert cur.fetch_arrow_table().column("n").to_pylist() == [n]


def test_adbc_get_objects_lists_catalog_schemas_tables_and_columns(host):
    with connect(host) as conn:
        (catalog,) = conn.adbc_get_objects().read_all().to_pylist()
        schema = conn.adbc_get_table_schema("orders", db_schema_filter="raw")
    assert catalog["catalog_name"] == "floe"
    schemas = {s["db_schema_name"]: s for s in catalog["catalog_db_schemas"]}
    assert set(schemas) >= {"raw", "marts"}
    (orders,) = [t for t in schemas["raw"]["db_schema_tables"] if t["table_name"] == "orders"]
    assert orders["table_type"] == "table"
    columns = {c["column_name"]: c["xdbc_type_name"] for c in orders["table_columns"]}
    assert columns == {
        "id": "BIGINT",
        "amount": "DOUBLE",
        "price": "DECIMAL(12,2)",
        "name": "VARCHAR",
        "day": "DATE",
        "ts": "TIMESTAMPTZ",
        "flag": "BOOLEAN",
    }
    assert schema.names == data.SCHEMA.names
    assert [f.type for f in schema] == [f.type for f in data.SCHEMA]


def metadata(client: Client, name: str, *fields_: bytes) -> pa.Table:
    descriptor = flight.FlightDescriptor.for_command(any_message(name, *fields_))
    info = client.flight.get_flight_info(descriptor, client.options)
    answer = client.flight.do_get(info.endpoints[0].ticket, client.options).read_all()
    assert answer.schema.equals(info.schema)
    return answer


def test_server_facts_types_and_keys(host, root):
    with connect(host) as conn:
        info = conn.adbc_get_info()
    assert info["vendor_name"] == "floe"
    assert info["vendor_version"] == root.action("healthcheck")["version"]
    types = metadata(root, "CommandGetXdbcTypeInfo").column("type_name").to_pylist()
    assert {"BIGINT", "DOUBLE", "DECIMAL", "VARCHAR", "DATE", "TIMESTAMP", "BOOLEAN"} <= set(types)
    # No keys: empty answers with the schemas the spec gives them (JDBC browsing asks).
    table = field(3, b"orders")
    assert metadata(root, "CommandGetPrimaryKeys", table).num_rows == 0
    imported = metadata(root, "CommandGetImportedKeys", table)
    assert imported.num_rows == 0 and "fk_table_name" in imported.schema.names
    assert metadata(root, "CommandGetExportedKeys", table).num_rows == 0


def test_adbc_ingest_modes(host, root):
    one, two = pa.table({"a": [1, 2]}), pa.table({"a": [3]})
    with connect(host) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("modes", one, mode="create", db_schema_name="raw") == 2
        with pytest.raises(AdbcError, match="already exists"):
            cur.adbc_ingest("modes", one, mode="create", db_schema_name="raw")
        assert cur.adbc_ingest("modes", two, mode="append", db_schema_name="raw") == 1
        assert cur.adbc_ingest("modes", two, mode="create_append", db_schema_name="raw") == 1
        assert cur.adbc_ingest("fresh", two, mode="create_append", db_schema_name="raw") == 1
        with pytest.raises(AdbcError, match="not found"):
            cur.adbc_ingest("missing", two, mode="append", db_schema_name="raw")
    assert sorted(root.get({"table": "raw.modes"}).column("a").to_pylist()) == [1, 2, 3, 3]
    assert "raw.missing" not in {t["name"] for t in root.action("list_tables")}

    before = root.action("list_snapshots", {"table": "raw.modes"})
    with connect(host) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("modes", pa.table({"b": ["x"]}), mode="replace", db_schema_name="raw") == 1
    after = root.action("list_snapshots", {"table": "raw.modes"})
    assert len(after) == len(before) + 1
    assert after[-1]["operation"] == "overwrite"
    assert root.get({"table": "raw.modes"}).to_pylist() == [{"b": "x"}]


def test_a_failing_ingest_commits_nothing(host, root):
    with connect(host) as conn, conn.cursor() as cur:
        cur.adbc_ingest("strict", pa.table({"a": [1]}), mode="create", db_schema_name="raw")
        with pytest.raises(AdbcError, match="cannot append"):
            cur.adbc_ingest("strict", pa.table({"a": ["wrong type"]}), mode="append", db_schema_name="raw")
        with pytest.raises(AdbcError, match="temporary tables are not supported"):
            cur.adbc_ingest("temp", pa.table({"a": [1]}), mode="create", temporary=True)
    assert len(root.action("list_snapshots", {"table": "raw.strict"})) == 1
    assert root.get({"table": "raw.strict"}).to_pylist() == [{"a": 1}]


TYPES = pa.table(
    {
        "i8": pa.array([1, None, -3], pa.int8()),
        "i16": pa.array([300, -2, None], pa.int16()),
        "i32": pa.array([None, 70_000, -1], pa.int32()),
        "i64": pa.array([2**40, -(2**40), None], pa.int64()),
        "f32": pa.array([1.5, None, -0.25], pa.float32()),
        "f64": pa.array([None, 2.5, 1e300], pa.float64()),
        "dec": pa.array([Decimal("12345678901234567890.123456789"), None, Decimal("-0.000000001")], pa.decimal128(38, 9)),
        "s": pa.array(["a", None, "ünï"], pa.string()),
        "b": pa.array([b"\x00\xff", None, b""], pa.binary()),
        "d": pa.array([dt.date(2024, 2, 29), None, dt.date(1969, 12, 31)], pa.date32()),
        "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6), None, dt.datetime(1970, 1, 1)], pa.timestamp("us")),
        "tstz": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), None, None], pa.timestamp("us", tz="UTC")),
        "flag": pa.array([True, False, None]),
        "l": pa.array([[1, 2], None, []], pa.list_(pa.int64())),
        "st": pa.array([{"x": 1, "y": "a"}, None, {"x": None, "y": "c"}], pa.struct([("x", pa.int64()), ("y", pa.string())])),
    }
)
# Iceberg has no 8- or 16-bit integers: they are stored, and read back, as int.
STORED = {"i8": pa.int32(), "i16": pa.int32()}


def test_types_round_trip_through_ingest_and_query(host, root):
    with connect(host) as conn, conn.cursor() as cur:
        cur.adbc_ingest("types", TYPES, mode="replace", db_schema_name="raw")
    got = query(host, "SELECT * FROM raw.types")
    want = TYPES.cast(pa.schema([pa.field(f.name, STORED.get(f.name, f.type)) for f in TYPES.schema]))
    assert got.schema.names == want.schema.names
    for name in want.schema.names:
        assert got.column(name).type == want.column(name).type, name
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    assert got.equals(root.read({"sql": "SELECT * FROM raw.types"}))


def test_snapshots_and_transform_chains_through_the_json_statement_form(host, root):
    root.put({"table": "raw.history", "mode": "overwrite"}, pa.table({"v": [1]}))
    first = root.action("list_snapshots", {"table": "raw.history"})[-1]["snapshot_id"]
    root.put({"table": "raw.history"}, pa.table({"v": [2]}))
    assert query(host, "SELECT v FROM raw.history ORDER BY v").column("v").to_pylist() == [1, 2]
    old = query(host, json.dumps({"table": "raw.history", "snapshot_id": first}))
    assert old.to_pylist() == [{"v": 1}]


# --- arrow-rs's flight_sql_client ----------------------------------------------------


def cli(host, *args: str) -> str:
    if not FLIGHT_SQL_CLIENT.exists():
        pytest.fail(f"{FLIGHT_SQL_CLIENT} is missing: run tests/setup --tests")
    port = host.location.rsplit(":", 1)[1]
    common = ["--host", "127.0.0.1", "--port", port, "--username", "root", "--password", PASSWORD]
    result = subprocess.run(
        [str(FLIGHT_SQL_CLIENT), *common, *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "RUST_LOG": "off"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows(table_text: str) -> list[list[str]]:
    """The cells of the client's pretty-printed table, below its header."""
    lines = [line for line in table_text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_flight_sql_client_cli(host):
    out = cli(host, "statement-query", "SELECT id, name FROM raw.orders WHERE id IN (1, 2) ORDER BY id")
    assert rows(out) == [["1", "name-1"], ["2", "name-2"]]
    out = cli(host, "prepared-statement-query", "SELECT count(*) AS n FROM raw.orders WHERE id < $1", "-p", "$1=42")
    assert rows(out) == [["42"]]
    assert rows(cli(host, "catalogs")) == [["floe"]]
    assert ["floe", "raw"] in rows(cli(host, "db-schemas", "floe"))
    tables = rows(cli(host, "tables", "floe", "--db-schema-filter", "raw"))
    assert ["floe", "raw", "orders", "table"] in tables
    assert all(t[1] == "raw" for t in tables)
    # JDBC tools ask for the type in capitals; patterns as the spec says.
    assert rows(cli(host, "tables", "floe", "--table-types", "TABLE", "-t", "ord%")) == [["floe", "raw", "orders", "table"]]
    assert rows(cli(host, "tables", "floe", "--table-types", "VIEW")) == []
    assert rows(cli(host, "table-types")) == [["table"]]


# --- SQLAlchemy over ADBC, as Superset uses it --------------------------------------


def test_sqlalchemy_reflects_and_queries(host, warehouse):
    bearer = token(warehouse, "bi", "read:*")
    port = host.location.rsplit(":", 1)[1]
    engine = sqlalchemy.create_engine(f"adbc+flightsql://bi:{bearer}@127.0.0.1:{port}?tls=false")
    inspector = sqlalchemy.inspect(engine)
    assert {"raw", "marts"} <= set(inspector.get_schema_names())
    assert "orders" in inspector.get_table_names(schema="raw")
    columns = {c["name"]: c["type"] for c in inspector.get_columns("orders", schema="raw")}
    assert list(columns) == data.SCHEMA.names
    assert isinstance(columns["id"], sqlalchemy.BigInteger)
    with engine.connect() as conn:
        n = conn.execute(sqlalchemy.text("SELECT count(*) FROM raw.orders")).scalar()
    assert n == 1_000
    engine.dispose()


# --- bad input and permissions --------------------------------------------------------


def test_commands_floe_does_not_serve_are_named(root):
    substrait = flight.FlightDescriptor.for_command(any_message("CommandStatementSubstraitPlan"))
    with pytest.raises(pa.ArrowNotImplementedError, match="CommandStatementSubstraitPlan is not supported"):
        root.flight.get_flight_info(substrait, root.options)


def test_update_statements_say_writes_go_through_ingest(host, root):
    update = flight.FlightDescriptor.for_command(any_message("CommandStatementUpdate", field(1, b"DELETE FROM raw.orders")))
    writer, _ = root.flight.do_put(update, pa.schema([]), root.options)
    with pytest.raises(pa.ArrowInvalid, match="ingest"):
        writer.close()
    with pytest.raises(AdbcError, match="INVALID_ARGUMENT.*ingest"):
        query(host, "DELETE FROM raw.orders")
    assert root.rows("raw.orders") == 1_000


def test_malformed_protobuf_is_invalid(root):
    for cmd in (b"\x0a\xff\xff\xff", any_message("CommandStatementQuery", b"\x0a\x05ab")):
        with pytest.raises(pa.ArrowInvalid, match="malformed"):
            root.flight.get_flight_info(flight.FlightDescriptor.for_command(cmd), root.options)
    with pytest.raises(pa.ArrowInvalid, match="is not a Flight SQL command"):
        cmd = field(1, b"type.googleapis.com/other.Message") + field(2, b"")
        root.flight.get_flight_info(flight.FlightDescriptor.for_command(cmd), root.options)


def prepare(client: Client, sql: str) -> bytes:
    body = any_message("ActionCreatePreparedStatementRequest", field(1, sql.encode()))
    (result,) = client.flight.do_action(flight.Action("CreatePreparedStatement", body), client.options)
    return fields(fields(result.body.to_pybytes())[2])[1]


def prepared_info(client: Client, handle: bytes) -> flight.FlightInfo:
    cmd = any_message("CommandPreparedStatementQuery", field(1, handle))
    return client.flight.get_flight_info(flight.FlightDescriptor.for_command(cmd), client.options)


def test_prepared_statement_handles_are_the_preparers_until_closed(host, root):
    handle = prepare(root, "SELECT count(*) AS n FROM raw.orders")
    info = prepared_info(root, handle)
    assert root.flight.do_get(info.endpoints[0].ticket, root.options).read_all().to_pylist() == [{"n": 1000}]
    reader = Client(host.location, user="reader", password=PASSWORD)
    with pytest.raises(pa.ArrowKeyError, match="prepared statement .* not found"):
        prepared_info(reader, handle)
    with pytest.raises(pa.ArrowKeyError, match="prepared statement .* not found"):
        prepared_info(root, b"from-another-host")
    close = any_message("ActionClosePreparedStatementRequest", field(1, handle))
    assert list(root.flight.do_action(flight.Action("ClosePreparedStatement", close), root.options)) == []
    with pytest.raises(pa.ArrowKeyError, match="prepared statement .* not found"):
        prepared_info(root, handle)
    # Its ticket needs no state: it still reads what it described.
    assert root.flight.do_get(info.endpoints[0].ticket, root.options).read_all().num_rows == 1


def test_permissions_hold_as_for_json_commands(host, root):
    with connect(host, "reader") as conn:
        (catalog,) = conn.adbc_get_objects().read_all().to_pylist()
        schemas = {s["db_schema_name"] for s in catalog["catalog_db_schemas"]}
        assert schemas == {"raw"}
        with conn.cursor() as cur:
            with pytest.raises(AdbcError, match="reader may not write raw.orders"):
                cur.adbc_ingest("orders", pa.table({"a": [1]}), mode="append", db_schema_name="raw")
            with pytest.raises(AdbcError, match='reader may not read "marts.summary"'):
                cur.execute("SELECT * FROM marts.summary")
            cur.execute("SELECT count(*) AS n FROM raw.orders")
            assert cur.fetch_arrow_table().column("n").to_pylist() == [1000]
    reader = Client(host.location, user="reader", password=PASSWORD)
    with pytest.raises(flight.FlightUnauthorizedError, match='reader may not read "marts.summary"'):
        reader.read({"sql": "SELECT * FROM marts.summary"})
    assert root.rows("raw.orders") == 1_000
