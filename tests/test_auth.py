"""Principals and permissions, end to end: users and service tokens made with the
`host` CLI, a real host that requires them, pyarrow clients authenticating with Basic
credentials, Handshake tokens and service tokens, and every refusal the grants imply."""
from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import data
from floe_client import HOST_BIN, Client, Host, free_port

PASSWORD = "correct horse battery"


def cli(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(HOST_BIN), *args], input=stdin, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"host {' '.join(args)} failed:\n{result.stderr}")
    return result


def add_user(warehouse: Path, name: str, *grants: str, password: str = PASSWORD):
    args = [a for g in grants for a in ("--grant", g)]
    cli("users", "add", name, *args, "--password-stdin", "-w", str(warehouse), stdin=password + "\n")


def token(warehouse: Path, name: str, *grants: str) -> str:
    args = [a for g in grants for a in ("--grant", g)]
    return cli("tokens", "create", name, *args, "-w", str(warehouse)).stdout.strip()


def headers(value: bytes) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", value)])


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("auth") / "warehouse"
    wh.mkdir()
    add_user(wh, "root", "admin")
    add_user(wh, "reader", "read:raw")
    add_user(wh, "writer", "write:raw", "read:*")
    return wh


@pytest.fixture(scope="module")
def host(warehouse):
    with Host(warehouse, "--token-ttl", "3") as h:
        admin = Client(h.location, user="root", password=PASSWORD)
        for table in ("raw.a", "raw.x", "marts.b"):
            admin.put({"table": table, "mode": "overwrite"}, data.table(50))
        yield h


@pytest.fixture(scope="module")
def reader(host) -> Client:
    return Client(host.location, user="reader", password=PASSWORD)


def test_no_or_bad_credentials_are_unauthenticated_and_named(host, warehouse):
    anonymous = Client(host.location)
    with pytest.raises(flight.FlightUnauthenticatedError, match="requires credentials"):
        anonymous.action("list_tables")
    with pytest.raises(flight.FlightUnauthenticatedError, match="wrong password"):
        Client(host.location, user="reader", password="nope-nope")
    with pytest.raises(flight.FlightUnauthenticatedError, match="wrong password"):
        Client(host.location, user="nobody", password=PASSWORD)
    for value, says in [
        (b"Bearer floe1.garbage.sig", "invalid bearer token"),
        (b"Bearer " + b"a" * 5000, "too long"),
        (b"Digest abc", "Basic"),
        (b"Basic !!!", "base64"),
        (b"Basic " + base64.b64encode(b"no-colon"), "':'"),
        (b"Basic " + b"A" * (1 << 20), "too long"),
    ]:
        with pytest.raises(flight.FlightUnauthenticatedError, match=says):
            list(anonymous.flight.do_action(flight.Action("list_tables", b""), headers(value)))
    # Basic on every call works too (no Handshake), and the host is unaffected.
    basic = b"Basic " + base64.b64encode(f"reader:{PASSWORD}".encode())
    (result,) = anonymous.flight.do_action(flight.Action("list_tables", b""), headers(basic))
    assert [t["name"] for t in json.loads(result.body.to_pybytes())] == ["raw.a", "raw.x"]


def test_tokens_expire_and_die_with_their_user_or_key(host, warehouse, tmp_path):
    add_user(warehouse, "temp", "read:raw")
    temp = Client(host.location, user="temp", password=PASSWORD)
    assert temp.action("list_tables")
    time.sleep(3.5)  # --token-ttl 3
    with pytest.raises(flight.FlightUnauthenticatedError, match="expired"):
        temp.action("list_tables")
    temp = Client(host.location, user="temp", password=PASSWORD)
    cli("users", "remove", "temp", "-w", str(warehouse))
    with pytest.raises(flight.FlightUnauthenticatedError, match="no longer exists"):
        temp.action("list_tables")
    # A token signed by another warehouse's key.
    other = tmp_path / "other"
    stranger = token(other, "ci", "admin")
    with pytest.raises(flight.FlightUnauthenticatedError, match="signature"):
        Client(host.location, token=stranger).action("list_tables")


