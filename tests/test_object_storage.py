"""A warehouse on S3-compatible object storage (a real moto server on loopback): the
table lifecycle a host runs on its own files (overwrite, compaction, expiry, orphans,
drop) works on objects, and every way of getting the store wrong stops the host at
start with a message naming what and where. Several hosts on a bucket: test_cluster."""
from __future__ import annotations

import subprocess
import time

import pyarrow as pa
import pytest

import data
import pyarrow.flight as flight

from floe_client import HOST_BIN, Client, Host, free_port
from postgres import Postgres
from s3 import S3Server, environ_without_aws


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


def serve(s3, tmp_path, url, *args, env=None) -> Host:
    """A host on `url` with a SQLite catalog in its own directory."""
    home, port = tmp_path / "host", free_port()
    return Host(home, port=port, env=env if env is not None else s3.env, serve_args=[
        "serve", "-w", url, "--host-dir", str(home), "--catalog", str(home / "catalog.db"), "-p", str(port), *args])


def refused(host: Host) -> str:
    with pytest.raises(RuntimeError) as failed:
        host.start(timeout=60)
    host.stop()
    return str(failed.value)


def test_the_table_lifecycle_runs_on_objects(s3, tmp_path):
    url = f"{s3.bucket('floe-lifecycle')}/wh"
    tables = f"{url}/iceberg"
    with serve(s3, tmp_path, url) as host:
        client = Client(host.location)
        for i in range(4):
            client.put({"table": "s.t"}, data.table(1_000, start=i * 1_000, seed=i))
        keys = s3.keys(tables)
        assert sum(k.endswith(".parquet") for k in keys) == 4
        assert sum(k.endswith(".metadata.json") for k in keys) >= 4
        # Nothing of the table is on the host's disk.
        assert not list((tmp_path / "host").glob("iceberg/s/*"))
        want = client.read({"table": "s.t"}).sort_by("id")
        assert want.num_rows == 4_000
        assert client.read({"table": "s.t", "filter": "id < 10", "columns": ["id"]}).num_rows == 10
        assert client.read({"sql": "SELECT count(*) AS n FROM s.t"}).column("n")[0].as_py() == 4_000

        # Compaction reads the small files back from the store.
        done = client.action("compact_table", {"table": "s.t"})
        assert done["compacted"] and done["data_files"] == 1
        assert client.read({"table": "s.t"}).sort_by("id").equals(want)

        # Expiry deletes the objects only expired snapshots used (the snapshot the
        # reads above planned stays pinned a while).
        before = s3.keys(tables)
        expired = client.action("expire_snapshots", {"table": "s.t", "retain_last": 1, "older_than": "0s"})
        assert expired["expired_snapshot_ids"] and expired["deleted_files"] > 0
        after = s3.keys(tables)
        assert len(set(before) - set(after)) == expired["deleted_files"]
        (added,) = set(after) - set(before)  # the expiry's own metadata file
        assert added.endswith(".metadata.json")
        assert client.read({"table": "s.t"}).sort_by("id").equals(want)

        # An overwrite, and an orphan walk that finds the store's files as the metadata names them.
        client.put({"table": "s.t", "mode": "overwrite"}, data.table(10))
        assert client.rows("s.t") == 10
        assert client.action("remove_orphan_files", {"table": "s.t", "dry_run": True})["files"] == 0

        # Dropping the table deletes its objects; another table's stay.
        client.put({"table": "s.other"}, data.table(5))
        client.action("drop_table", {"table": "s.t"})
        left = s3.keys(tables)
        assert left and all("/s/other-" in f"/{k}" for k in left)


def test_a_failed_upload_leaves_no_object(s3, tmp_path):
    url = f"{s3.bucket('floe-failed')}/wh"
    with serve(s3, tmp_path, url) as host:
        client = Client(host.location)
        client.put({"table": "s.t"}, data.table(100))
        before = s3.keys(url)
        wrong = pa.table({"id": pa.array(["not", "a", "number"])})
        with pytest.raises(pa.ArrowInvalid):
            client.put({"table": "s.t"}, wrong)
        assert s3.keys(url) == before


def test_an_unknown_access_key_stops_the_host_naming_the_bucket(tmp_path):
    """On a server that checks signatures (moto with IAM on). Only an unknown key id is
    told apart here: moto's check of signed ListObjectsV2 queries disagrees with
    opendal's (SignatureDoesNotMatch for the right key too), so a wrong secret and a
    right one look the same to this server."""
    with S3Server(checks_credentials=True) as strict:
        url = f"{strict.bucket('floe-strict')}/wh"
        message = refused(serve(strict, tmp_path, url, env={**strict.env, "AWS_ACCESS_KEY_ID": "AKIANOTAKEY"}))
        assert "access to bucket floe-strict was denied" in message and "AWS_ACCESS_KEY_ID" in message
        assert "(InvalidAccessKeyId)" in message


