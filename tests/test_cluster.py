"""Several hosts serving one warehouse: a shared PostgreSQL catalog (a real server on
loopback), the same table files (a local directory, or a bucket of a real
S3-compatible server on loopback), each host stateless (its DuckDB in memory).
Hosts register in the catalog and drop out when their heartbeat stops; commits from
different hosts are serialized by the catalog's compare-and-swap; a large read is
split into endpoints any host can serve, listing the live hosts in rotating order."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
import time

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog.sql import SqlCatalog

import data
from floe_client import HOST_BIN, TARGET_DIR, Client, Host, endpoint_batches, free_port
from postgres import Postgres
from s3 import S3Server

HEARTBEAT = "0.5"
GUESTS = TARGET_DIR / "wasm32-wasip2" / "release"


@pytest.fixture(scope="module")
def pg():
    with Postgres() as server:
        yield server


@pytest.fixture(scope="module")
def s3_server():
    with S3Server() as server:
        yield server


@pytest.fixture
def catalog_uri(pg, request):
    """A database of its own per test, so no test sees another's tables or hosts."""
    name = request.node.name.lower()
    return pg.database(f"{name[:40]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}")


class LocalFiles:
    """Table files in a local directory every host reaches."""

    def __init__(self, tmp_path):
        self.warehouse = tmp_path / "warehouse"
        self.url = str(self.warehouse)
        self.tables = f"file://{self.warehouse}/iceberg"
        self.env: dict[str, str] = {}

    def host(self, catalog_uri, *args, home=None) -> Host:
        return Host(self.warehouse, "--catalog", catalog_uri, "--heartbeat", HEARTBEAT, *args)

    def data_files(self, table: str) -> list[str]:
        namespace, name = table.split(".")
        return [str(p) for p in (self.warehouse / "iceberg").glob(f"{namespace}/{name}-*/data/**/*.parquet")]

    def cli(self, *args, catalog_uri) -> subprocess.CompletedProcess:
        return subprocess.run([str(HOST_BIN), *args, "-w", self.url, "--catalog", catalog_uri],
                              capture_output=True, text=True)

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.sql("LOAD iceberg")
        return con

    def pyiceberg_props(self) -> dict[str, str]:
        return {}


class BucketFiles(LocalFiles):
    """Table files in a bucket of the S3 server; each host has a local directory of
    its own, as hosts on separate machines would."""

    def __init__(self, tmp_path, server: S3Server, bucket: str):
        self.root, self.server = tmp_path, server
        self.url = f"{server.bucket(bucket)}/wh"
        self.tables = f"{self.url}/iceberg"
        self.env = server.env
        self.hosts = 0

    def host(self, catalog_uri, *args, home=None) -> Host:
        """A new host, with a directory of its own unless `home` (a host's it replaces)."""
        self.hosts += 1
        home, port = home or self.root / f"host-{self.hosts}", free_port()
        return Host(home, port=port, env=self.env, serve_args=[
            "serve", "-w", self.url, "--host-dir", str(home), "-p", str(port), "--catalog", catalog_uri,
            "--heartbeat", HEARTBEAT, *args])

    def data_files(self, table: str) -> list[str]:
        namespace, name = table.split(".")
        return [key for key in self.server.keys(self.tables)
                if key.split("/")[3].startswith(f"{name}-") and key.split("/")[2] == namespace
                and "/data/" in key and key.endswith(".parquet")]

    def cli(self, *args, catalog_uri) -> subprocess.CompletedProcess:
        return subprocess.run([str(HOST_BIN), *args, "-w", self.url, "--host-dir", str(self.root / "cli"),
                               "--catalog", catalog_uri], capture_output=True, text=True,
                              env={**os.environ, **self.env})

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        con = super().duckdb()
        con.sql("LOAD httpfs")
        con.sql(self.server.duckdb_secret())
        return con

    def pyiceberg_props(self) -> dict[str, str]:
        return self.server.pyiceberg_props()


@pytest.fixture(params=["local", "s3"])
def files(request, tmp_path):
    """Where the warehouse's table files are: each cluster test runs on both."""
    if request.param == "local":
        return LocalFiles(tmp_path)
    bucket = "floe-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:16]
    return BucketFiles(tmp_path, request.getfixturevalue("s3_server"), bucket)


@contextlib.contextmanager
def cluster(files, catalog_uri, n=3, *args):
    """`n` hosts serving the warehouse on the catalog, stopped (those still up) at the end."""
    hosts = [files.host(catalog_uri, *args) for _ in range(n)]
    try:
        for host in hosts:
            host.start()
        yield hosts
    finally:
        for host in hosts:
            if host.proc is not None:
                host.stop()


