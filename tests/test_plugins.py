"""WASM plugins end to end: `host plugins` against a running host, the example
guests (select, filter, mask) on reads, puts and DoExchange, and hostile guests
that loop, allocate, trap, panic or break the contract. The module runs twice: on a
local warehouse, and on S3 (a moto bucket) + PostgreSQL, where `host plugins` runs
as from another machine (a host directory of its own) and the host still sees
what it registers."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest

import data
from floe_client import HOST_BIN, TARGET_DIR, Client, Host, free_port
from postgres import Postgres
from s3 import S3Server

GUESTS = TARGET_DIR / "wasm32-wasip2" / "release"
EXAMPLES = ["select", "filter", "mask", "hostile"]
DEADLINE = 3.0  # seconds: the host under test runs with --plugin-deadline 3


def plugins_cli(host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`host plugins ARGS` on the warehouse `host` serves."""
    return subprocess.run([str(HOST_BIN), "plugins", *args, *host.cli_args], capture_output=True, text=True,
                          check=check, env={**os.environ, **host.cli_env})


def local_host(warehouse: Path, *args: str, **kwargs) -> Host:
    host = Host(warehouse, *args, **kwargs)
    host.cli_args, host.cli_env = ["-w", str(warehouse)], {}
    return host


def transform(plugin: str, **args) -> dict:
    return {"plugin": plugin, "args": args}


