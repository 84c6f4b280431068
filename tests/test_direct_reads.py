"""Direct reads: small Iceberg table reads the host serves from the Parquet files itself
(row groups and pages pruned by statistics, the filter applied while decoding) return
exactly what DuckDB returns for the same read — same schema, same rows — and reads the
host cannot evaluate exactly are still DuckDB's. (The whole suite also runs with
direct reads off: FLOE_DIRECT_READS=false.)"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import data
from floe_client import Client, Host, free_port
from iceberg_catalog import catalog
from test_ops import scrape

TABLE = "dr.t"

# (read, whether the host serves it itself)
READS = [
    ({"filter": "id >= 5000 AND id < 5100"}, True),
    ({"filter": "id = 123456"}, True),
    ({"filter": "id BETWEEN 100 AND 20000 AND name = 'name-100'"}, True),
    ({"filter": "day < '1970-01-10'"}, True),
    ({"filter": "day >= DATE '1970-12-31' AND id < 3000"}, True),
    ({"filter": "ts < '2023-11-14 22:14:00'"}, True),
    ({"filter": "wall >= '2024-03-01 12:00:00' AND wall < '2024-03-01 12:00:01'"}, True),
    ({"filter": "qty > 5 AND qty <= 7 AND id < 20000"}, True),
    ({"filter": "name > 'name-995'"}, True),
    ({"filter": "(id > 290000) AND (1000 > qty)"}, True),
    ({"filter": "id > 100000000"}, True),
    ({"columns": ["name", "id"], "filter": "id < 50", "limit": 10}, True),
    ({"columns": ["ID", "Name"], "filter": "ID < 50"}, True),
    ({"columns": ["ts", "day", "price", "flag", "amount", "wall"], "filter": "id >= 299990"}, True),
    ({"limit": 5}, True),
    ({"limit": 0}, True),
    ({"filter": "id < 50 OR id > 299950"}, False),
    ({"filter": "amount < 10"}, False),
    ({"filter": "name IS NULL AND id < 1000"}, False),
    ({"filter": "-id > -20"}, False),
    ({"filter": "CAST(id AS INTEGER) < 20"}, False),
]


def fixture(rows: int, start: int = 0) -> pa.Table:
    """The test data, with an int (Iceberg int) and a zoneless timestamp column."""
    t = data.table(rows, start=start)
    qty = pc.cast(pc.bit_wise_and(t.column("id"), 15), pa.int32())
    # One second per id from 2024-03-01 12:00:00.
    wall = pc.cast(pc.add(pc.multiply(t.column("id"), 1_000_000), 1_709_294_400_000_000), pa.timestamp("us"))
    return t.append_column("qty", qty).append_column("wall", wall)


def reads_through(warehouse, direct: bool) -> tuple[list[pa.Table], list[float]]:
    metrics = free_port()
    args = ["--direct-reads", str(direct).lower(), "--metrics-address", f"127.0.0.1:{metrics}"]
    results, served = [], []
    with Host(warehouse, *args) as host:
        client = Client(host.location)
        for command, _ in READS:
            before = scrape(metrics).get("floe_direct_reads_total", 0)
            results.append(client.read({"table": TABLE, **command}))
            served.append(scrape(metrics).get("floe_direct_reads_total", 0) - before)
        # A ticket sent without GetFlightInfo is served the same way.
        command = {"table": TABLE, "filter": "id >= 5000 AND id < 5100"}
        assert client.get(command).equals(results[0])
    return results, served


def same_result(got: pa.Table, want: pa.Table, command: dict) -> None:
    assert got.schema == want.schema, command
    assert got.schema.metadata == want.schema.metadata, command
    if "limit" in command:
        # Any `limit` rows of the read: DuckDB's choice and the host's may differ.
        assert got.num_rows == want.num_rows, command
        return
    key = [(name, "ascending") for name in got.schema.names]
    assert got.sort_by(key).equals(want.sort_by(key)), command


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("direct") / "warehouse"
    with Host(warehouse) as host:
        client = Client(host.location)
        # One large file (several row groups, many pages), then small ones.
        client.put({"table": TABLE}, fixture(280_000))
        for i in range(3):
            client.put({"table": TABLE}, fixture(5_000, start=280_000 + i * 5_000))
    # A file written by another engine (pyarrow: no page index, large strings).
    table = catalog(warehouse).load_table(TABLE)
    table.append(fixture(5_000, start=295_000).cast(table.schema().as_arrow()))
    return warehouse


def test_direct_reads_return_exactly_what_duckdb_returns(warehouse):
    got, served = reads_through(warehouse, direct=True)
    want, unserved = reads_through(warehouse, direct=False)
    assert sum(unserved) == 0
    for (command, direct), g, w, n in zip(READS, got, want, served):
        same_result(g, w, command)
        assert n == (1 if direct else 0), command
    # The reads found rows where rows were expected (the fixture is not vacuous).
    assert got[0].num_rows == 100 and got[2].num_rows > 0 and got[6].num_rows == 1


def test_direct_reads_follow_commits(warehouse):
    with Host(warehouse) as host:
        client = Client(host.location)
        command = {"table": TABLE, "filter": "id >= 299990", "columns": ["id"]}
        assert client.read(command).num_rows == 10
        catalog(warehouse).load_table(TABLE).append(fixture(10, start=300_000).cast(
            catalog(warehouse).load_table(TABLE).schema().as_arrow()))
        assert client.read(command).num_rows == 20
        client.action("compact_table", {"table": TABLE})
        assert sorted(client.read(command).column("id").to_pylist()) == list(range(299_990, 300_010))
        client.put({"table": TABLE, "mode": "overwrite"}, fixture(100, start=299_995))
        assert sorted(client.read(command).column("id").to_pylist()) == list(range(299_995, 300_095))


def test_a_missing_data_file_is_reported(tmp_path):
    warehouse = tmp_path / "warehouse"
    with Host(warehouse) as host:
        client = Client(host.location)
        client.put({"table": TABLE}, fixture(100))
        assert client.read({"table": TABLE, "filter": "id < 10"}).num_rows == 10
    for path in (warehouse / "iceberg").rglob("*.parquet"):
        path.unlink()
    with Host(warehouse) as host:
        with pytest.raises(KeyError, match="a file the read needs is not there"):
            Client(host.location).read({"table": TABLE, "filter": "id < 10"})