def cluster_list(files, catalog_uri, *args) -> list[list[str]]:
    out = files.cli("cluster", "list", *args, catalog_uri=catalog_uri)
    assert out.returncode == 0, out.stderr
    return [line.split() for line in out.stdout.splitlines()[1:]]


def sorted_by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id")


def test_a_table_written_through_one_host_reads_the_same_through_the_others(catalog_uri, files):
    with cluster(files, catalog_uri) as hosts:
        a, b, c = (Client(h.location) for h in hosts)
        expected = data.table(30_000, batch_rows=5_000, seed=7)
        a.put({"table": "shop.orders"}, expected)
        via_b, via_c = b.read({"table": "shop.orders"}), c.read({"table": "shop.orders"})
        assert sorted_by_id(via_b).equals(sorted_by_id(expected))
        assert sorted_by_id(via_c).equals(sorted_by_id(expected))
        # SQL on another host sees the table at once (its view is made from the catalog).
        assert c.rows("shop.orders") == 30_000
        # A second commit, through C, is seen by A.
        c.put({"table": "shop.orders"}, data.table(1_000, start=30_000))
        assert a.rows("shop.orders") == 31_000

        # pyiceberg's SqlCatalog on the same PostgreSQL database, and DuckDB's iceberg_scan.
        sqlalchemy_uri = catalog_uri.replace("postgres://", "postgresql+psycopg2://", 1)
        catalog = SqlCatalog("floe", uri=sqlalchemy_uri, warehouse=files.tables, **files.pyiceberg_props())
        table = catalog.load_table("shop.orders")
        via_pyiceberg = table.scan().to_arrow()
        via_a = a.read({"table": "shop.orders"})
        assert sorted_by_id(via_pyiceberg).equals(sorted_by_id(via_a))
        assert table.metadata_location.startswith(files.tables)
        con = files.duckdb()
        scanned = con.sql(f"SELECT * FROM iceberg_scan('{table.metadata_location}')").to_arrow_table()
        # DuckDB names the time zone Etc/UTC: the same instants.
        assert sorted_by_id(scanned.cast(via_a.schema)).equals(sorted_by_id(via_a))


def test_hosts_register_and_a_killed_one_drops_out(catalog_uri, files):
    with cluster(files, catalog_uri, 3, "--split-reads-at", "1") as hosts:
        listed = cluster_list(files, catalog_uri)
        assert sorted(row[1] for row in listed) == sorted(h.location for h in hosts)
        assert all(row[-1] == "live" for row in listed)
        a = Client(hosts[0].location)
        for i in range(6):
            a.put({"table": "s.big"}, data.table(100_000, start=i * 100_000))
        info = a.info({"table": "s.big"})
        assert {loc.uri.decode() for loc in info.endpoints[0].locations} == {h.location for h in hosts}

        victim = hosts[2]
        planned = a.info({"table": "s.big"})
        victim.proc.kill()
        victim.proc.wait()
        # Endpoints planned before the kill: the part the dead host leads is read from
        # its next location.
        assert any(e.locations[0].uri.decode() == victim.location for e in planned.endpoints)
        assert endpoint_batches(planned, a.host, a.options).read_all().num_rows == 600_000
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            live = [row[1] for row in cluster_list(files, catalog_uri)]
            if victim.location not in live:
                break
            time.sleep(0.25)
        assert sorted(live) == sorted(h.location for h in hosts[:2])
        # Still registered, expired (the host did not get to deregister).
        expired = [row for row in cluster_list(files, catalog_uri, "--all") if row[-1] == "expired"]
        assert [row[1] for row in expired] == [victim.location]
        # Live hosts no longer hand it out (their view is refreshed by their heartbeat).
        time.sleep(2 * float(HEARTBEAT) + 0.5)
        info = a.info({"table": "s.big"})
        for endpoint in info.endpoints:
            assert victim.location not in {loc.uri.decode() for loc in endpoint.locations}
        assert a.read({"table": "s.big"}).num_rows == 600_000
        # A host stopped cleanly leaves the list at once.
        hosts[1].stop()
        assert [row[1] for row in cluster_list(files, catalog_uri)] == [hosts[0].location]