@pytest.fixture(scope="module", params=["local", "s3+postgres"])
def host(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("plugins")
    if request.param == "local":
        with local_host(root / "warehouse", "--plugin-deadline", str(DEADLINE)) as h:
            yield h
        return
    with S3Server() as s3, Postgres() as pg:
        url, home, port = f"{s3.bucket('floe-plugins')}/wh", root / "host", free_port()
        with Host(home, port=port, env=s3.env, serve_args=[
                "serve", "-w", url, "--host-dir", str(home), "--catalog", pg.uri, "-p", str(port),
                "--plugin-deadline", str(DEADLINE)]) as h:
            h.cli_args = ["-w", url, "--host-dir", str(root / "elsewhere")]
            h.cli_env = s3.env
            h.registry_index = lambda: [k.rsplit("/", 1)[1] for k in s3.keys(f"{url}/plugins/index/")]
            yield h


@pytest.fixture(scope="module")
def client(host) -> Client:
    return Client(host.location)


@pytest.fixture(scope="module")
def registered(host, client):
    """The example guests, added while the host runs."""
    for name in EXAMPLES:
        plugins_cli(host, "add", name, str(GUESTS / f"{name}.wasm"), "--force")
    return client


@pytest.fixture(scope="module")
def million(registered):
    """1,000,000 rows with nulls in every column but id."""
    registered.put({"table": "p.million", "mode": "overwrite"}, data.reader(1_000_000, 50_000))
    return "p.million"


def read_sorted(client: Client, command: dict) -> pa.Table:
    return client.read(command).sort_by("id")


def test_plugins_added_to_a_running_host_are_used_on_the_next_request(host, client):
    client.put({"table": "p.small", "mode": "overwrite"}, data.table(1000))
    command = {"table": "p.small", "transforms": [transform("select", columns=["id"])]}
    with pytest.raises(pa.ArrowKeyError, match="unknown plugin 'select'"):
        client.read(command)

    added = plugins_cli(host, "add", "select", str(GUESTS / "select.wasm"), "--force")
    assert "added plugin 'select'" in added.stdout
    assert client.read(command).column_names == ["id"]

    listed = {p["name"]: p for p in client.action("list_plugins")}
    assert listed["select"]["describe"]["kind"] == "transform"
    assert listed["select"]["sha256"] == hashlib.sha256((GUESTS / "select.wasm").read_bytes()).hexdigest()

    plugins_cli(host, "remove", "select")
    with pytest.raises(pa.ArrowKeyError, match="unknown plugin 'select'"):
        client.read(command)
    plugins_cli(host, "add", "select", str(GUESTS / "select.wasm"))
    assert client.read(command).num_rows == 1000


def test_list_and_inspect(host, registered):
    rows = {line.split()[0]: line.split() for line in plugins_cli(host, "list").stdout.splitlines()[1:]}
    assert set(EXAMPLES) <= set(rows)
    name, version, kind, sha256, size = rows["filter"][:5]
    assert (version, kind) == ("0.2.0", "filter")
    assert sha256 == hashlib.sha256((GUESTS / "filter.wasm").read_bytes()).hexdigest()
    assert int(size) == (GUESTS / "filter.wasm").stat().st_size
    inspected = plugins_cli(host, "inspect", "filter").stdout
    assert "filter 0.2.0 (filter)" in inspected
    assert json.loads(inspected.split("args schema:\n", 1)[1])["required"] == ["predicate"]
    missing = plugins_cli(host, "inspect", "nope", check=False)
    assert missing.returncode != 0 and "unknown plugin 'nope'" in missing.stderr


def test_select_columns_globs_drop_and_rename(registered):
    client = registered
    client.put({"table": "p.sel", "mode": "overwrite"}, data.table(20_000))
    chain = [transform("select", columns=["name", "a*", "id"], drop=["amount"], rename={"name": "who"})]
    command = {"table": "p.sel", "transforms": chain}
    info = client.info(command)
    table = client.flight.do_get(info.endpoints[0].ticket).read_all()
    assert table.column_names == ["who", "id"]
    assert info.schema == table.schema
    native = client.read({"table": "p.sel", "columns": ["name", "id"]})
    assert table.column("who").to_pylist() == native.column("name").to_pylist()
    assert table.column("id").to_pylist() == native.column("id").to_pylist()


PREDICATES = [
    "amount >= 100 AND name IN ('name-1', 'name-3', 'name-500')",
    "flag IS NULL OR NOT (id < 500000 AND price > 0)",
    "name NOT IN ('name-7', 'name-8') AND amount IS NOT NULL AND amount < 80.5",
    "day <> '1970-01-05' AND (price <= -1000.25 OR flag = TRUE) AND id != 17",
    "ts >= '2023-11-20 00:00:00' AND amount > 150",
    # The grammar both share since the filter plugin uses the host's parser:
    "amount BETWEEN 50 AND 100.5 AND id NOT BETWEEN 1000 AND 900000",
    "name LIKE 'name-1%' OR name ILIKE 'NAME-99_'",
    "CAST(id AS VARCHAR) LIKE '%77' AND price::DOUBLE > 0",
    "id % 5 = 0 AND amount * 2 - 10 > 150 AND id / 4 > 1000",
    "day BETWEEN DATE '1970-03-01' AND DATE '1972-01-01' AND ts < TIMESTAMPTZ '2023-11-16 00:00:00+00'",
    "NOT (flag IS NULL OR name NOT IN ('name-1', 'name-2')) OR (price IS NULL AND -id > -1000)",
]


@pytest.mark.parametrize("predicate", PREDICATES)
def test_filter_returns_exactly_duckdbs_rows(registered, million, predicate):
    wasm = read_sorted(registered, {"table": million, "transforms": [transform("filter", predicate=predicate)]})
    native = read_sorted(registered, {"table": million, "filter": predicate})
    assert wasm.num_rows == native.num_rows > 0
    assert wasm.equals(native)


def test_filter_errors_name_the_plugin_and_the_problem(registered, million):
    for predicate, problem in [("amount >", "Expected: an expression"), ("nope = 1", 'no column "nope"')]:
        with pytest.raises(pa.ArrowInvalid, match=f"plugin 'filter'.*{problem}"):
            registered.info({"table": million, "transforms": [transform("filter", predicate=predicate)]})
    with pytest.raises(pa.ArrowInvalid, match="plugin 'filter': invalid args.*predicat"):
        registered.info({"table": million, "transforms": [transform("filter", predicat="x")]})


def test_mask_is_deterministic_per_salt_and_leaves_other_columns(registered):
    client = registered
    client.put({"table": "p.mask", "mode": "overwrite"}, data.table(30_000))
    original = read_sorted(client, {"table": "p.mask"})

    def masked(**args):
        return read_sorted(client, {"table": "p.mask", "transforms": [transform("mask", columns=["name"], **args)]})

    a, b, other = masked(salt="s1"), masked(salt="s1"), masked(salt="s2")
    assert a.equals(b)
    expected = [
        None if v is None else hashlib.sha256(("s1" + v).encode()).hexdigest()
        for v in original.column("name").to_pylist()
    ]
    assert a.column("name").to_pylist() == expected
    assert a.column("name").to_pylist() != other.column("name").to_pylist()
    for column in original.column_names:
        if column != "name":
            assert a.column(column).equals(original.column(column)), column

    redacted = masked(mode="redact")
    assert set(redacted.column("name").drop_null().to_pylist()) == {"REDACTED"}
    assert redacted.column("name").null_count == original.column("name").null_count


CHAIN = [
    transform("select", columns=["id", "name", "amount"]),
    transform("filter", predicate="amount > 120"),
    transform("mask", columns=["name"], salt="pepper"),
]


def expected_chain(table: pa.Table) -> pa.Table:
    kept = table.select(["id", "name", "amount"]).filter(pc.greater(table.column("amount"), 120))
    names = [None if v is None else hashlib.sha256(("pepper" + v).encode()).hexdigest() for v in kept.column("name").to_pylist()]
    return kept.set_column(1, "name", pa.array(names, pa.string())).sort_by("id")


def test_chain_on_read(registered):
    registered.put({"table": "p.chain", "mode": "overwrite"}, data.table(100_000))
    source = registered.read({"table": "p.chain"})
    result = read_sorted(registered, {"table": "p.chain", "transforms": CHAIN})
    assert result.num_rows > 0
    assert result.equals(expected_chain(source))


def test_a_chain_scans_only_the_columns_it_reads(tmp_path, monkeypatch):
    """filter then select: the scan reads what select keeps plus what the filter reads."""
    monkeypatch.setenv("RUST_LOG", "floe=debug")
    with local_host(tmp_path / "warehouse") as host:
        for name in ["filter", "select"]:
            plugins_cli(host, "add", name, str(GUESTS / f"{name}.wasm"))
        client = Client(host.location)
        client.put({"table": "p.wide", "mode": "overwrite"}, data.table(20_000))
        source = client.read({"table": "p.wide"})
        chain = [transform("filter", predicate="amount > 120"), transform("select", columns=["id", "name"])]
        result = read_sorted(client, {"table": "p.wide", "transforms": chain})
        expected = source.filter(pc.greater(source.column("amount"), 120)).select(["id", "name"]).sort_by("id")
        assert result.num_rows > 0
        assert result.equals(expected)
        assert 'SELECT "id", "name", "amount" FROM' in host.log()


def test_an_unusable_precompiled_file_is_compiled_again_from_the_registry(tmp_path):
    with local_host(tmp_path / "warehouse") as host:
        plugins_cli(host, "add", "select", str(GUESTS / "select.wasm"))
        compiled = list((tmp_path / "warehouse" / "plugins" / "compiled").glob("*.cwasm"))
        assert compiled
        for path in compiled:
            path.write_bytes(b"not a precompiled component")
        client = Client(host.location)
        client.put({"table": "p.t"}, data.table(10))
        got = client.read({"table": "p.t", "transforms": [transform("select", columns=["id"])]})
        assert got.schema.names == ["id"] and got.num_rows == 10
        assert "compiling the plugin again" in host.log()


def test_each_plugin_is_instantiated_once_per_rpc(tmp_path):
    """A filter -> select chain that narrows the scan binds each plugin once in
    GetFlightInfo and once in DoGet (the host logs every instantiation)."""
    with local_host(tmp_path / "warehouse", env={"RUST_LOG": "info,floe::plugins=debug"}) as host:
        for name in ["filter", "select"]:
            plugins_cli(host, "add", name, str(GUESTS / f"{name}.wasm"))
        client = Client(host.location)
        client.put({"table": "p.bound", "mode": "overwrite"}, data.table(20_000))
        chain = [transform("filter", predicate="amount > 120"), transform("select", columns=["id", "name"])]

        def bound() -> list[str]:
            plain = re.sub(r"\x1b\[[0-9;]*m", "", host.log())
            return re.findall(r"plugin bound plugin=(\w+)", plain)

        before = len(bound())
        info = client.info({"table": "p.bound", "transforms": chain})
        assert bound()[before:] == ["filter", "select"]
        table = client.flight.do_get(info.endpoints[0].ticket).read_all()
        assert bound()[before:] == ["filter", "select"] * 2
        assert table.column_names == ["id", "name"] and table.num_rows > 0


def test_chain_on_put_stores_the_transformed_rows(registered):
    upload = data.table(100_000, start=7)
    summary = registered.put({"table": "p.chained", "mode": "overwrite", "transforms": CHAIN}, upload)
    stored = read_sorted(registered, {"table": "p.chained"})
    assert summary["rows"] == stored.num_rows > 0
    assert stored.equals(expected_chain(upload))


def test_chain_over_do_exchange(registered):
    upload = data.table(60_000, batch_rows=5_000, start=3)
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"transforms": CHAIN}))
    writer, reader = registered.flight.do_exchange(descriptor)
    writer.begin(upload.schema)
    received = []

    def read_all():  # read while writing, as a streaming client must
        received.append(reader.read_all())

    thread = threading.Thread(target=read_all)
    thread.start()
    writer.write_table(upload)
    writer.done_writing()
    thread.join(60)
    writer.close()
    assert received and received[0].sort_by("id").equals(expected_chain(upload))


