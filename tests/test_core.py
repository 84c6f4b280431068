"""Host core acceptance: Iceberg writes and DuckDB reads over Arrow Flight."""
import json
import re
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest
from pyiceberg.catalog.sql import SqlCatalog

import data
from floe_client import HOST_BIN, Client, Host, free_port


# How pyarrow names the gRPC status codes in its messages.
PYARROW_NAMES = {
    "INVALID_ARGUMENT": "invalid argument",
    "NOT_FOUND": "not found",
    "ALREADY_EXISTS": "already exists",
    "PERMISSION_DENIED": "unauthorized",
}


@contextmanager
def grpc_error(code: str, match: str = ""):
    """Expect a Flight call to fail with this gRPC status code and message."""
    with pytest.raises(Exception) as err:
        yield err
    text = str(err.value)
    assert f"Flight returned {PYARROW_NAMES[code]} error" in text, text
    assert re.search(match, text), text


def sorted_by_id(t: pa.Table) -> pa.Table:
    return t.sort_by("id")


def assert_same_rows(got: pa.Table, expected: pa.Table):
    got = sorted_by_id(got).select(expected.column_names).cast(expected.schema)
    assert got.num_rows == expected.num_rows
    assert got.equals(sorted_by_id(expected)), "rows differ"


def test_million_rows_round_trip(client):
    expected = data.table(1_000_000, batch_rows=10_000)
    result = client.put({"table": "core.million", "mode": "create"}, expected, max_chunksize=10_000)
    assert result["rows"] == 1_000_000
    assert result["data_files"] >= 1 and result["snapshot_id"] > 0

    got = client.read({"table": "core.million"})
    assert got.schema.names == expected.schema.names
    assert got.column("price").type == pa.decimal128(12, 2)
    assert got.column("ts").type == pa.timestamp("us", tz="UTC")
    for column in expected.column_names[1:]:
        assert got.column(column).null_count == expected.column(column).null_count, column
    assert_same_rows(got, expected)


def test_append_overwrite_append_and_time_travel(client):
    first, second, third = data.table(1000, start=0), data.table(500, start=10_000), data.table(200, start=20_000)
    s1 = client.put({"table": "core.history"}, first)["snapshot_id"]
    client.put({"table": "core.history", "mode": "overwrite"}, second)
    client.put(["core", "history"], third)  # the descriptor PATH form appends

    snapshots = client.action("list_snapshots", {"table": "core.history"})
    assert [s["operation"] for s in snapshots] == ["append", "overwrite", "append"]
    assert snapshots[0]["snapshot_id"] == s1 and snapshots[-1]["current"]
    assert snapshots[2]["summary"]["total-records"] == "700"

    assert_same_rows(client.read({"table": "core.history", "snapshot_id": s1}), first)
    assert_same_rows(client.read({"table": "core.history"}), pa.concat_tables([second, third]))
    as_of = snapshots[1]["timestamp"]
    assert_same_rows(client.read({"table": "core.history", "as_of": as_of}), second)


def test_other_engines_read_the_same_rows(client, host):
    expected = data.table(50_000, batch_rows=5_000, seed=3)
    client.put({"table": "core.shared", "mode": "overwrite"}, expected)
    via_host = client.read({"table": "core.shared"})

    catalog = SqlCatalog(
        "floe", uri=f"sqlite:///{host.warehouse}/catalog.db", warehouse=f"file://{host.warehouse}/iceberg"
    )
    assert ("core",) in catalog.list_namespaces()
    table = catalog.load_table("core.shared")
    assert_same_rows(table.scan().to_arrow(), via_host)

    con = duckdb.connect()
    con.sql("LOAD iceberg")
    scanned = con.sql(f"SELECT * FROM iceberg_scan('{table.metadata_location}')").to_arrow_table()
    assert_same_rows(scanned, via_host)


@pytest.fixture(scope="module")
def big_table(client):
    client.put({"table": "core.big", "mode": "overwrite"}, data.reader(1_000_000, batch_rows=50_000, seed=5))
    return "core.big"


def selective(client: Client, table: str) -> pa.Table:
    return client.read(
        {"table": table, "columns": ["id", "name", "price"], "filter": "amount > 150 AND flag", "limit": 1234}
    )


