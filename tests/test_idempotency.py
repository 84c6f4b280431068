"""Exactly-once uploads: an upload with an `idempotency_key` a snapshot of its table
already carries commits nothing and answers the first upload's result, after a
restart, across concurrent uploads, and after the table was overwritten since."""
from __future__ import annotations

import threading

import pyarrow as pa
import pytest
from pyarrow import flight

import data
from floe_client import Client, Host
from iceberg_catalog import catalog


def put(client, table, rows, key, **extra):
    return client.put({"table": table, "mode": "append", "idempotency_key": key, **extra}, rows)


def snapshot_count(client, table):
    return len(client.action("list_snapshots", {"table": table}))


def test_a_retried_upload_commits_once_and_answers_the_first_result(host, client):
    rows = data.table(100)
    first = put(client, "once.events", rows, "run-1:events")
    assert first["duplicate"] is False and first["rows"] == 100
    again = put(client, "once.events", rows, "run-1:events")
    assert again["duplicate"] is True
    assert again["snapshot_id"] == first["snapshot_id"] and again["rows"] == 100
    assert client.rows("once.events") == 100
    assert snapshot_count(client, "once.events") == 1
    # The key is in the snapshot summary, for any engine to see.
    summary = catalog(host.warehouse).load_table("once.events").current_snapshot().summary
    assert summary["floe.idempotency-key"] == "run-1:events"
    # Another key is another upload.
    assert put(client, "once.events", rows, "run-2:events")["duplicate"] is False
    assert client.rows("once.events") == 200


def test_a_retry_after_an_overwrite_is_still_a_duplicate(client):
    first = put(client, "once.overwritten", data.table(100), "k1")
    client.put({"table": "once.overwritten", "mode": "overwrite"}, data.table(7))
    again = put(client, "once.overwritten", data.table(100), "k1")
    assert again["duplicate"] is True and again["snapshot_id"] == first["snapshot_id"]
    assert client.rows("once.overwritten") == 7


def test_the_key_survives_a_restart(tmp_path):
    with Host(tmp_path / "warehouse") as host:
        first = put(Client(host.location), "once.restarted", data.table(100), "nightly:2026-12-01")
    with Host(tmp_path / "warehouse") as host:
        client = Client(host.location)
        again = put(client, "once.restarted", data.table(100), "nightly:2026-12-01")
        assert again["duplicate"] is True and again["snapshot_id"] == first["snapshot_id"]
        assert client.rows("once.restarted") == 100


@pytest.mark.parametrize("existing", [True, False], ids=["existing table", "new table"])
def test_concurrent_uploads_with_one_key_commit_once(client, existing):
    table = f"once.concurrent_{'existing' if existing else 'new'}"
    if existing:
        client.put({"table": table}, data.table(10))
    results, errors = [], []

    def upload():
        try:
            results.append(put(client, table, data.table(5_000), "same-key"))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(r["duplicate"] for r in results) == [False, True, True, True]
    assert len({r["snapshot_id"] for r in results}) == 1
    assert client.rows(table) == 5_000 + (10 if existing else 0)


def test_a_retried_merge_answers_the_rows_sent(client):
    client.put({"table": "once.merged"}, data.table(1_000))
    command = {"table": "once.merged", "mode": "merge", "keys": ["id"], "idempotency_key": "m1"}
    first = client.put(command, data.table(50, start=990, seed=3))
    again = client.put(command, data.table(50, start=990, seed=3))
    assert first["rows"] == again["rows"] == 50 and again["duplicate"] is True
    assert again["snapshot_id"] == first["snapshot_id"]
    assert client.rows("once.merged") == 1_040


def test_a_duplicate_leaves_no_files_behind(host, client):
    put(client, "once.files", data.table(100), "f1")
    table_dir = next((host.warehouse / "iceberg" / "once").glob("files-*"))
    before = sorted(p.name for p in table_dir.rglob("*") if p.is_file())
    put(client, "once.files", data.table(100), "f1")
    assert sorted(p.name for p in table_dir.rglob("*") if p.is_file()) == before


@pytest.mark.parametrize("key, message", [
    ("", "is empty"),
    ("   ", "is empty"),
    ("x" * 10_000, "10000 bytes"),
    ("a\nb", "control character"),
])
def test_bad_keys_are_refused(client, key, message):
    with pytest.raises(pa.ArrowInvalid, match=f"idempotency_key.*{message}"):
        put(client, "once.bad", data.table(3), key)
    with pytest.raises(KeyError):  # nothing was created
        client.read({"table": "once.bad"})


def test_a_key_on_a_duckdb_table_is_refused(client):
    with pytest.raises(pa.ArrowInvalid, match="idempotency_key apply to Iceberg tables"):
        put(client, "once.native", data.table(3), "k", target="duckdb")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def ingest_command(schema: str, table: str, options: dict[str, str]) -> bytes:
    """Flight SQL's CommandStatementIngest in its protobuf Any, encoded by hand (ADBC
    sets no ingest options): create the table if missing, else append."""
    definition = field(1, 1) + field(2, 2)  # if_not_exist CREATE, if_exists APPEND
    body = field(1, definition) + field(2, table.encode()) + field(3, schema.encode())
    for key, value in options.items():
        body += field(1000, field(1, key.encode()) + field(2, value.encode()))
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementIngest"
    return field(1, type_url) + field(2, body)


def ingest(client, rows: pa.Table, options: dict[str, str]) -> None:
    descriptor = flight.FlightDescriptor.for_command(ingest_command("once", "ingested", options))
    writer, _ = client.flight.do_put(descriptor, rows.schema, client.options)
    writer.write_table(rows)
    writer.close()


def test_flight_sql_ingest_takes_the_key_as_an_option(client):
    rows = pa.table({"a": [1, 2, 3]})
    ingest(client, rows, {"idempotency_key": "i1"})
    ingest(client, rows, {"idempotency_key": "i1"})
    assert client.rows("once.ingested") == 3
    ingest(client, rows, {"idempotency_key": "i2"})
    assert client.rows("once.ingested") == 6
    with pytest.raises(pa.ArrowInvalid, match="unknown ingest option"):
        ingest(client, rows, {"other": "x"})
    with pytest.raises(pa.ArrowInvalid, match="idempotency_key.*is empty"):
        ingest(client, rows, {"idempotency_key": ""})