@pytest.mark.parametrize("case", ["no credentials", "no catalog", "missing bucket", "unreachable endpoint"])
def test_a_store_the_host_cannot_use_stops_it_with_what_and_where(s3, tmp_path, case):
    url = f"{s3.bucket('floe-' + case.replace(' ', '-'))}/wh"
    if case == "no credentials":
        message = refused(serve(s3, tmp_path, url, env=environ_without_aws()))
        assert "AWS_ACCESS_KEY_ID" in message
    elif case == "no catalog":
        out = subprocess.run([str(HOST_BIN), "doctor", "-w", url], capture_output=True, text=True,
                             env={**environ_without_aws(), **s3.env})
        assert out.returncode != 0
        message = out.stderr
        assert "needs --catalog" in message and url in message
    elif case == "missing bucket":
        message = refused(serve(s3, tmp_path, "s3://floe-nowhere/wh"))
        assert "bucket floe-nowhere does not exist" in message
    else:
        dead = f"http://127.0.0.1:{free_port()}"
        message = refused(serve(s3, tmp_path, url, env={**s3.env, "AWS_ENDPOINT_URL": dead}))
        assert dead.removeprefix("http://") in message and "did not answer" in message
    assert "panicked" not in message


def test_sql_reads_only_the_tables_prefix_of_the_bucket(s3, tmp_path):
    import io

    import pyarrow.parquet as pq

    bucket = s3.bucket("floe-confined")
    url = f"{bucket}/wh"
    secret = io.BytesIO()
    pq.write_table(pa.table({"secret": [1, 2, 3]}), secret)
    s3.client().put_object(Bucket="floe-confined", Key="other/secret.parquet", Body=secret.getvalue())
    with serve(s3, tmp_path, url) as host:
        client = Client(host.location)
        client.put({"table": "s.t"}, data.table(10))
        (table_file,) = [k for k in s3.keys(f"{url}/iceberg") if k.endswith(".parquet")]
        # The tables' own files are readable by path; nothing else in the bucket or on disk.
        assert client.read({"sql": f"SELECT count(*) AS n FROM read_parquet('{bucket}/{table_file}')"}).num_rows == 1
        for outside in (f"{bucket}/other/secret.parquet", f"{url}/plugins/x.parquet", "/etc/passwd",
                        f"s3://floe-elsewhere/{table_file}"):
            with pytest.raises(pa.ArrowException, match="outside the warehouse"):
                client.read({"sql": f"SELECT * FROM read_parquet('{outside}')"})


def test_users_and_tokens_are_the_same_on_every_host(s3, tmp_path):
    """Principals and the token key live in the bucket: a user added from one machine
    signs in on every host, a token one host issued is good on another, and a revoke
    reaches every host within a second or so."""
    url = f"{s3.bucket('floe-principals')}/wh"

    def cli(*args, stdin=None):
        out = subprocess.run([str(HOST_BIN), *args, "-w", url, "--host-dir", str(tmp_path / "admin")], input=stdin,
                             capture_output=True, text=True, env={**environ_without_aws(), **s3.env})
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    cli("users", "add", "ann", "--grant", "admin", "--password-stdin", stdin="a long password\n")
    etl = cli("tokens", "create", "etl", "--grant", "read:*")
    assert not list(tmp_path.glob("admin/security/*"))  # nothing of it on the admin's disk
    with Postgres() as pg:
        hosts = []
        for name in ("h1", "h2"):
            home, port = tmp_path / name, free_port()
            hosts.append(Host(home, port=port, env=s3.env, serve_args=[
                "serve", "-w", url, "--host-dir", str(home), "--catalog", pg.uri, "-p", str(port)]).start())
        try:
            a = Client(hosts[0].location, user="ann", password="a long password")
            a.put({"table": "s.t"}, data.table(100))
            # A bearer token from host 1's Handshake, and the CLI's service token, on host 2.
            issued = a.options.headers[0][1].decode().removeprefix("Bearer ")
            assert Client(hosts[1].location, token=issued).rows("s.t") == 100
            assert Client(hosts[1].location, token=etl).read({"table": "s.t"}).num_rows == 100
            with pytest.raises(flight.FlightUnauthenticatedError):
                Client(hosts[1].location).read({"table": "s.t"})
            cli("tokens", "revoke", "etl")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    Client(hosts[1].location, token=etl).read({"table": "s.t"})
                    time.sleep(0.2)
                except flight.FlightUnauthenticatedError as err:
                    assert "etl" in str(err)
                    break
            else:
                pytest.fail("the revoked token still works on host 2")
        finally:
            for host in hosts:
                host.stop()