def test_unknown_plugin_is_not_found_everywhere(registered):
    bad = [transform("nope")]
    with pytest.raises(pa.ArrowKeyError, match="unknown plugin 'nope'"):
        registered.get({"table": "p.small", "transforms": bad})
    with pytest.raises(pa.ArrowKeyError, match="unknown plugin 'nope'"):
        registered.put({"table": "p.never", "transforms": bad}, data.table(10))
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"transforms": bad}))
    writer, reader = registered.flight.do_exchange(descriptor)
    with pytest.raises(pa.ArrowKeyError, match="unknown plugin 'nope'"):
        writer.begin(data.SCHEMA)
        writer.write_table(data.table(10))
        writer.done_writing()
        reader.read_all()
    assert "p.never" not in {t["name"] for t in registered.action("list_tables")}


HOSTILE = [
    ("loop", "DEADLINE_EXCEEDED", "exceeded its deadline"),
    ("alloc", "RESOURCE_EXHAUSTED", "exceeded its memory limit of 256 MiB"),
    ("trap", "INTERNAL", "crashed in process: wasm trap"),
    ("panic", "INTERNAL", "panicked at .*hostile plugin panicked on purpose"),
    ("bad-ipc", "INTERNAL", "returned malformed Arrow IPC"),
    ("wrong-schema", "internal error", "declares an output schema with no columns"),
]