def test_columns_filter_limit(client, big_table):
    got = selective(client, big_table)
    assert got.column_names == ["id", "name", "price"]
    assert got.num_rows == 1234
    full = client.read({"table": big_table, "columns": ["id", "amount", "flag"]})
    matching = full.filter(pc.and_(pc.greater(full["amount"], 150), full["flag"]))
    assert set(got["id"].to_pylist()) <= set(matching["id"].to_pylist())
    unlimited = client.read({"table": big_table, "columns": ["id"], "filter": "amount > 150 AND flag"})
    assert sorted(unlimited["id"].to_pylist()) == sorted(matching["id"].to_pylist())


def test_both_read_paths_agree(tmp_path):
    """The same warehouse read through the iceberg extension, then through read_parquet."""
    warehouse = tmp_path / "warehouse"
    reads = {
        "selective": {"table": "paths.big", "columns": ["id", "name", "price"], "filter": "amount > 150 AND flag"},
        "everything": {"table": "paths.big"},
        "sql": {"sql": "SELECT name, count(*) AS n, sum(price) AS total FROM paths.big GROUP BY name"},
    }
    with Host(warehouse, "--iceberg-reader", "extension") as host:
        client = Client(host.location)
        assert client.action("healthcheck")["iceberg_reader"] == "extension"
        first = client.put({"table": "paths.big"}, data.reader(1_000_000, batch_rows=50_000, seed=5))["snapshot_id"]
        client.put({"table": "paths.big"}, data.table(1000, start=2_000_000))
        reads["old"] = {"table": "paths.big", "snapshot_id": first, "columns": ["id"], "filter": "id % 1000 = 0"}
        via_extension = {name: client.read(command) for name, command in reads.items()}
        limited = client.read({**reads["selective"], "limit": 1234})
    with Host(warehouse, "--iceberg-reader", "read-parquet") as host:
        client = Client(host.location)
        assert client.action("healthcheck")["iceberg_reader"] == "read_parquet"
        for name, command in reads.items():
            got, expected = client.read(command), via_extension[name]
            key = "id" if "id" in expected.column_names else "name"
            assert got.schema.names == expected.schema.names, name
            assert got.sort_by(key).equals(expected.sort_by(key)), name
        assert via_extension["everything"].num_rows == 1_001_000
        assert via_extension["old"].num_rows == 1000
        assert limited.column_names == ["id", "name", "price"] and limited.num_rows == 1234
        assert client.read({**reads["selective"], "limit": 1234}).num_rows == 1234


def test_sql_tickets(client, big_table):
    got = client.read({"sql": f"SELECT flag, count(*) AS n FROM {big_table} GROUP BY flag ORDER BY flag NULLS LAST"})
    assert got.column_names == ["flag", "n"]
    assert sum(got["n"].to_pylist()) == 1_000_000
    info = client.info({"sql": f"SELECT id, name FROM {big_table} WHERE false"})
    assert info.schema.names == ["id", "name"]
    assert client.get({"sql": "SELECT 42 AS answer"})["answer"].to_pylist() == [42]


def test_duckdb_target(client):
    expected = data.table(10_000, seed=9)
    assert client.put({"table": "local.events", "target": "duckdb", "mode": "create"}, expected)["rows"] == 10_000
    client.put({"table": "local.events", "target": "duckdb"}, data.table(100, start=50_000))
    assert client.rows("local.events") == 10_100
    client.put({"table": "local.events", "target": "duckdb", "mode": "overwrite"}, expected)
    assert_same_rows(client.read({"table": "local.events"}), expected)
    tables = {t["name"]: t for t in client.action("list_tables")}
    assert tables["local.events"]["target"] == "duckdb" and tables["local.events"]["rows"] == 10_000
    with grpc_error("ALREADY_EXISTS", "exists as a DuckDB table"):
        client.put({"table": "local.events"}, expected)


def test_actions(client):
    names = {a.type for a in client.flight.list_actions()}
    assert {"healthcheck", "list_tables", "get_schema", "drop_table", "list_snapshots"} <= names
    client.put({"table": "core.doomed"}, data.table(10))
    tables = {t["name"]: t for t in client.action("list_tables")}
    assert tables["core.doomed"]["rows"] == 10 and tables["core.doomed"]["target"] == "iceberg"
    assert [f["name"] for f in tables["core.doomed"]["schema"]] == data.SCHEMA.names
    schema = client.action("get_schema", {"sql": "SELECT id, name FROM core.doomed"})["schema"]
    assert [f["name"] for f in schema] == ["id", "name"]
    flights = {tuple(f.descriptor.path): f for f in client.flight.list_flights()}
    assert flights[(b"core", b"doomed")].schema.names == data.SCHEMA.names
    client.action("drop_table", {"table": "core.doomed"})
    with grpc_error("NOT_FOUND", "table core.doomed not found"):
        client.read({"table": "core.doomed"})


