"""Partitioned tables: `partition_by` written as an Iceberg partition spec, uploads
split into files by partition while streaming, the same rows read back by floe,
pyiceberg and DuckDB, and filtered reads that leave other partitions' files alone."""
from __future__ import annotations

import datetime as dt
import os

import duckdb
import pyarrow as pa
import pytest

import data
from floe_client import Client, Host, free_port
from iceberg_catalog import catalog
from test_ops import scrape


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    metrics = free_port()
    warehouse = tmp_path_factory.mktemp("partitions") / "warehouse"
    with Host(warehouse, "--metrics-address", f"127.0.0.1:{metrics}") as h:
        h.metrics = metrics
        h.warehouse = warehouse
        yield h


@pytest.fixture(scope="module")
def client(host):
    return Client(host.location)


def by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id")


def listed(client: Client, name: str) -> dict:
    return next(t for t in client.action("list_tables") if t["name"] == name)


@pytest.mark.parametrize(
    "partition_by, field, transform",
    [
        (["day(ts)"], "ts_day", "day"),
        (["hour(ts)"], "ts_hour", "hour"),
        (["month(day)"], "day_month", "month"),
        (["year(day)"], "day_year", "year"),
        (["bucket(4, id)"], "id_bucket", "bucket[4]"),
        (["truncate(3, name)"], "name_trunc", "truncate[3]"),
        (["flag"], "flag", "identity"),
    ],
)
def test_each_transform_writes_and_reads_back(host, client, partition_by, field, transform):
    name = f"parts.{field}"
    rows = data.table(2000)
    client.put({"table": name, "mode": "overwrite", "partition_by": partition_by}, rows)
    assert listed(client, name)["partition_by"] == partition_by
    got = by_id(client.read({"table": name}))
    assert got.equals(rows.cast(got.schema))
    table = catalog(host.warehouse).load_table(name)
    [spec_field] = table.spec().fields
    assert (spec_field.name, str(spec_field.transform)) == (field, transform)
    # More than one partition, each file holding one partition value, as pyiceberg reads it.
    files = table.inspect.files().to_pylist()
    values = {tuple(f["partition"].values()) for f in files}
    assert len(values) > 1 and len(files) >= len(values)
    assert by_id(table.scan().to_arrow()).equals(rows.cast(got.schema))


def test_two_fields_and_duckdb_agree(host, client):
    rows = data.table(3000)
    client.put({"table": "parts.two", "mode": "overwrite", "partition_by": ["month(ts)", "bucket(2, id)"]}, rows)
    location = catalog(host.warehouse).load_table("parts.two").metadata_location
    con = duckdb.connect()
    con.sql("LOAD iceberg")
    scanned = con.sql(f"SELECT * FROM iceberg_scan('{location}') ORDER BY id").to_arrow_table()
    assert scanned.num_rows == 3000
    assert scanned.column("id").to_pylist() == rows.column("id").to_pylist()
    assert client.read({"sql": "SELECT count(*) AS n FROM parts.two WHERE flag"}).column("n")[0].as_py() == \
        sum(1 for f in rows.column("flag").to_pylist() if f)


def test_a_days_read_skips_other_days_files(host, client):
    # 30 days of rows, one partition each.
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    ts = [start + dt.timedelta(minutes=29 * i) for i in range(1500)]
    rows = pa.table({"id": pa.array(range(1500), pa.int64()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))})
    client.put({"table": "parts.days", "mode": "overwrite", "partition_by": ["day(ts)"]}, rows)
    files = len(catalog(host.warehouse).load_table("parts.days").inspect.files())
    assert files == 31  # 1500 rows every 29 minutes span 31 calendar days
    before = scrape(host.metrics).get("floe_scan_files_skipped_total", 0)
    where = "ts >= '2026-11-10' AND ts < '2026-11-11'"
    got = client.get({"table": "parts.days", "filter": where})  # DoGet alone: planned once
    skipped = scrape(host.metrics)["floe_scan_files_skipped_total"] - before
    want = [i for i, t in enumerate(ts) if dt.datetime(2026, 11, 10, tzinfo=dt.timezone.utc) <= t
            < dt.datetime(2026, 11, 11, tzinfo=dt.timezone.utc)]
    assert sorted(got.column("id").to_pylist()) == want
    # With the plan cache off (FLOE_PLAN_CACHE_TABLES=0), DuckDB's iceberg_scan prunes on its own.
    assert skipped == (0 if os.environ.get("FLOE_PLAN_CACHE_TABLES") == "0" else files - 1)


