"""Every request ends and every resource is bounded: deadlines and cancellation
reach DuckDB and the plugins, shutdown is prompt, quiet connections and stalled
uploads are reaped, oversized or empty input is refused up front, and an upload
cut short (or killed with the host) leaves nothing behind."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import data
from floe_client import HOST_BIN, TARGET_DIR, Client, Host

GUESTS = TARGET_DIR / "wasm32-wasip2" / "release"
# Both cores busy until the client's deadline, and for minutes after it without cancellation.
CROSS_JOIN = "SELECT count(*) AS n FROM range(100000) a, range(1000000) b WHERE a.range + b.range = -1"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def options(timeout: float) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(timeout=timeout)


def get(client: Client, command: dict, timeout: float) -> pa.Table:
    ticket = flight.Ticket(json.dumps(command).encode())
    return client.flight.do_get(ticket, options(timeout)).read_all()


def cpu_after(host: Host, settle: float, window: float) -> float:
    """CPU seconds the host burns in `window`, starting `settle` seconds from now."""
    time.sleep(settle)
    before = cpu_seconds(host.proc.pid)
    time.sleep(window)
    return cpu_seconds(host.proc.pid) - before


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with Host(tmp_path_factory.mktemp("limits") / "warehouse", "--request-timeout", "6") as h:
        yield h


@pytest.fixture(scope="module")
def client(host) -> Client:
    c = Client(host.location)
    c.put({"table": "l.small", "mode": "overwrite"}, data.table(1000))
    return c


def test_a_query_stops_when_its_client_gives_up(host, client):
    started = time.monotonic()
    with pytest.raises(flight.FlightTimedOutError):
        get(client, {"sql": CROSS_JOIN}, timeout=3)
    assert time.monotonic() - started < 5
    # Within 2 s of the deadline the host is idle again (it was using both cores).
    assert cpu_after(host, settle=1.0, window=1.0) < 0.2
    assert client.rows("l.small") == 1000


def test_the_hosts_own_deadline_stops_a_query_and_says_so(host, client):
    started = time.monotonic()
    with pytest.raises(flight.FlightTimedOutError, match="request-timeout"):
        get(client, {"sql": CROSS_JOIN}, timeout=60)
    assert time.monotonic() - started < 9
    assert cpu_after(host, settle=1.0, window=1.0) < 0.2


def test_a_sleeping_filter_is_cancelled_at_the_deadline(host, client):
    started = time.monotonic()
    with pytest.raises(flight.FlightTimedOutError):
        get(client, {"table": "l.small", "filter": "pg_sleep(100) IS NULL"}, timeout=2)
    assert time.monotonic() - started < 4
    assert client.rows("l.small") == 1000


def test_a_subquery_filter_is_refused_before_it_runs(client):
    with pytest.raises(pa.ArrowInvalid, match="(?i)subquer"):
        get(client, {"table": "l.small", "filter": "id = (SELECT count(*) FROM range(100000000000))"}, timeout=5)


@pytest.mark.parametrize(
    "command, pattern",
    [
        ({"table": "l.small", "columns": ["id"] * 1_000_000}, "at most 1048576 bytes"),
        ({"table": "l.small", "columns": ["id"] * 10_001}, "at most 10000"),
        ({"table": "l.small", "transforms": [{"plugin": "x"}] * 10_001}, "at most 10000"),
        ({"table": "t" * 100_000}, "invalid name part"),
        ({"sql": "SELECT 1", "pad": "x" * (1 << 20)}, "at most 1048576 bytes"),
    ],
)
def test_oversized_commands_are_refused_up_front_with_a_short_message(client, command, pattern):
    with pytest.raises(pa.ArrowInvalid, match=pattern) as err:
        client.flight.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)), options(5))
    assert len(str(err.value)) < 1000


def test_a_long_table_name_in_an_action_gets_the_real_error(client):
    with pytest.raises(pa.ArrowInvalid, match="invalid name part") as err:
        client.action("get_schema", {"table": "t" * 100_000})
    assert len(str(err.value)) < 1000


def test_an_upload_without_columns_is_refused(client):
    empty = pa.table({"x": [1, 2]}).select([])
    with pytest.raises(pa.ArrowInvalid, match="no columns"):
        client.put({"table": "l.nothing"}, empty)
    assert "l.nothing" not in [t["name"] for t in client.action("list_tables")]


def test_engine_internals_are_not_for_clients(client):
    for sql in ["SELECT * FROM duckdb_secrets()", "SELECT * FROM duckdb_settings()", "SELECT current_setting('threads')"]:
        with pytest.raises(flight.FlightUnauthorizedError, match="not allowed"):
            get(client, {"sql": sql}, timeout=5)


def test_an_upload_that_ends_short_of_expect_rows_commits_nothing(client):
    batches = data.table(100).to_batches(max_chunksize=10)
    for finish in ("done_writing", "close"):
        writer, reader = client.flight.do_put(
            flight.FlightDescriptor.for_command(json.dumps({"table": "l.short", "expect_rows": 100})), batches[0].schema
        )
        for batch in batches[:3]:
            writer.write_batch(batch)
        with pytest.raises(pa.ArrowInvalid, match="announced 100 rows .* ended after 30"):
            if finish == "done_writing":
                writer.done_writing()
                reader.read()
            writer.close()
    assert "l.short" not in [t["name"] for t in client.action("list_tables")]
    assert client.put({"table": "l.short"}, data.table(100))["rows"] == 100
    with pytest.raises(pa.ArrowInvalid, match="announced 99 rows"):
        client.put({"table": "l.short", "expect_rows": 99}, data.table(100))
    assert client.rows("l.short") == 100


def parquet_files(warehouse: Path, namespace: str) -> set[Path]:
    return set((warehouse / "iceberg" / namespace).rglob("*.parquet"))


def test_limits_on_queries_plugins_connections_and_uploads(tmp_path):
    """A host with tight limits: one query at a time, quiet connections closed
    after 2 s, uploads that stall for 2 s aborted."""
    args = ["--max-concurrent-queries", "1", "--queue-timeout", "0.5",
            "--idle-connection-timeout", "2", "--idle-upload-timeout", "2"]
    with Host(tmp_path / "warehouse", *args) as host:
        client = Client(host.location)
        client.put({"table": "q.t", "mode": "overwrite"}, data.table(100))

        # One query runs; the next waits 0.5 s for its slot, then is refused.
        sleeper = threading.Thread(target=lambda: pytest.raises(
            flight.FlightTimedOutError, get, client, {"table": "q.t", "filter": "pg_sleep(100) IS NULL"}, 3))
        sleeper.start()
        time.sleep(0.5)
        with pytest.raises(pa.ArrowException, match="max-concurrent-queries"):
            get(client, {"table": "q.t"}, timeout=5)
        sleeper.join()
        assert client.rows("q.t") == 100  # the slot came back

        # Connections that send nothing, or only the HTTP/2 preface, are closed.
        sockets = []
        for i in range(100):
            s = socket.create_connection(("127.0.0.1", host.port))
            if i % 2:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            sockets.append(s)
        time.sleep(3.5)
        for s in sockets:
            s.settimeout(1)
            try:
                while s.recv(65536):
                    pass  # the server's SETTINGS and GOAWAY, then the end
            except (ConnectionResetError, TimeoutError) as err:
                assert isinstance(err, ConnectionResetError), "a silent connection is still open"
            s.close()
        assert client.rows("q.t") == 100  # a live client keeps its connection

        # An upload that stalls is aborted: nothing committed, its files deleted.
        before = parquet_files(host.warehouse, "q")
        big = data.table(200_000)
        writer, reader = client.flight.do_put(
            flight.FlightDescriptor.for_command(json.dumps({"table": "q.t"})), big.schema
        )
        writer.write_table(big, max_chunksize=50_000)
        time.sleep(4)
        with pytest.raises(flight.FlightError):
            writer.done_writing()
            reader.read()
            writer.close()
        assert client.rows("q.t") == 100
        assert parquet_files(host.warehouse, "q") == before
        assert "idle-upload-timeout" in host.log()


def test_sigterm_during_a_long_query_exits_within_the_grace_period(tmp_path):
    host = Host(tmp_path / "warehouse", "--shutdown-grace", "1").start()
    client = Client(host.location)
    failed = []
    reader = threading.Thread(target=lambda: failed.append(pytest.raises(flight.FlightError, get, client, {"sql": CROSS_JOIN}, 60)))
    reader.start()
    time.sleep(1)
    started = time.monotonic()
    host.proc.send_signal(signal.SIGTERM)
    host.proc.wait(10)
    assert time.monotonic() - started < 1 + 2 + 0.5, host.log()
    reader.join(10)
    assert failed, "the running read did not end"
    host.stop()


def test_a_host_killed_mid_upload_leaves_no_files_after_restart(tmp_path):
    warehouse = tmp_path / "warehouse"
    with Host(warehouse) as host:
        Client(host.location).put({"table": "k.t", "mode": "overwrite"}, data.table(1000))
    committed = parquet_files(warehouse, "k")
    # The 50 rounds: FLOE_KILL_ROUNDS=50 (the suite runs a few).
    for round in range(int(os.environ.get("FLOE_KILL_ROUNDS", "3"))):
        host = Host(warehouse).start()
        client = Client(host.location)
        writer, _ = client.flight.do_put(
            flight.FlightDescriptor.for_command(json.dumps({"table": "k.t"})), data.SCHEMA
        )
        # Keep sending until the upload has data files on disk, then kill the host.
        deadline = time.monotonic() + 30
        batch_start = 0
        while parquet_files(warehouse, "k") == committed and time.monotonic() < deadline:
            writer.write_batch(data.batch(batch_start, 50_000, seed=round))
            batch_start += 50_000
        assert parquet_files(warehouse, "k") != committed, "the upload wrote no file"
        host.proc.kill()
        host.proc.wait()
        host.stop()
        with Host(warehouse) as restarted:
            assert parquet_files(warehouse, "k") == committed
            assert Client(restarted.location).rows("k.t") == 1000
            assert "never committed" in restarted.log()


@pytest.fixture(scope="module")
def plugin_host(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("plugin-limits") / "warehouse"
    for name in ["select", "hostile"]:
        subprocess.run([str(HOST_BIN), "plugins", "add", name, str(GUESTS / f"{name}.wasm"), "-w", str(warehouse)],
                       check=True, capture_output=True)
    args = ["--plugin-deadline", "60", "--max-concurrent-plugins", "1", "--queue-timeout", "0.5"]
    with Host(warehouse, *args) as h:
        Client(h.location).put({"table": "p.t", "mode": "overwrite"}, data.table(1000))
        yield h


def hostile(mode: str) -> dict:
    return {"table": "p.t", "transforms": [{"plugin": "hostile", "args": {"mode": mode}}]}


def test_a_spinning_plugin_stops_when_its_client_leaves(plugin_host):
    client = Client(plugin_host.location)
    with pytest.raises(flight.FlightTimedOutError):
        get(client, hostile("loop"), timeout=2)
    # Its deadline is 60 s, but the request is gone: the guest is stopped at once.
    assert cpu_after(plugin_host, settle=1.0, window=1.0) < 0.2
    assert get(client, hostile("pass"), timeout=10).num_rows == 1000


def test_plugin_chains_beyond_the_bound_are_refused_while_plain_reads_go_on(plugin_host):
    client = Client(plugin_host.location)
    spinning = threading.Thread(target=lambda: pytest.raises(flight.FlightTimedOutError, get, client, hostile("loop"), 3))
    spinning.start()
    time.sleep(0.5)
    with pytest.raises(pa.ArrowException, match="max-concurrent-plugins"):
        get(client, hostile("pass"), timeout=10)
    assert get(client, {"table": "p.t"}, timeout=10).num_rows == 1000
    spinning.join()


def test_select_without_columns_is_refused_at_bind(plugin_host):
    client = Client(plugin_host.location)
    command = {"table": "p.t", "transforms": [{"plugin": "select", "args": {"columns": []}}]}
    with pytest.raises(pa.ArrowInvalid, match="keeps no columns"):
        client.info(command)