def test_small_appends_are_compacted_and_lose_nothing(client, host):
    """Every 100-row append adds a data file; past 16 the host rewrites them in the
    background while appends go on, and every row stays, once, for every reader."""
    parts = [data.table(100, start=1000 * i, seed=i) for i in range(40)]
    client.put({"table": "core.trickle", "mode": "overwrite"}, parts[0])
    for part in parts[1:]:
        client.put({"table": "core.trickle", "mode": "append"}, part)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        snapshots = client.action("list_snapshots", {"table": "core.trickle"})
        if any(s["operation"] == "replace" for s in snapshots) and snapshots[-1]["current"]:
            break
        time.sleep(0.2)
    replaces = [s for s in snapshots if s["operation"] == "replace"]
    assert replaces, "no compaction within 30 s"
    assert int(replaces[0]["summary"]["deleted-data-files"]) >= 16
    expected = pa.concat_tables(parts)
    assert_same_rows(client.read({"table": "core.trickle"}), expected)
    assert_same_rows(client.read({"sql": "SELECT * FROM core.trickle"}), expected)
    catalog = SqlCatalog(
        "floe", uri=f"sqlite:///{host.warehouse}/catalog.db", warehouse=f"file://{host.warehouse}/iceberg"
    )
    assert_same_rows(catalog.load_table("core.trickle").scan().to_arrow(), expected)
    # The snapshot before the first compaction still reads its own rows.
    before = replaces[0]["parent_id"]
    old = client.read({"table": "core.trickle", "snapshot_id": before})
    assert old.num_rows == int(next(s for s in snapshots if s["snapshot_id"] == before)["summary"]["total-records"])


def test_compact_table_action(client):
    client.put({"table": "core.few", "mode": "overwrite"}, data.table(10))
    client.put({"table": "core.few", "mode": "append"}, data.table(10, start=10))
    done = client.action("compact_table", {"table": "core.few"})
    assert done["compacted"] and done["data_files"] == 1
    assert client.rows("core.few") == 20
    again = client.action("compact_table", {"table": "core.few"})
    assert not again["compacted"] and again["snapshot_id"] is None
    with grpc_error("NOT_FOUND", "table core.nope not found"):
        client.action("compact_table", {"table": "core.nope"})


# --- bad input -------------------------------------------------------------------------

def test_unknown_table_is_not_found(client):
    with grpc_error("NOT_FOUND", "table core.nope not found"):
        client.read({"table": "core.nope"})
    with grpc_error("NOT_FOUND", "table core.nope not found"):
        client.get({"table": "core.nope"})
    with grpc_error("NOT_FOUND", "table core.nope not found"):
        client.action("list_snapshots", {"table": "core.nope"})


def test_malformed_json_quotes_the_error(client):
    descriptor = flight.FlightDescriptor.for_command(b'{"table": "core.big"')
    with grpc_error("INVALID_ARGUMENT", "malformed JSON in read command: EOF while parsing"):
        client.flight.get_flight_info(descriptor)
    with grpc_error("INVALID_ARGUMENT", "unknown field `colums`"):
        client.read({"table": "core.big", "colums": ["id"]})


def test_mismatched_append_changes_nothing(client):
    client.put({"table": "core.strict", "mode": "overwrite"}, data.table(100))
    wrong = data.table(10).drop_columns(["name"]).append_column("name", pa.array(range(10), pa.int64()))
    with grpc_error("INVALID_ARGUMENT", "cannot append to core.strict: column `name` is Int64 in the upload but Utf8"):
        client.put({"table": "core.strict"}, wrong)
    with grpc_error("INVALID_ARGUMENT", "`extra` is not in the table"):
        client.put({"table": "core.strict"}, data.table(10).append_column("extra", pa.array(range(10))))
    assert client.rows("core.strict") == 100
    assert len(client.action("list_snapshots", {"table": "core.strict"})) == 1


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE core.strict",
        "DROP VIEW core.strict",
        "INSERT INTO core.strict SELECT * FROM core.strict",
        "CREATE TABLE core.x AS SELECT 1 AS a",
        "DELETE FROM local.refuse",
        "UPDATE local.refuse SET id = 0",
        "DROP TABLE local.refuse",
        "COPY (SELECT 1) TO '/tmp/floe-escape.csv'",
        "COPY local.refuse TO 'out.csv'",
        "ATTACH '/tmp/floe-escape.db' AS x",
        "SET enable_external_access = true",
        "SELECT 1); DROP TABLE local.refuse; SELECT * FROM (SELECT 1",
        "SELECT 1; DROP TABLE local.refuse",
        "DROP TABLE local.refuse; SELECT 1",
        "CREATE TABLE core.x AS SELECT 1 AS a; SELECT 1",
        "FROM (DROP TABLE local.refuse)",
    ],
)
def test_sql_tickets_are_read_only(client, sql):
    client.put({"table": "core.strict", "mode": "overwrite"}, data.table(100))
    client.put({"table": "local.refuse", "target": "duckdb", "mode": "overwrite"}, data.table(10))
    for attempt in (client.read, client.get):
        with pytest.raises(Exception) as err:
            attempt({"sql": sql})
        text = str(err.value)
        assert "invalid argument error" in text or "unauthorized error" in text, text
    assert client.rows("core.strict") == 100
    assert client.rows("local.refuse") == 10
    assert "core.x" not in {t["name"] for t in client.action("list_tables")}