def test_a_password_change_ends_older_tokens(host, warehouse):
    add_user(warehouse, "pat", "read:raw")
    before = Client(host.location, user="pat", password=PASSWORD)
    cli("users", "passwd", "pat", "--password-stdin", "-w", str(warehouse), stdin="another password\n")
    with pytest.raises(flight.FlightUnauthenticatedError, match="password change"):
        before.action("list_tables")
    with pytest.raises(flight.FlightUnauthenticatedError):
        Client(host.location, user="pat", password=PASSWORD)
    assert Client(host.location, user="pat", password="another password").action("list_tables")


def test_a_reader_sees_only_its_namespaces(host, reader):
    assert reader.read({"table": "raw.a"}).num_rows == 50
    assert [t["name"] for t in reader.action("list_tables")] == ["raw.a", "raw.x"]
    listed = [fi.descriptor.path for fi in reader.flight.list_flights(options=reader.options)]
    assert listed == [[b"raw", b"a"], [b"raw", b"x"]]
    unknown = "table marts.b not found"
    with pytest.raises(pa.ArrowKeyError, match=unknown):
        reader.read({"table": "marts.b"})
    with pytest.raises(pa.ArrowKeyError, match=unknown):
        reader.get({"table": "marts.b"})  # a forged ticket
    with pytest.raises(pa.ArrowKeyError, match=unknown):
        reader.flight.get_schema(flight.FlightDescriptor.for_command(json.dumps({"table": "marts.b"})), reader.options)
    with pytest.raises(pa.ArrowKeyError, match=unknown):
        reader.action("list_snapshots", {"table": "marts.b"})
    # The same answer as a table that does not exist at all.
    with pytest.raises(pa.ArrowKeyError, match="table marts.nothing not found"):
        reader.read({"table": "marts.nothing"})


def test_a_reader_may_not_write_drop_or_administer(host, reader):
    with pytest.raises(flight.FlightUnauthorizedError, match="may not write raw.a"):
        reader.put({"table": "raw.a", "mode": "append"}, data.table(5))
    with pytest.raises(flight.FlightUnauthorizedError, match="admin role"):
        reader.action("drop_table", {"table": "raw.a"})
    with pytest.raises(flight.FlightUnauthorizedError, match="admin role"):
        reader.action("compact_table", {"table": "raw.a"})
    assert reader.read({"table": "raw.a"}).num_rows == 50


def test_sql_reads_only_what_the_principal_may_read(host, reader, warehouse):
    assert reader.read({"sql": "SELECT count(*) AS n FROM raw.a JOIN raw.x USING (id)"}).column("n")[0].as_py() == 50
    with pytest.raises(flight.FlightUnauthorizedError, match="marts.b"):
        reader.read({"sql": "SELECT * FROM raw.a JOIN marts.b USING (id)"})
    with pytest.raises(flight.FlightUnauthorizedError, match="marts.b"):
        reader.read({"sql": "WITH m AS (SELECT * FROM marts.b) SELECT * FROM raw.a WHERE id IN (SELECT id FROM m)"})
    table_dir = warehouse / "iceberg"
    files = sorted(str(p) for p in table_dir.rglob("*.parquet"))
    assert files
    for sql in [
        f"SELECT * FROM read_parquet('{files[0]}')",
        f"SELECT * FROM iceberg_scan('{table_dir}/marts/b')",
        f"SELECT * FROM glob('{table_dir}/*')",
    ]:
        with pytest.raises(flight.FlightUnauthorizedError, match="only administrators"):
            reader.read({"sql": sql})
    # A quoted path is a file to DuckDB, not a table to floe.
    with pytest.raises((pa.ArrowKeyError, flight.FlightUnauthorizedError), match="not found|may not read"):
        reader.read({"sql": f"SELECT * FROM '{files[0]}'"})
    with pytest.raises(flight.FlightUnauthorizedError, match="engine's internals"):
        reader.read({"sql": "SELECT * FROM duckdb_tables()"})
    with pytest.raises(flight.FlightUnauthorizedError, match="catalog|administrators"):
        reader.read({"sql": "SHOW TABLES"})
    assert reader.read({"sql": "SELECT sum(range) AS s FROM range(4)"}).column("s")[0].as_py() == 6