@pytest.mark.parametrize("mode,code,message", HOSTILE)
def test_hostile_guest_fails_only_its_request(host, registered, mode, code, message):
    client = registered
    client.put({"table": "p.victim", "mode": "overwrite"}, data.table(5000))
    outcome = {}

    def hostile():
        start = time.monotonic()
        try:
            client.read({"table": "p.victim", "transforms": [transform("hostile", mode=mode)]})
            outcome["error"] = None
        except flight.FlightError as err:
            outcome["error"] = err
        except pa.ArrowException as err:
            outcome["error"] = err
        outcome["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=hostile)
    thread.start()
    # An ordinary request meanwhile, on its own connection, succeeds.
    assert Client(host.location).read({"table": "p.victim", "columns": ["id"]}).num_rows == 5000
    thread.join(DEADLINE + 30)
    error = outcome["error"]
    assert error is not None, f"{mode}: the hostile request succeeded"
    assert code in str(error) and "plugin 'hostile'" in str(error), str(error)
    assert re.search(message, str(error)), str(error)
    if mode == "loop":
        assert outcome["seconds"] < DEADLINE + 1, outcome["seconds"]
    assert host.proc.poll() is None
    assert client.action("healthcheck")["status"] == "ok"


def test_a_failing_chain_on_put_commits_nothing(registered):
    client = registered
    client.put({"table": "p.keep", "mode": "overwrite"}, data.table(2000))
    before = client.action("list_snapshots", {"table": "p.keep"})
    with pytest.raises(flight.FlightError, match="plugin 'hostile'"):
        client.put({"table": "p.keep", "transforms": [transform("hostile", mode="panic")]}, data.table(2000))
    assert client.rows("p.keep") == 2000
    assert client.action("list_snapshots", {"table": "p.keep"}) == before


def test_chatty_guest_output_goes_to_the_log_truncated(host, registered):
    result = registered.read({"table": "p.small", "transforms": [transform("hostile", mode="print")]})
    assert result.num_rows == 1000
    log = host.log()
    assert "guest: line 0 of a very chatty plugin" in log
    assert "line 99999 of a very chatty plugin" not in log
    assert "more bytes of output dropped" in log


def test_add_refuses_what_is_not_a_floe_plugin(host, registered, tmp_path):
    index = getattr(host, "registry_index", lambda: [p.name for p in (host.warehouse / "plugins" / "index").iterdir()])
    before = sorted(index())
    text = tmp_path / "notes.wasm"
    text.write_text("hello")
    core = tmp_path / "core.wasm"
    core.write_bytes(b"\0asm\x01\0\0\0")  # an empty core module
    cases = [
        (text, "not a WebAssembly file"),
        (core, "core WebAssembly module, not a component"),
        (GUESTS / "other_world.wasm", "does not export floe:plugin/transform@0.3.0"),
        (GUESTS / "legacy.wasm", "built against floe:plugin/transform@0.1.0, an older plugin contract: rebuild it"),
        (tmp_path / "missing.wasm", "missing.wasm"),
    ]
    for path, message in cases:
        result = plugins_cli(host, "add", "intruder", str(path), check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr
    exists = plugins_cli(host, "add", "select", str(GUESTS / "mask.wasm"), check=False)
    assert exists.returncode != 0 and "already registered" in exists.stderr and "--force" in exists.stderr
    bad_name = plugins_cli(host, "add", "../x", str(GUESTS / "mask.wasm"), check=False)
    assert bad_name.returncode != 0 and "invalid plugin name" in bad_name.stderr
    assert sorted(index()) == before
    assert [f"{p['name']}.json" for p in registered.action("list_plugins")] == before