def test_non_queries_are_named_as_such(client):
    client.put({"table": "local.named", "target": "duckdb", "mode": "overwrite"}, data.table(10))
    with grpc_error("INVALID_ARGUMENT", "only a single read-only query .* is allowed"):
        client.read({"sql": "DELETE FROM local.named"})
    with grpc_error("INVALID_ARGUMENT", "only a single read-only query .* does not parse as one"):
        client.read({"sql": "SELECT 1; SELECT 2"})
    assert client.rows("local.named") == 10


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('../../../etc/passwd')",
    ],
)
def test_file_escaping_sql_is_refused(client, sql):
    with grpc_error("PERMISSION_DENIED", "outside the warehouse"):
        client.read({"sql": sql})


def vanish_mid_upload(host: Host, command: dict):
    """Another process starts an upload, sends half of it and dies without a goodbye."""
    script = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(Path(data.__file__).parent)!r})
        import data, pyarrow.flight as flight
        client = flight.FlightClient({host.location!r})
        descriptor = flight.FlightDescriptor.for_command({json.dumps(command)!r})
        writer, _ = client.do_put(descriptor, data.SCHEMA)
        for i in range(50):
            writer.write_batch(data.batch(100_000 + i * 10_000, 10_000))
        os._exit(3)
        """
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 3


def test_aborted_upload_commits_nothing(client, host):
    client.put({"table": "core.fragile", "mode": "overwrite"}, data.table(1000))
    data_files = lambda: sorted((host.warehouse / "iceberg" / "core").glob("fragile-*/data/*.parquet"))  # noqa: E731
    before = data_files()
    vanish_mid_upload(host, {"table": "core.fragile"})
    deadline = time.monotonic() + 30
    while data_files() != before and time.monotonic() < deadline:
        time.sleep(0.2)  # the host notices the dead stream, then cleans up
    assert data_files() == before, "the aborted upload left data files behind"
    assert client.rows("core.fragile") == 1000
    assert len(client.action("list_snapshots", {"table": "core.fragile"})) == 1


def test_aborted_first_upload_leaves_no_table(client, host):
    vanish_mid_upload(host, {"table": "ghost.t"})
    time.sleep(1)
    assert "ghost.t" not in {t["name"] for t in client.action("list_tables")}
    catalog = SqlCatalog("floe", uri=f"sqlite:///{host.warehouse}/catalog.db")
    assert ("ghost",) not in catalog.list_namespaces()
    assert not list((host.warehouse / "iceberg").glob("ghost/*/data/*.parquet"))


def test_aborted_duckdb_upload_rolls_back(client, host):
    client.put({"table": "local.fragile", "target": "duckdb", "mode": "overwrite"}, data.table(1000))
    vanish_mid_upload(host, {"table": "local.fragile", "target": "duckdb", "mode": "overwrite"})
    time.sleep(1)
    assert client.rows("local.fragile") == 1000


def test_clean_shutdown_and_startup_log(tmp_path):
    host = Host(tmp_path / "warehouse").start()
    Client(host.location).put({"table": "s.t"}, data.table(10))
    assert host.stop() == 0
    log = host.log()
    assert f"127.0.0.1:{host.port}" in log and "listening" in log
    assert "Iceberg tables are read by DuckDB via its iceberg extension" in log
    assert "SIGTERM: draining" in log and "floe host stopped" in log
    with Host(tmp_path / "warehouse") as again:  # a restarted host serves the same tables
        assert Client(again.location).rows("s.t") == 10


def test_put_result_metadata(client):
    result = client.put({"table": "core.meta", "mode": "create"}, data.table(123))
    assert set(result) >= {"rows", "snapshot_id", "data_files"}
    assert result["rows"] == 123 and result["data_files"] == 1
    with grpc_error("ALREADY_EXISTS", "table core.meta already exists"):
        client.put({"table": "core.meta", "mode": "create"}, data.table(1))
    with grpc_error("INVALID_ARGUMENT", "unknown variant `upsert`"):
        client.put({"table": "core.meta", "mode": "upsert"}, data.table(1))


def test_changes_by_other_engines_are_seen(tmp_path):
    warehouse = tmp_path / "warehouse"
    catalog = lambda: SqlCatalog("floe", uri=f"sqlite:///{warehouse}/catalog.db")  # noqa: E731
    with Host(warehouse) as host:
        client = Client(host.location)
        client.put({"table": "ext.t"}, data.table(100))
        catalog().load_table("ext.t").append(data.table(50, start=1000))  # pyiceberg commits
        assert client.rows("ext.t") == 150
        assert client.read({"table": "ext.t"}).num_rows == 150
        assert [s["operation"] for s in client.action("list_snapshots", {"table": "ext.t"})] == ["append", "append"]
    catalog().drop_table("ext.t")  # while no host runs
    with Host(warehouse) as host:
        with grpc_error("NOT_FOUND", "ext.t|t does not exist"):
            Client(host.location).read({"sql": "SELECT * FROM ext.t"})


def test_large_messages_and_get_schema(client):
    one_batch = data.table(300_000).combine_chunks()  # a single ~17 MB message
    assert client.put({"table": "core.wide", "mode": "overwrite"}, one_batch)["rows"] == 300_000
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"table": "core.wide", "columns": ["ts", "id"]}))
    assert client.flight.get_schema(descriptor).schema.names == ["ts", "id"]
    assert client.flight.get_schema(flight.FlightDescriptor.for_path("core", "wide")).schema.names == data.SCHEMA.names


def test_config_file(tmp_path):
    config = tmp_path / "floe.toml"
    port = free_port()
    config.write_text(f'warehouse = "{tmp_path / "configured"}"\nport = {port}\niceberg_reader = "read_parquet"\n')
    with Host(tmp_path / "configured", port=port, serve_args=["serve", "--config", str(config)]) as host:
        assert Client(host.location).action("healthcheck")["iceberg_reader"] == "read_parquet"
    assert (tmp_path / "configured" / "catalog.db").exists()
    config.write_text("prot = 1\n")
    result = subprocess.run([str(HOST_BIN), "serve", "--config", str(config)], capture_output=True, text=True)
    assert result.returncode != 0 and 'unknown setting "prot"' in result.stderr and "port" in result.stderr


def test_readers_never_see_an_empty_table_during_overwrites(client):
    import threading

    client.put({"table": "core.flip", "mode": "overwrite"}, data.table(1000))
    seen, done = [], threading.Event()

    def read_counts():
        while not done.is_set():
            seen.append(client.rows("core.flip"))
            seen.append(client.read({"table": "core.flip", "columns": ["id"]}).num_rows)

    reader = threading.Thread(target=read_counts)
    reader.start()
    for i in range(6):
        client.put({"table": "core.flip", "mode": "overwrite"}, data.table(2000 if i % 2 == 0 else 1000))
    done.set()
    reader.join()
    assert seen and set(seen) <= {1000, 2000}, set(seen)
    assert len(client.action("list_snapshots", {"table": "core.flip"})) == 7


def test_host_killed_mid_upload_loses_only_that_upload(tmp_path):
    import threading

    warehouse = tmp_path / "warehouse"
    host = Host(warehouse).start()
    client = Client(host.location)
    client.put({"table": "crash.t"}, data.table(1000))
    failure = []

    def upload():
        try:
            Client(host.location).put({"table": "crash.t"}, data.reader(5_000_000, batch_rows=50_000))
        except Exception as err:  # the host dies under it
            failure.append(err)

    uploader = threading.Thread(target=upload)
    uploader.start()
    time.sleep(1.0)
    host.proc.kill()  # SIGKILL: no cleanup, mid-upload
    host.stop()
    uploader.join()
    assert failure, "the upload should have failed with the host gone"
    with Host(warehouse) as again:
        client = Client(again.location)
        assert client.rows("crash.t") == 1000
        assert len(client.action("list_snapshots", {"table": "crash.t"})) == 1
        client.put({"table": "crash.t"}, data.table(10, start=5000))  # and it takes writes again
        assert client.rows("crash.t") == 1010
