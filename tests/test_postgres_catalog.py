"""The SQL catalog on a real PostgreSQL server (`--catalog postgres://...`): the same
tables, commits, time travel, exactly-once uploads and maintenance as on SQLite, in
the layout other engines read; an unreachable or wrong catalog stops the host with
a message naming it."""
from __future__ import annotations

import subprocess

import pytest

import data
from floe_client import HOST_BIN, Client, Host
from postgres import Postgres


@pytest.fixture(scope="module")
def pg():
    with Postgres() as server:
        yield server


def test_tables_live_in_postgres_and_survive_a_restart(pg, tmp_path):
    warehouse = tmp_path / "warehouse"
    with Host(warehouse, "--catalog", pg.uri) as host:
        client = Client(host.location)
        first = client.put({"table": "pg.events"}, data.table(1_000))
        client.put({"table": "pg.events"}, data.table(500, start=1_000))
        assert client.rows("pg.events") == 1_500
        again = client.put({"table": "pg.events", "idempotency_key": "k"}, data.table(10, start=5_000))
        assert client.put({"table": "pg.events", "idempotency_key": "k"}, data.table(10, start=5_000))["duplicate"]
        assert again["duplicate"] is False
        assert [t["name"] for t in client.action("list_tables")] == ["pg.events"]
    assert not (warehouse / "catalog.db").exists()  # nothing went to SQLite
    # The catalog's rows, in the layout pyiceberg and Java's JDBC catalog share.
    row = pg.sql("SELECT catalog_name, table_namespace, table_name FROM iceberg_tables")
    assert row.strip() == "floe|pg|events"
    location = pg.sql("SELECT metadata_location FROM iceberg_tables").strip()
    assert location.endswith(".metadata.json")
    with Host(warehouse, "--catalog", pg.uri) as host:
        client = Client(host.location)
        assert client.rows("pg.events") == 1_510
        assert client.read({"table": "pg.events", "snapshot_id": first["snapshot_id"]}).num_rows == 1_000
        got = client.read({"sql": "SELECT count(*) AS n FROM pg.events WHERE id < 1000"})
        assert got.column("n")[0].as_py() == 1_000
    # Maintenance from the command line, on the same catalog.
    out = subprocess.run([str(HOST_BIN), "tables", "expire", "pg.events", "--retain-last", "1", "--older-than",
                          "0s", "-w", str(warehouse), "--catalog", pg.uri], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with Host(warehouse, "--catalog", pg.uri) as host:
        client = Client(host.location)
        assert len(client.action("list_snapshots", {"table": "pg.events"})) == 1
        assert client.rows("pg.events") == 1_510


def test_concurrent_appends_all_land_through_the_postgres_swap(pg, tmp_path):
    import threading

    with Host(tmp_path / "warehouse", "--catalog", pg.uri) as host:
        client = Client(host.location)
        client.put({"table": "pg.busy"}, data.table(10))
        errors = []

        def appender(n):
            c = Client(host.location)
            try:
                for i in range(10):
                    c.put({"table": "pg.busy"}, data.table(10, start=10_000 * (n + 1) + i * 10))
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=appender, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert client.rows("pg.busy") == 10 + 4 * 10 * 10


def test_a_host_that_loses_postgres_answers_unavailable_and_recovers(pg, tmp_path):
    import pyarrow.flight as flight

    with Host(tmp_path / "warehouse", "--catalog", pg.uri) as host:
        client = Client(host.location)
        client.put({"table": "pg.flaky"}, data.table(10))
        pg.pause()
        try:
            with pytest.raises(flight.FlightUnavailableError, match="catalog database is unreachable"):
                client.read({"table": "pg.flaky"})
        finally:
            pg.resume()
        assert client.rows("pg.flaky") == 10
        client.put({"table": "pg.flaky"}, data.table(10, start=10))
        assert client.rows("pg.flaky") == 20


@pytest.mark.parametrize("catalog, message", [
    ("postgres://floe:secret@127.0.0.1:1/floe", "cannot open the catalog postgres://floe:***@127.0.0.1:1/floe"),
    ("mysql://floe@127.0.0.1/floe", "use a postgres:// URI"),
])
def test_a_catalog_the_host_cannot_use_stops_it_with_a_message(tmp_path, catalog, message):
    result = subprocess.run([str(HOST_BIN), "serve", "-w", str(tmp_path / "warehouse"), "-p", "0",
                             "--catalog", catalog], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert "secret" not in result.stderr
