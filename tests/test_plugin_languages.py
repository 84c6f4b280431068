"""Plugins written in Python and JavaScript (guests/python, guests/js, built by
guests/build-py-js) through the same host as the Rust guests: their select, filter
and mask give exactly the Rust guests' rows on reads, puts and DoExchange, alone and
chained with Rust plugins; hostile guests in either language fail only their request;
a 2 GB stream through a pass-through completes with memory capped (the host renews
stateless instances); and each SDK's Arrow layer round-trips every fixture type."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest

import data
from floe_client import HOST_BIN, TARGET_DIR, Client, Host, free_port
from test_ops import scrape

ROOT = Path(__file__).resolve().parent.parent
GUESTS = TARGET_DIR / "wasm32-wasip2" / "release"
LANGUAGES = ["py", "js"]
RUST = ["select", "filter", "mask", "hostile"]
SDK_GUESTS = [f"{lang}-{name}" for lang in LANGUAGES for name in RUST]
DEADLINE = 10.0  # the default; JS hashes ~10k values/s in its interpreter (mask)


def transform(plugin: str, **args) -> dict:
    return {"plugin": plugin, "args": args}


def register(warehouse: Path, names: list[str]) -> None:
    """Register `names` in `warehouse` by copying the registry of a warehouse kept in
    TARGET_DIR, where a component is added again only when its bytes change:
    precompiling a 12-20 MB Python or JavaScript component takes ~10-15 s."""
    kept = TARGET_DIR / "test-plugin-registry"

    def add(name: str) -> None:
        wasm = GUESTS / f"{name}.wasm"
        index = kept / "plugins" / "index" / f"{name}.json"
        if index.exists() and json.loads(index.read_text())["sha256"] == hashlib.sha256(wasm.read_bytes()).hexdigest():
            return
        subprocess.run([str(HOST_BIN), "plugins", "add", name, str(wasm), "-w", str(kept), "--force"],
                       check=True, capture_output=True, text=True)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(add, names))
    shutil.copytree(kept / "plugins", warehouse / "plugins")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("languages") / "warehouse"
    register(warehouse, RUST + SDK_GUESTS)
    metrics = free_port()
    with Host(warehouse, "--plugin-deadline", str(DEADLINE), "--metrics-address", f"127.0.0.1:{metrics}") as h:
        h.metrics_port, h.warehouse = metrics, warehouse
        yield h


@pytest.fixture(scope="module")
def client(host) -> Client:
    return Client(host.location)


@pytest.fixture(scope="module")
def million(client):
    client.put({"table": "l.million", "mode": "overwrite"}, data.reader(1_000_000, 50_000))
    return "l.million"


def read_sorted(client: Client, command: dict) -> pa.Table:
    return client.read(command).sort_by("id")


def exchange(client: Client, transforms: list, table: pa.Table) -> pa.Table:
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"transforms": transforms}))
    writer, reader = client.flight.do_exchange(descriptor)
    writer.begin(table.schema)
    received = []
    thread = threading.Thread(target=lambda: received.append(reader.read_all()))
    thread.start()
    writer.write_table(table)
    writer.done_writing()
    thread.join(120)
    writer.close()
    return received[0].sort_by("id")


def test_sdks_describe_their_plugins_as_stateless(host):
    for name in ["py-select", "js-filter"]:
        inspected = subprocess.run([str(HOST_BIN), "plugins", "inspect", name, "-w", str(host.warehouse)],
                                   check=True, capture_output=True, text=True).stdout
        assert "stateless:   yes" in inspected, inspected
        assert ("(filter)" if "filter" in name else "(transform)") in inspected


SELECT = dict(columns=["name", "a*", "id", "day"], drop=["amount"], rename={"name": "who"})


@pytest.mark.parametrize("lang", LANGUAGES)
def test_select_equals_rusts_on_read_put_and_exchange(client, lang):
    client.put({"table": "l.sel", "mode": "overwrite"}, data.table(20_000))
    rust = read_sorted(client, {"table": "l.sel", "transforms": [transform("select", **SELECT)]})
    ours = read_sorted(client, {"table": "l.sel", "transforms": [transform(f"{lang}-select", **SELECT)]})
    assert ours.column_names == ["who", "id", "day"]
    assert ours.equals(rust)

    upload = data.table(30_000, batch_rows=7_000, start=11)
    for name in ["select", f"{lang}-select"]:
        client.put({"table": f"l.sel_{name.replace('-', '_')}", "mode": "overwrite",
                    "transforms": [transform(name, **SELECT)]}, upload)
    assert read_sorted(client, {"table": f"l.sel_{lang}_select"}).equals(read_sorted(client, {"table": "l.sel_select"}))
    assert exchange(client, [transform(f"{lang}-select", **SELECT)], upload).equals(
        exchange(client, [transform("select", **SELECT)], upload))


FILTERS = [  # the Rust filter's SQL predicate, and the same as the SDK filter's conditions
    ("amount >= 100 AND name IN ('name-1', 'name-3', 'name-500')",
     [["amount", ">=", 100], ["name", "in", ["name-1", "name-3", "name-500"]]]),
    ("name NOT IN ('name-7', 'name-8') AND amount IS NOT NULL AND amount < 80.5",
     [["name", "not in", ["name-7", "name-8"]], ["amount", "is not null"], ["amount", "<", 80.5]]),
    ("day <> '1970-01-05' AND flag = TRUE AND id != 17 AND ts >= '2023-11-20 00:00:00'",
     [["day", "!=", "1970-01-05"], ["flag", "=", True], ["id", "!=", 17], ["ts", ">=", "2023-11-20 00:00:00"]]),
    ("flag IS NULL AND id <= 500000", [["flag", "is null"], ["id", "<=", 500000]]),
]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("predicate,where", FILTERS, ids=[f"f{i}" for i in range(len(FILTERS))])
def test_filter_equals_rusts_on_a_million_rows(client, million, lang, predicate, where):
    rust = read_sorted(client, {"table": million, "transforms": [transform("filter", predicate=predicate)]})
    ours = read_sorted(client, {"table": million, "transforms": [transform(f"{lang}-filter", where=where)]})
    assert ours.num_rows == rust.num_rows > 0
    assert ours.equals(rust)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_filter_equals_rusts_on_put_and_exchange(client, lang):
    predicate, where = FILTERS[0]
    upload = data.table(40_000, batch_rows=8_000, start=13)
    rust, ours = [transform("filter", predicate=predicate)], [transform(f"{lang}-filter", where=where)]
    expected = exchange(client, rust, upload)
    assert expected.num_rows > 0 and exchange(client, ours, upload).equals(expected)
    client.put({"table": f"l.filtered_{lang}", "mode": "overwrite", "transforms": ours}, upload)
    assert read_sorted(client, {"table": f"l.filtered_{lang}"}).equals(expected)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_mask_equals_rusts_on_read_put_and_exchange(client, lang):
    client.put({"table": "l.mask", "mode": "overwrite"}, data.table(30_000))
    for args in [dict(columns=["name"], salt="s1"), dict(columns=["name"], mode="redact")]:
        rust = read_sorted(client, {"table": "l.mask", "transforms": [transform("mask", **args)]})
        ours = read_sorted(client, {"table": "l.mask", "transforms": [transform(f"{lang}-mask", **args)]})
        assert ours.equals(rust), args
    # Integers and dates are hashed as the Rust mask writes them as text.
    args = dict(columns=["name", "id", "day"], salt="pepper")
    upload = data.table(6_000, batch_rows=2_000, start=5)
    assert exchange(client, [transform(f"{lang}-mask", **args)], upload).equals(
        exchange(client, [transform("mask", **args)], upload))
    for name in ["mask", f"{lang}-mask"]:
        client.put({"table": f"l.mask_{name.replace('-', '_')}", "mode": "overwrite",
                    "transforms": [transform(name, **args)]}, upload)
    assert read_sorted(client, {"table": f"l.mask_{lang}_mask"}).equals(read_sorted(client, {"table": "l.mask_mask"}))


def test_chains_mixing_languages_equal_the_rust_chain(client):
    client.put({"table": "l.chain", "mode": "overwrite"}, data.table(60_000))
    rust = [transform("select", columns=["id", "name", "amount"]), transform("filter", predicate="amount > 120"),
            transform("mask", columns=["name"], salt="pepper")]
    expected = read_sorted(client, {"table": "l.chain", "transforms": rust})
    assert expected.num_rows > 0
    for chain in (
        [transform("py-select", columns=["id", "name", "amount"]), transform("js-filter", where=[["amount", ">", 120]]),
         rust[2]],
        [transform("js-select", columns=["id", "name", "amount"]), rust[1],
         transform("py-mask", columns=["name"], salt="pepper")],
    ):
        assert read_sorted(client, {"table": "l.chain", "transforms": chain}).equals(expected), chain


@pytest.mark.parametrize("plugin,mode,code,message", [
    ("py-hostile", "loop", "DEADLINE_EXCEEDED", "exceeded its deadline of 10s in process"),
    ("js-hostile", "loop", "DEADLINE_EXCEEDED", "exceeded its deadline of 10s in process"),
    ("py-hostile", "alloc", "RESOURCE_EXHAUSTED", "exceeded its memory limit of 256 MiB in process"),
    ("js-hostile", "alloc", "RESOURCE_EXHAUSTED", "exceeded its memory limit of 256 MiB in process"),
    ("hostile", "alloc", "RESOURCE_EXHAUSTED", "exceeded its memory limit of 256 MiB in process"),
    ("py-hostile", "raise", "INTERNAL", "failed in process: ValueError: hostile plugin raised on purpose"),
    ("js-hostile", "throw", "INTERNAL", "failed in process: TypeError: hostile plugin threw on purpose"),
])
def test_hostile_guests_fail_only_their_request(client, plugin, mode, code, message):
    client.put({"table": "l.victim", "mode": "overwrite"}, data.table(3000))
    with pytest.raises(pa.ArrowException) as caught:  # pyarrow maps ResourceExhausted to ArrowInvalid
        client.read({"table": "l.victim", "transforms": [transform(plugin, mode=mode)]})
    text = str(caught.value)
    assert code in text and f"plugin '{plugin}' {message}" in text, text
    # The host and the same plugin serve the next request.
    assert client.read({"table": "l.victim", "transforms": [transform(plugin, mode="pass")]}).num_rows == 3000


@pytest.mark.parametrize("plugin", ["py-hostile", "js-hostile", "hostile-leak"])
def test_two_gigabytes_through_a_stateless_pass_through(host, client, plugin):
    """~900 batches of 2.3 MB (2 GB): componentize-py never frees the bytes a guest
    returns (the Rust hostile guest's `leak` mode does the same on purpose), so each
    instance would reach its 256 MiB cap after ~100 batches; the host renews it first."""
    name, mode = ("hostile", "leak") if plugin == "hostile-leak" else (plugin, "pass")
    before = scrape(host.metrics_port).get("floe_plugin_renewals_total", 0)
    batch = pa.record_batch([pa.array(np.arange(290_000, dtype=np.int64))], names=["v"])
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"transforms": [transform(name, mode=mode)]}))
    writer, reader = client.flight.do_exchange(descriptor)
    writer.begin(batch.schema)
    got = {"rows": 0, "sum": 0}

    def read():
        for chunk in reader:
            got["rows"] += chunk.data.num_rows
            got["sum"] += pc.sum(chunk.data.column(0)).as_py()
    thread = threading.Thread(target=read)
    thread.start()
    for _ in range(900):
        writer.write_batch(batch)
    writer.done_writing()
    thread.join(600)
    writer.close()
    assert got["rows"] == 900 * 290_000
    assert got["sum"] == 900 * (289_999 * 290_000 // 2)
    renewals = scrape(host.metrics_port)["floe_plugin_renewals_total"] - before
    if plugin != "js-hostile":  # StarlingMonkey frees what it returns
        assert renewals >= 5, renewals


@pytest.mark.parametrize("lang", LANGUAGES)
def test_sdk_arrow_layer_round_trips_every_fixture_type(tmp_path, lang):
    table = data.table(3000, batch_rows=3000, start=1)
    source = tmp_path / "in.arrows"
    with pa.ipc.new_stream(source, table.schema) as writer:
        writer.write_table(table)
    raw, rebuilt = tmp_path / "raw.arrows", tmp_path / "values.arrows"
    if lang == "py":
        script = ("import json, sys; sys.path.insert(0, sys.argv[1]); from floe_plugin import arrow\n"
                  "b = arrow.decode_batch(open(sys.argv[2], 'rb').read())\n"
                  "open(sys.argv[3], 'wb').write(arrow.encode_batch(b))\n"
                  "cols = [arrow.Column.from_list(c.field, c.to_list()) for c in b.columns]\n"
                  "open(sys.argv[4], 'wb').write(arrow.encode_batch(arrow.Batch(b.schema, cols, b.num_rows)))\n")
        subprocess.run([sys.executable, "-c", script, str(ROOT / "guests" / "python"), str(source), str(raw),
                        str(rebuilt)], check=True)
    else:
        decoded = json.loads(subprocess.run(["node", str(ROOT / "guests" / "js" / "test" / "roundtrip.mjs"),
                                             str(source), str(raw), str(rebuilt)],
                                            check=True, capture_output=True, text=True).stdout)
        assert decoded["id"] == [str(v) for v in table.column("id").to_pylist()]
        assert decoded["amount"] == table.column("amount").to_pylist()
        assert decoded["name"] == table.column("name").to_pylist()
        assert decoded["flag"] == table.column("flag").to_pylist()
        assert decoded["day"] == [None if d is None else f"{d.isoformat()}T00:00:00.000Z"
                                  for d in table.column("day").to_pylist()]
        assert decoded["ts"] == [None if v is None else str(v)
                                 for v in table.column("ts").cast(pa.int64()).to_pylist()]
        assert "unsupported" in decoded["price"]  # decimals pass through undecoded
    for path in (raw, rebuilt):
        assert pa.ipc.open_stream(path.read_bytes()).read_all().equals(table), path.name


@pytest.mark.parametrize("lang", LANGUAGES)
def test_sdk_arrow_layer_reads_no_value_under_a_null(tmp_path, lang):
    """A null row's slot may hold anything (here dates and timestamps out of range)."""
    valid = pa.array([True, False, True]).buffers()[1]
    day = pa.Array.from_buffers(pa.date32(), 3, [valid, pa.py_buffer(np.array([0, 2**31 - 1, 5], np.int32).tobytes())],
                                null_count=1)
    ts = pa.Array.from_buffers(pa.timestamp("us"), 3, [valid, pa.py_buffer(np.array([0, 2**62, 1], np.int64).tobytes())],
                               null_count=1)
    source = tmp_path / "in.arrows"
    with pa.ipc.new_stream(source, pa.schema([("day", pa.date32()), ("ts", pa.timestamp("us"))])) as writer:
        writer.write_batch(pa.record_batch([day, ts], names=["day", "ts"]))
    if lang == "py":
        script = ("import json, sys; sys.path.insert(0, sys.argv[1]); from floe_plugin import arrow\n"
                  "b = arrow.decode_batch(open(sys.argv[2], 'rb').read())\n"
                  "print(json.dumps({c.field.name: [v and v.isoformat() for v in c.to_list()] for c in b.columns}))\n")
        out = subprocess.run([sys.executable, "-c", script, str(ROOT / "guests" / "python"), str(source)],
                             check=True, capture_output=True, text=True).stdout
        assert json.loads(out) == {"day": ["1970-01-01", None, "1970-01-06"],
                                   "ts": ["1970-01-01T00:00:00", None, "1970-01-01T00:00:00.000001"]}
    else:
        out = subprocess.run(["node", str(ROOT / "guests" / "js" / "test" / "roundtrip.mjs"), str(source),
                              str(tmp_path / "a"), str(tmp_path / "b")], check=True, capture_output=True, text=True).stdout
        assert json.loads(out) == {"day": ["1970-01-01T00:00:00.000Z", None, "1970-01-06T00:00:00.000Z"],
                                   "ts": ["0", None, "1"]}