def test_appends_from_three_hosts_each_land_exactly_once(catalog_uri, files):
    with cluster(files, catalog_uri) as hosts:
        Client(hosts[0].location).put({"table": "s.busy"}, data.table(10))
        errors = []

        def appender(host, n):
            client = Client(host.location)
            try:
                for i in range(25):
                    client.put({"table": "s.busy"}, data.table(10, start=1_000_000 * (n + 1) + 10 * i))
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=appender, args=(h, 4 * k + j)) for k, h in enumerate(hosts) for j in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        client = Client(hosts[1].location)
        ids = client.read({"table": "s.busy", "columns": ["id"]}).column("id")
        assert len(ids) == 10 + 3 * 4 * 25 * 10
        assert pc.count_distinct(ids).as_py() == len(ids)  # none twice
        snapshots = client.action("list_snapshots", {"table": "s.busy"})
        assert sum(s["operation"] == "append" for s in snapshots) == 1 + 3 * 4 * 25


def test_readers_see_only_whole_commits_while_hosts_append_and_overwrite(catalog_uri, files):
    batch_rows = 500

    def commit(n):
        return pa.table({"commit": pa.array([n] * batch_rows, pa.int64()), "v": pa.array(range(batch_rows), pa.int64())})

    with cluster(files, catalog_uri) as hosts:
        Client(hosts[0].location).put({"table": "s.mixed"}, commit(0))
        stop = threading.Event()
        errors, seen = [], []

        def writer(host, n):
            client = Client(host.location)
            try:
                for i in range(12):
                    mode = "overwrite" if i % 4 == 3 else "append"
                    client.put({"table": "s.mixed", "mode": mode}, commit(1000 * (n + 1) + i))
            except Exception as err:  # noqa: BLE001
                errors.append(err)

        def reader(host):
            client = Client(host.location)
            try:
                while not stop.is_set():
                    counts = client.read({"sql": "SELECT commit, count(*) AS n FROM s.mixed GROUP BY commit"})
                    seen.append(counts.num_rows)
                    assert set(counts.column("n").to_pylist()) == {batch_rows}, counts
            except Exception as err:  # noqa: BLE001
                errors.append(err)

        writers = [threading.Thread(target=writer, args=(h, 2 * k + j)) for k, h in enumerate(hosts) for j in range(2)]
        readers = [threading.Thread(target=reader, args=(h,)) for h in hosts]
        for t in writers + readers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        for t in readers:
            t.join()
        assert not errors, errors
        assert len(seen) > 10


def test_a_host_killed_mid_upload_leaves_only_whole_commits(catalog_uri, files):
    with cluster(files, catalog_uri) as hosts:
        a, victim = Client(hosts[0].location), hosts[2]
        a.put({"table": "s.kill"}, data.table(1_000))
        uploading = threading.Event()

        def slow_batches():
            for i in range(1_000):
                yield data.batch(10_000 + i * 1_000, 1_000)
                uploading.set()
                time.sleep(0.02)

        def upload():
            try:
                Client(victim.location).put({"table": "s.kill"}, pa.RecordBatchReader.from_batches(data.SCHEMA, slow_batches()))
            except Exception:  # noqa: BLE001 - the host is killed under it
                pass

        thread = threading.Thread(target=upload)
        thread.start()
        assert uploading.wait(30)
        time.sleep(1)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        thread.join()
        # The others keep serving, reads and writes.
        b = Client(hosts[1].location)
        b.put({"table": "s.kill"}, data.table(500, start=5_000))
        assert a.rows("s.kill") == 1_500
        assert sorted(pc.unique(b.read({"table": "s.kill", "columns": ["id"]}).column("id")).to_pylist())[-1] < 10_000
        # A new host (or the others' next sweep) deletes what the dead one was writing;
        # on object storage, the host that takes over the dead one's directory does.
        with files.host(catalog_uri, home=victim.warehouse) as fresh:
            assert "deleted the files of a write that never committed" in fresh.log()
            # What is left is exactly what the table's snapshots name (an object store
            # shows no object for an unfinished multipart upload in the first place).
            (current,) = [s for s in b.action("list_snapshots", {"table": "s.kill"}) if s["current"]]
            assert len(files.data_files("s.kill")) == int(current["summary"]["total-data-files"])
            assert Client(fresh.location).rows("s.kill") == 1_500


