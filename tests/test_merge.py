"""merge and replace_where: an upload replaces some of a table's rows in one
`overwrite` snapshot, rewriting only the data files that hold replaced rows, with
exactly the rows DuckDB computes for the same merge in-process."""
from __future__ import annotations

import datetime as dt
import threading

import duckdb
import pyarrow as pa
import pytest

import data
from iceberg_catalog import catalog


def snapshots(client, table):
    return client.action("list_snapshots", {"table": table})


def merged_in_duckdb(old: pa.Table, upload: pa.Table, keys: list[str]) -> pa.Table:
    on = " AND ".join(f"o.{k} = u.{k}" for k in keys)
    return duckdb.sql(
        f"SELECT * FROM old o WHERE NOT EXISTS (SELECT 1 FROM upload u WHERE {on}) "
        "UNION ALL SELECT * FROM upload ORDER BY id"
    ).to_arrow_table()


def test_merge_updates_and_inserts_in_one_snapshot(host, client):
    for i in range(4):  # four files, ids 0..999,999 by range
        client.put({"table": "m.orders"}, data.table(250_000, start=i * 250_000))
    old = client.read({"table": "m.orders"}).sort_by("id")
    before = snapshots(client, "m.orders")
    # 5,000 changed rows (another seed: other values) and 5,000 new ones, all in the
    # last range and beyond.
    upload = data.table(10_000, start=995_000, seed=7)
    written = client.put({"table": "m.orders", "mode": "merge", "keys": ["id"]}, upload)
    assert written["rows"] == 10_000
    got = client.read({"table": "m.orders"}).sort_by("id")
    want = merged_in_duckdb(old, upload, ["id"])
    assert got.num_rows == 1_005_000
    assert got.equals(want.cast(got.schema))
    after = snapshots(client, "m.orders")
    assert len(after) == len(before) + 1
    summary = catalog(host.warehouse).load_table("m.orders").current_snapshot().summary
    assert summary.operation.value == "overwrite"
    # Only files of the last upload (ids 750,000..999,999) were rewritten: they go, and
    # their rows but the 5,000 updated come back beside the upload's.
    deleted, added = int(summary["deleted-records"]), int(summary["added-records"])
    assert 5_000 < deleted <= 250_000 and int(summary["deleted-data-files"]) >= 1
    assert added == deleted - 5_000 + 10_000
    previous = client.read({"table": "m.orders", "snapshot_id": before[-1]["snapshot_id"]}).sort_by("id")
    assert previous.equals(old)
    # The same merge again changes nothing (a retried dbt run).
    client.put({"table": "m.orders", "mode": "merge", "keys": ["id"]}, upload)
    assert client.read({"table": "m.orders"}).sort_by("id").equals(got)


def test_merge_on_two_keys_and_into_a_missing_table(client):
    rows = pa.table({"a": [1, 1, 2], "b": ["x", "y", "x"], "v": [1.0, 2.0, 3.0]})
    client.put({"table": "m.two", "mode": "merge", "keys": ["a", "b"]}, rows)  # creates it
    upload = pa.table({"a": [1, 3], "b": ["y", "x"], "v": [20.0, 30.0]})
    client.put({"table": "m.two", "mode": "merge", "keys": ["a", "b"]}, upload)
    got = client.read({"sql": "SELECT a, b, v FROM m.two ORDER BY a, b"}).to_pylist()
    assert got == [{"a": 1, "b": "x", "v": 1.0}, {"a": 1, "b": "y", "v": 20.0},
                   {"a": 2, "b": "x", "v": 3.0}, {"a": 3, "b": "x", "v": 30.0}]


