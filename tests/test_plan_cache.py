"""The plan cache: reads served from cached table plans see every commit at once (floe's
and other engines'), stay exact when another engine evolved the schema, and the cache
stays within its bounds. (The whole suite also runs with the cache
off: FLOE_PLAN_CACHE_TABLES=0.)"""
from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.types import StringType

import data
from floe_client import Client, Host, free_port
from iceberg_catalog import catalog
from test_ops import scrape


def sorted_by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id")


@pytest.fixture
def warehouse(tmp_path):
    return tmp_path / "warehouse"


def test_reads_see_other_engines_commits_at_once(warehouse):
    with Host(warehouse) as host:
        client = Client(host.location)
        client.put({"table": "pc.t"}, data.table(100))
        for _ in range(3):  # cached from here on
            assert client.rows("pc.t") == 100
            assert client.read({"sql": "SELECT count(*) AS n FROM pc.t"}).column("n")[0].as_py() == 100
        table = catalog(warehouse).load_table("pc.t")
        table.append(data.table(50, start=1000))
        assert client.read({"table": "pc.t"}).num_rows == 150
        assert client.read({"sql": "SELECT count(*) AS n FROM pc.t"}).column("n")[0].as_py() == 150
        table.overwrite(data.table(7, start=5000))
        got = client.read({"table": "pc.t", "columns": ["id"]})
        assert sorted(got.column("id").to_pylist()) == list(range(5000, 5007))
        # floe's own commits, and a compaction, likewise.
        for i in range(3):
            client.put({"table": "pc.t"}, data.table(1, start=6000 + i))
        assert client.rows("pc.t") == 10
        client.action("compact_table", {"table": "pc.t"})
        assert client.read({"table": "pc.t"}).num_rows == 10


def test_schema_changes_by_another_engine_read_exactly(warehouse):
    with Host(warehouse) as host:
        client = Client(host.location)
        client.put({"table": "pc.evolve"}, data.table(20))
        assert client.read({"table": "pc.evolve"}).num_rows == 20
        table = catalog(warehouse).load_table("pc.evolve")
        with table.update_schema() as update:
            update.add_column("note", StringType())
        table = catalog(warehouse).load_table("pc.evolve")
        newer = data.table(5, start=100).append_column("note", pa.array(["n"] * 5, pa.large_string()))
        table.append(newer.cast(table.schema().as_arrow()))
        got = sorted_by_id(client.read({"table": "pc.evolve"}))
        assert got.column("note").to_pylist() == [None] * 20 + ["n"] * 5
        with table.update_schema() as update:
            update.rename_column("name", "label")
        got = sorted_by_id(client.read({"table": "pc.evolve"}))
        want = sorted_by_id(catalog(warehouse).load_table("pc.evolve").scan().to_arrow())
        assert "label" in got.schema.names and "name" not in got.schema.names
        assert got.column("label").to_pylist() == want.column("label").to_pylist()
        assert got.column("id").to_pylist() == want.column("id").to_pylist()


def test_deletes_by_another_engine_are_seen(warehouse):
    with Host(warehouse) as host:
        client = Client(host.location)
        client.put({"table": "pc.del"}, data.table(100))
        assert client.rows("pc.del") == 100
        # pyiceberg deletes copy-on-write: the files holding deleted rows are rewritten.
        catalog(warehouse).load_table("pc.del").delete("id < 10")
        got = client.read({"table": "pc.del", "columns": ["id"]})
        assert sorted(got.column("id").to_pylist()) == list(range(10, 100))
        assert pc.min(got.column("id")).as_py() == 10


def test_the_cache_is_bounded_and_counted(warehouse):
    metrics = free_port()
    with Host(warehouse, "--plan-cache-tables", "2", "--metrics-address", f"127.0.0.1:{metrics}") as host:
        client = Client(host.location)
        for i in range(5):
            client.put({"table": f"pc.t{i}"}, data.table(10))
        before = scrape(metrics)
        for _ in range(3):
            for i in range(5):
                assert client.read({"table": f"pc.t{i}", "limit": 3}).num_rows == 3
        for _ in range(3):
            assert client.read({"table": "pc.t0", "limit": 3}).num_rows == 3
        after = scrape(metrics)
    assert after["floe_plan_cache_tables"] <= 2
    assert after["floe_plan_cache_bytes"] > 0
    assert after["floe_plan_cache_hits_total"] - before.get("floe_plan_cache_hits_total", 0) >= 4
    assert after["floe_plan_cache_misses_total"] > before.get("floe_plan_cache_misses_total", 0)


@pytest.mark.parametrize("cache_tables", ["1024", "0"])
def test_filtered_reads_skip_files_and_stay_exact(warehouse, cache_tables):
    metrics = free_port()
    args = ["--plan-cache-tables", cache_tables, "--metrics-address", f"127.0.0.1:{metrics}"]
    with Host(warehouse, *args) as host:
        client = Client(host.location)
        for i in range(4):  # four files: ids 0..99, 100..199, ...
            client.put({"table": "pc.files"}, data.table(100, start=i * 100))
        everything = client.read({"table": "pc.files"})
        before = scrape(metrics).get("floe_scan_files_skipped_total", 0)
        for where in [
            "id >= 150 AND id < 260",
            "id = 399",
            "id BETWEEN 90 AND 110 AND name = 'name-100'",
            "day < '1970-01-10'",
            "day >= DATE '1970-12-31'",
            "ts < '2023-11-14 22:14:00'",  # ids below 40
            "id > 1000",
            "id < 50 OR id > 350",
            "-id > -20",
        ]:
            got = client.read({"table": "pc.files", "filter": where}).sort_by("id")
            want = duckdb.sql(f"SELECT * FROM everything WHERE {where} ORDER BY id").to_arrow_table()
            assert got.equals(want.cast(got.schema)), where
        skipped = scrape(metrics).get("floe_scan_files_skipped_total", 0) - before
    # With the cache off, reads go through DuckDB's iceberg_scan, which prunes on its own.
    assert skipped >= 18 if cache_tables != "0" else skipped == 0
