"""Tables that live for years: snapshot expiry (on demand, from the command line and
in the background) and orphan-file removal, checked against the files on disk and
the metadata as pyiceberg walks it."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import data
from floe_client import HOST_BIN, Client, Host
from iceberg_catalog import catalog

TWO_DAYS_AGO = time.time() - 2 * 86_400


def snapshots(client, table):
    return client.action("list_snapshots", {"table": table})


def table_dir(warehouse: Path, table: str) -> Path:
    ns, name = table.split(".")
    return next((warehouse / "iceberg" / ns).glob(f"{name}-*"))


def files_on_disk(directory: Path) -> set[str]:
    return {str(p) for p in directory.rglob("*") if p.is_file()}


def reachable(warehouse: Path, table: str, snapshot_ids=None) -> dict[int, set[str]]:
    """Per snapshot, every file its metadata leads to (manifest list, manifests, live data files)."""
    t = catalog(warehouse).load_table(table)
    out = {}
    for snap in t.metadata.snapshots:
        if snapshot_ids is not None and snap.snapshot_id not in snapshot_ids:
            continue
        files = {snap.manifest_list}
        for manifest in snap.manifests(t.io):
            files.add(manifest.manifest_path)
            files |= {e.data_file.file_path for e in manifest.fetch_manifest_entry(t.io, discard_deleted=True)}
        out[snap.snapshot_id] = {f.removeprefix("file://") for f in files}
    return out


def fifty_snapshots(client, table):
    """Appends, overwrites and compactions: 50 snapshots."""
    client.put({"table": table, "mode": "overwrite"}, data.table(100))
    i = 1
    while len(snapshots(client, table)) < 50:
        if i % 10 == 0:
            client.put({"table": table, "mode": "overwrite"}, data.table(100, start=i * 1000))
        elif i % 7 == 0:
            client.action("compact_table", {"table": table})
        else:
            client.put({"table": table}, data.table(20, start=i * 1000))
        i += 1


def test_expiry_keeps_exactly_the_newest_and_deletes_only_what_they_do_not_use(host, client):
    table = "keep.fifty"
    fifty_snapshots(client, table)
    before = snapshots(client, table)
    assert len(before) == 50 and {s["operation"] for s in before} >= {"append", "overwrite", "replace"}
    kept = [s["snapshot_id"] for s in before[-5:]]
    contents = {sid: client.read({"table": table, "snapshot_id": sid}).sort_by("id") for sid in kept}
    files = reachable(host.warehouse, table)
    kept_files = set().union(*(files[s] for s in kept))
    gone_files = set().union(*(f for s, f in files.items() if s not in kept)) - kept_files
    assert gone_files

    dry = client.action("expire_snapshots", {"table": table, "retain_last": 5, "older_than": "0s", "dry_run": True})
    assert dry["dry_run"] and len(dry["expired_snapshot_ids"]) == 45
    assert len(snapshots(client, table)) == 50 and all(os.path.exists(f) for f in gone_files)

    done = client.action("expire_snapshots", {"table": table, "retain_last": 5, "older_than": "0s"})
    assert sorted(done["expired_snapshot_ids"]) == sorted(s["snapshot_id"] for s in before[:-5])
    assert done["deleted_files"] >= len(gone_files) and done["deleted_bytes"] > 0
    assert [s["snapshot_id"] for s in snapshots(client, table)] == kept
    for sid, want in contents.items():
        assert client.read({"table": table, "snapshot_id": sid}).sort_by("id").equals(want)
    assert not any(os.path.exists(f) for f in gone_files)
    for sid, needed in reachable(host.warehouse, table).items():  # walked afresh
        assert all(os.path.exists(f) for f in needed), sid
    # Other engines read it.
    t = catalog(host.warehouse).load_table(table)
    assert t.scan().to_arrow().num_rows == contents[kept[-1]].num_rows
    con = duckdb.connect()
    con.sql("LOAD iceberg")
    assert con.sql(f"SELECT count(*) FROM iceberg_scan('{t.metadata_location}')").fetchone()[0] == \
        contents[kept[-1]].num_rows
    # Time travel to an expired snapshot says so.
    with pytest.raises(KeyError, match="expired"):
        client.read({"table": table, "snapshot_id": before[0]["snapshot_id"]})
    with pytest.raises(KeyError, match="expired"):
        client.read({"table": table, "as_of": "2000-01-01T00:00:00Z"})
    # Nothing more to expire.
    assert client.action("expire_snapshots", {"table": table, "retain_last": 5, "older_than": "0s"})[
        "expired_snapshot_ids"] == []


def test_the_default_retention_keeps_young_snapshots(client):
    client.put({"table": "keep.young"}, data.table(10))
    client.put({"table": "keep.young"}, data.table(10))
    done = client.action("expire_snapshots", {"table": "keep.young", "retain_last": 1})
    assert done["expired_snapshot_ids"] == []  # younger than 7 days
    assert len(snapshots(client, "keep.young")) == 2


def test_expiry_concurrent_with_appends_and_reads_loses_nothing(host, client):
    table = "keep.busy"
    client.put({"table": table}, data.table(100))
    stop, errors, appended = threading.Event(), [], []

    def appender(n):
        c = Client(host.location)
        for i in range(15):
            c.put({"table": table}, data.table(10, start=100_000 * n + i * 10))
            appended.append(10)

    def reader():
        c = Client(host.location)
        while not stop.is_set():
            try:
                rows = c.read({"table": table, "filter": "id >= 0"}).num_rows
                assert rows >= 100
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)

    def expirer():
        c = Client(host.location)
        while not stop.is_set():
            try:
                c.action("expire_snapshots", {"table": table, "retain_last": 2, "older_than": "0s"})
            except Exception as err:  # noqa: BLE001
                errors.append(err)

    writers = [threading.Thread(target=appender, args=(n,)) for n in range(3)]
    others = [threading.Thread(target=reader), threading.Thread(target=reader), threading.Thread(target=expirer)]
    for t in writers + others:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in others:
        t.join()
    assert not errors, errors[:3]
    assert client.rows(table) == 100 + sum(appended) == 100 + 3 * 15 * 10
    # The host kept the snapshots its reads planned in the last minute; the command
    # line, another process, sees no reads and expires all it may.
    assert len(snapshots(client, table)) > 2
    cli("tables", "expire", table, "--retain-last", "2", "--older-than", "0s", "-w", str(host.warehouse))
    assert len(snapshots(client, table)) == 2
    for sid, needed in reachable(host.warehouse, table).items():
        assert all(os.path.exists(f) for f in needed), sid


def test_background_expiry_bounds_the_metadata(tmp_path):
    with Host(tmp_path / "warehouse", "--snapshot-retain-last", "3", "--snapshot-retention", "0s") as host:
        client = Client(host.location)
        for i in range(30):
            client.put({"table": "keep.fed"}, data.table(5, start=i * 5))
        deadline = time.monotonic() + 10
        while len(snapshots(client, "keep.fed")) > 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(snapshots(client, "keep.fed")) <= 4  # the last commit's expiry may still run
        assert client.rows("keep.fed") == 150
        metadata = catalog(host.warehouse).load_table("keep.fed").metadata
        assert len(metadata.snapshots) <= 4 and len(metadata.snapshot_log) <= 4
        # Metadata files beyond the metadata log (its bound is 100 entries) are deleted.
        metadata_files = list((table_dir(host.warehouse, "keep.fed") / "metadata").glob("*.metadata.json"))
        assert len(metadata_files) <= len(metadata.metadata_log) + 2
        manifest_lists = list((table_dir(host.warehouse, "keep.fed") / "metadata").glob("snap-*.avro"))
        assert len(manifest_lists) <= 4


def test_table_properties_override_the_warehouse_retention(host, client):
    client.put({"table": "keep.props"}, data.table(10))
    t = catalog(host.warehouse).load_table("keep.props")
    with t.transaction() as tx:  # another engine sets the standard properties
        tx.set_properties({"history.expire.min-snapshots-to-keep": "1", "history.expire.max-snapshot-age-ms": "0"})
    client.put({"table": "keep.props"}, data.table(10, start=10))
    client.put({"table": "keep.props"}, data.table(10, start=20))
    # The host's background expiry after each commit follows them: one snapshot left.
    deadline = time.monotonic() + 10
    while len(snapshots(client, "keep.props")) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(snapshots(client, "keep.props")) == 1
    assert client.rows("keep.props") == 30
    with t.transaction() as tx:
        tx.set_properties({"gc.enabled": "false"})
    with pytest.raises(pa.ArrowInvalid, match="gc.enabled=false"):
        client.action("expire_snapshots", {"table": "keep.props"})


@pytest.mark.parametrize("body, error, message", [
    ({"table": "keep.young", "retain_last": 0}, pa.ArrowInvalid, "at least 1"),
    ({"table": "keep.young", "retain_last": -3}, pa.ArrowInvalid, "at least 1"),
    ({"table": "keep.young", "older_than": "-1d"}, pa.ArrowInvalid, "older_than"),
    ({"table": "keep.young", "older_than": "last week"}, pa.ArrowInvalid, "older_than"),
    ({"table": "keep.young", "keep": 3}, pa.ArrowInvalid, "keep"),
    ({"table": "keep.nope", "dry_run": True}, KeyError, "keep.nope"),
])
def test_bad_expiry_requests_are_refused(client, body, error, message):
    client.put({"table": "keep.young"}, data.table(1))
    with pytest.raises(error, match=message):
        client.action("expire_snapshots", body)


def test_orphans_old_ones_go_referenced_and_young_ones_stay(tmp_path):
    warehouse = tmp_path / "warehouse"
    host = Host(warehouse).start()
    client = Client(host.location)
    client.put({"table": "gc.t"}, data.table(1000))
    client.put({"table": "gc.t"}, data.table(1000, start=1000))
    want = client.read({"table": "gc.t"}).sort_by("id")
    referenced = set().union(*reachable(warehouse, "gc.t").values())
    # A real upload cut short: the host is killed while it streams.
    uploader = threading.Thread(target=lambda: _ignore(lambda: Client(host.location).put(
        {"table": "gc.t"}, data.reader(5_000_000, batch_rows=50_000))))
    uploader.start()
    time.sleep(1.0)
    host.proc.kill()
    host.stop()
    uploader.join()
    directory = table_dir(warehouse, "gc.t")
    killed = files_on_disk(directory / "data") - referenced
    assert killed, "the killed upload should have left data files"
    planted_old = [directory / "data" / "stray.parquet", directory / "metadata" / "00000-stray.metadata.json",
                   directory / "data" / "nested" / "deep.bin"]
    planted_new = directory / "data" / "just-written.parquet"
    for path in planted_old + [planted_new]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    for path in files_on_disk(directory):  # everything old, referenced files too ...
        os.utime(path, (TWO_DAYS_AGO, TWO_DAYS_AGO))
    os.utime(planted_new, None)  # ... but one
    dry = cli("tables", "gc", "gc.t", "--dry-run", "-w", str(warehouse))
    assert "dry run" in dry and all(p.exists() for p in planted_old)
    too_young = subprocess.run([str(HOST_BIN), "tables", "gc", "gc.t", "--older-than", "5m", "-w", str(warehouse)],
                               capture_output=True, text=True)
    assert too_young.returncode != 0 and "under an hour" in too_young.stderr
    out = cli("tables", "gc", "gc.t", "-w", str(warehouse))
    assert "gc.t" in out
    remaining = files_on_disk(directory)
    assert not any(str(p) in remaining for p in planted_old)
    assert not (killed & remaining)
    assert str(planted_new) in remaining
    assert referenced <= remaining
    with Host(warehouse) as again:
        assert Client(again.location).read({"table": "gc.t"}).sort_by("id").equals(want)
    assert catalog(warehouse).load_table("gc.t").scan().to_arrow().num_rows == 2000


def test_remove_orphan_files_action_and_cli_expire_beside_a_running_host(host, client):
    for i in range(4):
        client.put({"table": "gc.live"}, data.table(10, start=i * 10))
    stray = table_dir(host.warehouse, "gc.live") / "data" / "left-behind.parquet"
    stray.write_bytes(b"x" * 10)
    os.utime(stray, (TWO_DAYS_AGO, TWO_DAYS_AGO))
    assert client.action("remove_orphan_files", {"table": "gc.live", "dry_run": True})["files"] == 1
    assert stray.exists()
    done = client.action("remove_orphan_files", {"table": "gc.live"})
    assert done == {"table": "gc.live", "files": 1, "bytes": 10, "dry_run": False}
    assert not stray.exists()
    with pytest.raises(pa.ArrowInvalid, match="under an hour"):
        client.action("remove_orphan_files", {"table": "gc.live", "older_than": "10m"})
    with pytest.raises(KeyError, match="gc.nope"):
        client.action("remove_orphan_files", {"table": "gc.nope"})
    # The command line works while the host serves the warehouse.
    out = cli("tables", "expire", "gc.live", "--retain-last", "2", "--older-than", "0s", "-w", str(host.warehouse))
    assert "gc.live" in out
    assert len(snapshots(client, "gc.live")) == 2 and client.rows("gc.live") == 40
    bad = subprocess.run([str(HOST_BIN), "tables", "expire", "gc.live", "--retain-last", "0",
                          "-w", str(host.warehouse)], capture_output=True, text=True)
    assert bad.returncode != 0 and "at least 1" in bad.stderr


def cli(*args: str) -> str:
    result = subprocess.run([str(HOST_BIN), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _ignore(f):
    try:
        f()
    except Exception:  # noqa: BLE001 - the host dies under it
        pass


def test_tables_another_engine_writes_are_maintained_by_their_own_paths(host, client):
    """pyiceberg writes into floe's catalog with its own path forms: the orphan walk
    finds every file it wrote referenced, and expiry deletes what only expired
    snapshots used."""
    client.put({"table": "keep.shared"}, data.table(100))
    t = catalog(host.warehouse).load_table("keep.shared")
    for i in range(3):
        t.append(data.table(10, start=1000 + i * 10).cast(t.schema().as_arrow()))
    directory = table_dir(host.warehouse, "keep.shared")
    for path in files_on_disk(directory):
        os.utime(path, (TWO_DAYS_AGO, TWO_DAYS_AGO))
    assert client.action("remove_orphan_files", {"table": "keep.shared", "dry_run": True})["files"] == 0
    t.overwrite(data.table(5, start=5000).cast(t.schema().as_arrow()))
    done = client.action("expire_snapshots", {"table": "keep.shared", "retain_last": 1, "older_than": "0s"})
    assert len(done["expired_snapshot_ids"]) >= 4 and done["deleted_files"] > 0
    assert len(snapshots(client, "keep.shared")) == 1 and client.rows("keep.shared") == 5
    for sid, needed in reachable(host.warehouse, "keep.shared").items():
        assert all(os.path.exists(f) for f in needed), sid


def test_a_read_whose_snapshot_another_process_expired_answers_not_found(host, client):
    client.put({"table": "keep.gone", "mode": "overwrite"}, data.table(100))
    info = client.info({"table": "keep.gone"})  # plans (and, in this host, pins) the snapshot
    client.put({"table": "keep.gone", "mode": "overwrite"}, data.table(10))
    # The command line does not see the host's pins: the planned snapshot's files go.
    cli("tables", "expire", "keep.gone", "--retain-last", "1", "--older-than", "0s", "-w", str(host.warehouse))
    with pytest.raises(KeyError, match="snapshot expired meanwhile"):
        client.flight.do_get(info.endpoints[0].ticket, client.options).read_all()
    assert client.rows("keep.gone") == 10