def test_a_split_read_returns_exactly_the_rows_of_a_single_endpoint_read(catalog_uri, files):
    with cluster(files, catalog_uri, 3, "--split-reads-at", "1") as hosts:
        a = Client(hosts[0].location)
        for i in range(7):
            a.put({"table": "s.wide"}, data.table(150_000, start=i * 150_000, seed=i))
        whole = a.read({"sql": "SELECT * FROM s.wide"})  # SQL is one endpoint
        for command in (
            {"table": "s.wide"},
            {"table": "s.wide", "columns": ["id", "price", "name"], "filter": "amount > 120 OR id % 5 = 0"},
        ):
            info = a.info(command)
            assert len(info.endpoints) == 3
            firsts = [e.locations[0].uri.decode() for e in info.endpoints]
            assert sorted(firsts) == sorted(h.location for h in hosts)  # each host leads one
            tickets = [json.loads(e.ticket.ticket) for e in info.endpoints]
            assert [t["part"] for t in tickets] == [{"index": i, "of": 3} for i in range(3)]
            assert len({t["snapshot_id"] for t in tickets}) == 1
            # Each part, fetched from a host other than its first location: any host serves any part.
            parts = [Client(hosts[(i + 1) % 3].location).flight.do_get(e.ticket).read_all()
                     for i, e in enumerate(info.endpoints)]
            assert all(p.num_rows > 0 for p in parts)
            got = a.read(command)  # every endpoint, in parallel
            expected = whole if "filter" not in command else duckdb.sql(
                "SELECT id, price, name FROM whole WHERE amount > 120 OR id % 5 = 0").to_arrow_table()
            # Order-independent: ids are unique.
            assert sorted_by_id(got).equals(sorted_by_id(expected))
            assert sorted_by_id(pa.concat_tables(parts)).equals(sorted_by_id(expected))
        # The dbt plugin reads a source the same way: every endpoint.
        from dbt.adapters.duckdb.plugins import BasePlugin
        from dbt.adapters.duckdb.utils import SourceConfig

        plugin = BasePlugin.create("floe_dbt", config={"uri": hosts[1].location})
        source = SourceConfig(name="raw", identifier="wide", schema="s", database=None, meta={"plugin": "floe"}, tags=[])
        assert sorted_by_id(plugin.load(source).read_all()).equals(sorted_by_id(whole))
        # A limit, and a read too small to split, stay one endpoint.
        assert len(a.info({"table": "s.wide", "limit": 10}).endpoints) == 1
        a.put({"table": "s.small"}, data.table(1_000))
        assert len(a.info({"table": "s.small"}).endpoints) == 1
        with pytest.raises(pa.ArrowInvalid, match="part.*limit"):
            a.get({"table": "s.wide", "limit": 5, "part": {"index": 0, "of": 2}})
        with pytest.raises(pa.ArrowInvalid, match="index 3 of 3"):
            a.get({"table": "s.wide", "part": {"index": 3, "of": 3}})


def test_duckdb_native_tables_are_refused_in_a_shared_warehouse(catalog_uri, tmp_path):
    with Host(tmp_path / "warehouse", "--catalog", catalog_uri) as host:
        client = Client(host.location)
        with pytest.raises(pa.ArrowInvalid, match="shared by several hosts.*Iceberg"):
            client.put({"table": "s.local", "target": "duckdb"}, data.table(10))
        assert client.action("list_tables") == []
        out = subprocess.run([str(HOST_BIN), "doctor", "-w", str(tmp_path / "warehouse"), "--catalog", catalog_uri],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "in memory" in out.stdout and "1 live" in out.stdout


def test_a_second_host_on_a_sqlite_warehouse_is_refused_with_the_way_out(tmp_path):
    warehouse = tmp_path / "warehouse"
    with Host(warehouse):
        second = Host(warehouse)
        with pytest.raises(RuntimeError) as refused:
            second.start()
        message = str(refused.value)
        assert "in use by another process" in message and "postgres://" in message


def test_a_plugin_registered_beside_one_host_runs_on_every_host_and_every_part(catalog_uri, files):
    with cluster(files, catalog_uri, 2, "--split-reads-at", "1") as hosts:
        a, b = (Client(h.location) for h in hosts)
        for i in range(4):
            a.put({"table": "s.p"}, data.table(150_000, start=i * 150_000))
        # Added from a machine of its own (on object storage: another host directory).
        added = files.cli("plugins", "add", "select", str(GUESTS / "select.wasm"), catalog_uri=catalog_uri)
        assert added.returncode == 0, added.stderr
        command = {"table": "s.p", "filter": "id % 3 = 0",
                   "transforms": [{"plugin": "select", "args": {"columns": ["id", "name"]}}]}
        info = b.info(command)
        assert len(info.endpoints) == 2 and info.schema.names == ["id", "name"]
        got = b.read(command)
        assert got.schema.names == ["id", "name"]
        assert sorted(got.column("id").to_pylist()) == list(range(0, 600_000, 3))