def day_rows(days: int, per_day: int, value: float) -> pa.Table:
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    ts = [start + dt.timedelta(days=d, minutes=m) for d in range(days) for m in range(per_day)]
    ids = list(range(len(ts)))
    return pa.table({"id": pa.array(ids, pa.int64()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                     "v": pa.array([value] * len(ts))})


def test_merge_and_replace_where_rewrite_one_partition(host, client):
    client.put({"table": "m.days", "mode": "overwrite", "partition_by": ["day(ts)"]}, day_rows(30, 10, 1.0))
    # Rows of day 5 (ids 50..59) updated: only that day's file is rewritten.
    changed = day_rows(30, 10, 2.0).slice(50, 10)
    client.put({"table": "m.days", "mode": "merge", "keys": ["id"]}, changed)
    summary = catalog(host.warehouse).load_table("m.days").current_snapshot().summary
    assert (summary["deleted-data-files"], summary["added-data-files"]) == ("1", "1")
    got = client.read({"table": "m.days", "filter": "v = 2.0"}).column("id").to_pylist()
    assert sorted(got) == list(range(50, 60))
    # Day 12 replaced by 3 rows.
    day = "ts >= '2026-11-13' AND ts < '2026-11-14'"
    new = pa.table({"id": pa.array([1000, 1001, 1002], pa.int64()),
                    "ts": pa.array([dt.datetime(2026, 11, 13, 5, tzinfo=dt.timezone.utc)] * 3, pa.timestamp("us", tz="UTC")),
                    "v": [3.0, 3.0, 3.0]})
    client.put({"table": "m.days", "mode": "replace_where", "where": day}, new)
    summary = catalog(host.warehouse).load_table("m.days").current_snapshot().summary
    assert (summary["deleted-data-files"], summary["deleted-records"], summary["added-data-files"]) == ("1", "10", "1")
    assert client.read({"table": "m.days", "filter": day}).column("id").to_pylist() == [1000, 1001, 1002]
    assert client.rows("m.days") == 300 - 10 + 3


def test_concurrent_merges_and_appends_all_land(client):
    client.put({"table": "m.busy", "mode": "overwrite"}, data.table(400))
    errors = []

    def merge(i):
        try:
            client.put({"table": "m.busy", "mode": "merge", "keys": ["id"]}, data.table(50, start=i * 100, seed=i + 1))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    def append(i):
        try:
            client.put({"table": "m.busy"}, data.table(10, start=10_000 + i * 10))
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=merge, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=append, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = client.read({"table": "m.busy"}).sort_by("id")
    assert got.num_rows == 430
    for i in range(4):
        want = data.table(50, start=i * 100, seed=i + 1).column("amount").to_pylist()
        assert got.column("amount").to_pylist()[i * 100:i * 100 + 50] == want


@pytest.mark.parametrize(
    "command, rows, message",
    [
        ({"mode": "merge"}, None, r'mode merge needs "keys"'),
        ({"mode": "merge", "keys": ["nope"]}, None, r'key "nope" is not a column of the upload'),
        ({"mode": "merge", "keys": ["name"]}, None, r"must be unique and not null; \{'name': NULL\} is not"),
        ({"mode": "merge", "keys": ["flag"]}, None, r"must be unique and not null"),
        ({"mode": "replace_where"}, None, r'mode replace_where needs "where"'),
        ({"mode": "replace_where", "where": "id < 5; DROP TABLE x"}, None, r"it must be one expression"),
        ({"mode": "replace_where", "where": "id < 5"}, None, r'every uploaded row must match "where" \(id < 5\); \{.id.: \d+'),
        ({"mode": "append", "keys": ["id"]}, None, r'"keys" and "where" go with modes merge and replace_where'),
        ({"mode": "merge", "keys": ["id"], "target": "duckdb"}, None, r"apply to Iceberg tables"),
    ],
)
def test_bad_rewrites_name_the_problem_and_change_nothing(client, command, rows, message):
    client.put({"table": "m.guarded", "mode": "overwrite"}, data.table(20))
    before = snapshots(client, "m.guarded")
    with pytest.raises(pa.ArrowInvalid, match=message):
        client.put({"table": "m.guarded", **command}, rows or data.table(20))
    assert snapshots(client, "m.guarded") == before


def test_a_merge_cut_short_commits_nothing_and_leaves_no_files(host, client):
    client.put({"table": "m.cut", "mode": "overwrite", "partition_by": ["bucket(4, id)"]}, data.table(200))
    before = snapshots(client, "m.cut")
    table_dir = next((host.warehouse / "iceberg" / "m").glob("cut-*"))
    files = sorted(p.name for p in table_dir.rglob("*.parquet"))
    with pytest.raises(pa.ArrowInvalid, match="announced 500 rows"):
        client.put({"table": "m.cut", "mode": "merge", "keys": ["id"], "expect_rows": 500}, data.table(300, seed=3))
    assert snapshots(client, "m.cut") == before
    assert sorted(p.name for p in table_dir.rglob("*.parquet")) == files


def test_replace_where_with_no_rows_deletes_the_matching_rows(client):
    client.put({"table": "m.prune", "mode": "overwrite"}, data.table(100))
    client.put({"table": "m.prune", "mode": "replace_where", "where": "id >= 90"}, data.table(0))
    assert sorted(client.read({"table": "m.prune"}).column("id").to_pylist()) == list(range(90))