def test_sql_never_reads_the_warehouses_secrets(host, warehouse):
    admin = Client(host.location, user="root", password=PASSWORD)
    for sql in [
        f"SELECT * FROM read_text('{warehouse}/security/principals.json')",
        f"SELECT * FROM read_csv('{warehouse}/security/token.key')",
        f"SELECT * FROM read_blob('{warehouse}/catalog.db')",
    ]:
        with pytest.raises(pa.ArrowException, match="[Pp]ermission|not allowed|access"):
            admin.read({"sql": sql})
    files = sorted(str(p) for p in (warehouse / "iceberg").rglob("*.parquet"))
    assert admin.read({"sql": f"SELECT count(*) AS n FROM read_parquet('{files[0]}')"}).num_rows == 1


def test_a_writer_writes_only_its_namespaces(host, warehouse):
    writer = Client(host.location, user="writer", password=PASSWORD)
    written = writer.put({"table": "raw.x", "mode": "append"}, data.table(7))
    assert written["rows"] == 7
    with pytest.raises(flight.FlightUnauthorizedError, match="may not write marts.x"):
        writer.put({"table": "marts.x", "mode": "overwrite"}, data.table(7))
    assert writer.read({"table": "marts.b"}).num_rows == 50  # read:*
    admin = Client(host.location, user="root", password=PASSWORD)
    assert "marts.x" not in [t["name"] for t in admin.action("list_tables")]


def test_service_tokens_work_until_revoked(host, warehouse):
    secret = token(warehouse, "scheduler", "read:marts")
    assert secret.startswith("floe1.")
    listed = cli("tokens", "list", "-w", str(warehouse)).stdout
    assert "scheduler" in listed and "read:marts" in listed and secret not in listed
    service = Client(host.location, token=secret)
    assert service.read({"table": "marts.b"}).num_rows == 50
    with pytest.raises(pa.ArrowKeyError, match="not found"):
        service.read({"table": "raw.a"})
    cli("tokens", "revoke", "scheduler", "-w", str(warehouse))
    with pytest.raises(flight.FlightUnauthenticatedError, match="revoked"):
        service.read({"table": "marts.b"})


def test_the_cli_checks_what_it_is_given(warehouse):
    wh = ["-w", str(warehouse)]
    for args, stdin, says in [
        (["users", "add", "x", "--grant", "owner:raw", "--password-stdin"], PASSWORD, "unknown role"),
        (["users", "add", "x", "--grant", "admin:raw", "--password-stdin"], PASSWORD, "every namespace"),
        (["users", "add", "x y", "--grant", "admin", "--password-stdin"], PASSWORD, "user name"),
        (["users", "add", "x", "--grant", "admin", "--password-stdin"], "short", "at least 8"),
        (["users", "add", "x", "--grant", "admin"], PASSWORD, "--password-stdin"),
        (["users", "add", "root", "--grant", "admin", "--password-stdin"], PASSWORD, "exists"),
        (["users", "remove", "ghost"], None, "no user"),
        (["tokens", "revoke", "ghost"], None, "no service token"),
    ]:
        result = cli(*args, *wh, stdin=stdin, check=False)
        assert result.returncode != 0 and says in result.stderr, (args, result.stderr)
    listed = cli("users", "list", *wh).stdout
    assert "reader" in listed and "read:raw" in listed and "argon2" not in listed
    stored = (warehouse / "security" / "principals.json").read_text()
    assert PASSWORD not in stored and "$argon2id$" in stored
    assert (warehouse / "security" / "principals.json").stat().st_mode & 0o077 == 0


def test_exposure_rules(tmp_path):
    wh = tmp_path / "wh"
    port = free_port()
    result = subprocess.run([str(HOST_BIN), "serve", "-w", str(wh), "-p", str(port), "--address", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "without users" in result.stderr and "host users add" in result.stderr
    with Host(wh, "--address", "0.0.0.0", "--allow-anonymous") as h:
        assert Client(h.location).action("healthcheck")["status"] == "ok"
        assert "ANYONE" in h.log()
    # On loopback, anonymous until the first user exists: then credentials, at once.
    with Host(wh) as h:
        anonymous = Client(h.location)
        anonymous.put({"table": "t.a", "mode": "overwrite"}, data.table(3))
        add_user(wh, "first", "admin")
        with pytest.raises(flight.FlightUnauthenticatedError):
            anonymous.action("list_tables")
        assert Client(h.location, user="first", password=PASSWORD).action("list_tables")
    with Host(wh, "--address", "0.0.0.0") as h:  # users exist: it starts
        with pytest.raises(flight.FlightUnauthenticatedError):
            Client(h.location).action("list_tables")