def test_appends_keep_the_spec_and_overwrite_changes_it(host, client):
    client.put({"table": "parts.evolve", "partition_by": ["bucket(4, id)"]}, data.table(100))
    client.put({"table": "parts.evolve"}, data.table(100, start=100))  # no partition_by: the table's
    with pytest.raises(pa.ArrowInvalid, match=r"cannot append to parts.evolve with partition_by .*bucket\(4, id\)"):
        client.put({"table": "parts.evolve", "partition_by": ["day(ts)"]}, data.table(5, start=500))
    first = client.action("list_snapshots", {"table": "parts.evolve"})[-1]["snapshot_id"]
    client.put({"table": "parts.evolve", "mode": "overwrite", "partition_by": ["month(day)"]}, data.table(50))
    assert listed(client, "parts.evolve")["partition_by"] == ["month(day)"]
    table = catalog(host.warehouse).load_table("parts.evolve")
    assert [f.name for f in table.spec().fields] == ["day_month"] and len(table.specs()) == 2
    assert client.rows("parts.evolve") == 50
    old = client.read({"table": "parts.evolve", "snapshot_id": first})
    assert sorted(old.column("id").to_pylist()) == list(range(200))
    # Overwrite without partition_by keeps the table's partitioning, by column name.
    client.put({"table": "parts.evolve", "mode": "overwrite"}, data.table(30))
    assert listed(client, "parts.evolve")["partition_by"] == ["month(day)"]
    client.put({"table": "parts.evolve", "mode": "overwrite", "partition_by": []}, data.table(30))
    assert listed(client, "parts.evolve")["partition_by"] == []


def test_compaction_keeps_partitions_apart(host, client):
    for i in range(6):
        client.put({"table": "parts.small", "partition_by": ["bucket(2, id)"]}, data.table(20, start=i * 20))
    client.action("compact_table", {"table": "parts.small"})
    table = catalog(host.warehouse).load_table("parts.small")
    files = table.inspect.files().to_pylist()
    assert len(files) == 2
    for f in files:
        assert f["partition"]["id_bucket"] in (0, 1)
    assert by_id(table.scan().to_arrow()).column("id").to_pylist() == list(range(120))


@pytest.mark.parametrize(
    "partition_by, message",
    [
        (["day(name)"], r'partition_by item "day\(name\)": day does not apply to "name" of type string'),
        (["week(ts)"], r'partition_by item "week\(ts\)": unknown transform "week"'),
        (["nope"], r'partition_by item "nope": the table has no column "nope"'),
        (["bucket(0, id)"], r"bucket needs a positive whole number first"),
        (["day(ts) OR 1"], r'partition_by item "day\(ts\) OR 1": use a column, year\(c\)'),
        (["day(ts); DROP TABLE x"], r"it must be one expression"),
    ],
)
def test_bad_partition_by_names_the_item_and_writes_nothing(client, partition_by, message):
    with pytest.raises(pa.ArrowInvalid, match=message):
        client.put({"table": "parts.bad", "partition_by": partition_by}, data.table(10))
    assert "parts.bad" not in [t["name"] for t in client.action("list_tables")]


def test_a_failed_partitioned_upload_leaves_no_files(host, client):
    client.put({"table": "parts.cut", "partition_by": ["day(ts)"]}, data.table(100))
    table_dir = next((host.warehouse / "iceberg" / "parts").glob("cut-*"))
    before = sorted(p.name for p in table_dir.rglob("*.parquet"))
    with pytest.raises(pa.ArrowInvalid, match="announced 5000 rows"):
        client.put({"table": "parts.cut", "expect_rows": 5000}, data.table(3000, start=100))
    assert sorted(p.name for p in table_dir.rglob("*.parquet")) == before
    assert client.rows("parts.cut") == 100
