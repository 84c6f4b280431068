"""WASM transforms vs the same work done natively in the host, on lineitem-like rows,
with plugins written in Rust, Python and JavaScript side by side.

    .venv/bin/python tests/bench/plugins_bench.py --rows 6000000 --runs 3
    .venv/bin/python tests/bench/plugins_bench.py --languages --rows 6000000 --runs 3 --out tests/bench/results/plugin_languages.json

Reads of one table (fresh host and warehouse), median of `--runs` each:
- scan:           every row and column, no transform (the floor both sides share);
- select native:  `columns` pushed into DuckDB's scan;   select wasm: the `select` guest;
- filter native:  `filter` pushed into DuckDB's scan;    filter wasm: the `filter` guest;
Then the per-batch overhead (DoExchange of 1-row batches through `select` vs no
transform) and the cost of instantiating + binding a plugin (GetFlightInfo with
and without a transform), and GetFlightInfo's median latency without one.

With --languages, the same select and a filter every SDK can express (on an int and a
string column) through the Rust, Python (py-*) and JavaScript (js-*) guests that
guests/build-py-js builds, and per language: component and precompiled sizes,
`plugins add` time, instantiate + bind, per-batch overhead on 1-row batches and on
10k-row batches.
"""
import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from floe_client import HOST_BIN, TARGET_DIR, Client, Host  # noqa: E402

GUESTS = TARGET_DIR / "wasm32-wasip2" / "release"
SELECT = ["l_orderkey", "l_extendedprice", "l_discount", "l_shipdate"]
PREDICATE = "l_quantity < 24 AND l_discount >= 0.05 AND l_shipmode IN ('MAIL', 'SHIP')"


def lineitem(start: int, rows: int) -> pa.RecordBatch:
    """Deterministic rows shaped like TPC-H lineitem."""
    rng = np.random.default_rng(start)
    keys = np.arange(start, start + rows, dtype=np.int64)
    cents = lambda lo, hi: pa.array(rng.integers(lo, hi, rows) / 100).cast(pa.decimal128(15, 2))  # noqa: E731
    days = lambda: pa.array(rng.integers(8000, 10500, rows).astype(np.int32)).cast(pa.date32())  # noqa: E731
    pick = lambda values: pa.array(np.array(values, dtype=object)[rng.integers(0, len(values), rows)], pa.string())  # noqa: E731
    return pa.RecordBatch.from_pydict({
        "l_orderkey": keys // 4,
        "l_partkey": rng.integers(1, 200_000, rows),
        "l_suppkey": rng.integers(1, 10_000, rows),
        "l_linenumber": pa.array((keys % 7 + 1).astype(np.int32)),
        "l_quantity": cents(100, 5001),
        "l_extendedprice": cents(90_000, 10_500_000),
        "l_discount": cents(0, 11),
        "l_tax": cents(0, 9),
        "l_returnflag": pick(["A", "N", "R"]),
        "l_linestatus": pick(["O", "F"]),
        "l_shipdate": days(),
        "l_commitdate": days(),
        "l_receiptdate": days(),
        "l_shipinstruct": pick(["DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN"]),
        "l_shipmode": pick(["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"]),
        "l_comment": pick([f"carefully regular deposits {i}" for i in range(1000)]),
    })


def timed_read(client: Client, command: dict) -> tuple[float, int]:
    started = time.perf_counter()
    info = client.info(command)
    rows = sum(chunk.data.num_rows for chunk in client.flight.do_get(info.endpoints[0].ticket))
    return time.perf_counter() - started, rows


def median_of(runs: int, f):
    results = [f() for _ in range(runs)]
    return statistics.median(r[0] for r in results), results[0][1], [round(r[0], 3) for r in results]


def exchange(client: Client, batches: list[pa.RecordBatch], transforms: list) -> tuple[float, int]:
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"transforms": transforms}))
    started = time.perf_counter()
    writer, reader = client.flight.do_exchange(descriptor)
    writer.begin(batches[0].schema)
    received = []  # read while writing: a stream larger than gRPC's buffers would stall
    thread = threading.Thread(target=lambda: received.append(reader.read_all().num_rows))
    thread.start()
    for b in batches:
        writer.write_batch(b)
    writer.done_writing()
    thread.join()
    writer.close()
    return time.perf_counter() - started, received[0]


LANG_PREDICATE = "l_linenumber <= 3 AND l_shipmode IN ('MAIL', 'SHIP')"
LANG_WHERE = [["l_linenumber", "<=", 3], ["l_shipmode", "in", ["MAIL", "SHIP"]]]


def languages(args) -> dict:
    report = {"rows": args.rows, "predicate": LANG_PREDICATE}
    with tempfile.TemporaryDirectory(prefix="floe-bench-") as tmp, Host(Path(tmp) / "warehouse") as host:
        client = Client(host.location)
        step = 100_000
        batches = (lineitem(s, min(step, args.rows - s)) for s in range(0, args.rows, step))
        client.put({"table": "bench.lineitem", "mode": "overwrite"},
                   pa.RecordBatchReader.from_batches(lineitem(0, 1).schema, batches))
        t = "bench.lineitem"
        native = {"scan": {"table": t}, "select": {"table": t, "columns": SELECT},
                  "filter": {"table": t, "filter": LANG_PREDICATE}}
        for name, command in native.items():
            timed_read(client, command)
            seconds, rows, runs = median_of(args.runs, lambda: timed_read(client, command))
            report[f"native_{name}"] = {"seconds": seconds, "rows": rows, "runs": runs}
        tiny = [lineitem(i, 1) for i in range(2000)]
        tens = [lineitem(i * 10_000, 10_000) for i in range(60)]
        plain_tiny, _, _ = median_of(args.runs, lambda: exchange(client, tiny, []))
        plain_tens, _, _ = median_of(args.runs, lambda: exchange(client, tens, []))
        small = {"table": t, "limit": 1}
        plain_info = statistics.median(timed_info(client, small) for _ in range(50))
        for lang, prefix in [("rust", ""), ("python", "py-"), ("javascript", "js-")]:
            entry = report[lang] = {}
            wasm = GUESTS / f"{prefix}select.wasm"
            started = time.perf_counter()
            for name in ["select", "filter"]:
                subprocess.run([str(HOST_BIN), "plugins", "add", prefix + name, str(GUESTS / f"{prefix}{name}.wasm"),
                                "-w", str(host.warehouse)], check=True, capture_output=True)
            entry["plugins_add_s"] = (time.perf_counter() - started) / 2  # mean of select and filter
            entry["component_mb"] = wasm.stat().st_size / 1e6
            sha = hashlib.sha256(wasm.read_bytes()).hexdigest()
            (compiled,) = (Path(host.warehouse) / "plugins" / "compiled").glob(f"{sha}.*.cwasm")
            entry["precompiled_mb"] = compiled.stat().st_size / 1e6
            select = [{"plugin": prefix + "select", "args": {"columns": SELECT}}]
            args_filter = {"predicate": LANG_PREDICATE} if lang == "rust" else {"where": LANG_WHERE}
            cases = {"select": {"table": t, "transforms": select},
                     "filter": {"table": t, "transforms": [{"plugin": prefix + "filter", "args": args_filter}]}}
            for name, command in cases.items():
                timed_read(client, command)
                seconds, rows, runs = median_of(args.runs, lambda: timed_read(client, command))
                assert rows == report[f"native_{name}"]["rows"], (lang, name, rows)
                entry[name] = {"seconds": seconds, "runs": runs, "rows_per_s": args.rows / seconds,
                               "vs_native": seconds / report[f"native_{name}"]["seconds"]}
            with_plugin = statistics.median(timed_info(client, {**small, "transforms": select}) for _ in range(50))
            entry["instantiate_and_bind_ms"] = (with_plugin - plain_info) * 1e3
            seconds, rows, _ = median_of(args.runs, lambda: exchange(client, tiny, select))
            assert rows == len(tiny)
            entry["per_batch_overhead_us"] = (seconds - plain_tiny) / len(tiny) * 1e6
            seconds, rows, _ = median_of(args.runs, lambda: exchange(client, tens, select))
            entry["per_10k_row_batch_overhead_us"] = (seconds - plain_tens) / len(tens) * 1e6
            print(lang, json.dumps(entry), file=sys.stderr)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=6_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--languages", action="store_true", help="compare the Rust, Python and JavaScript guests")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    if args.languages:
        report = languages(args)
        print(json.dumps(report, indent=2))
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        return
    report = {"rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="floe-bench-") as tmp, Host(Path(tmp) / "warehouse") as host:
        for name in ["select", "filter"]:
            subprocess.run([str(HOST_BIN), "plugins", "add", name, str(GUESTS / f"{name}.wasm"), "-w", str(host.warehouse)], check=True, capture_output=True)
        client = Client(host.location)
        step = 100_000
        batches = (lineitem(s, min(step, args.rows - s)) for s in range(0, args.rows, step))
        first = lineitem(0, 1)
        client.put({"table": "bench.lineitem", "mode": "overwrite"}, pa.RecordBatchReader.from_batches(first.schema, batches))
        t = "bench.lineitem"
        cases = {
            "scan": {"table": t},
            "select_native": {"table": t, "columns": SELECT},
            "select_wasm": {"table": t, "transforms": [{"plugin": "select", "args": {"columns": SELECT}}]},
            "filter_native": {"table": t, "filter": PREDICATE},
            "filter_wasm": {"table": t, "transforms": [{"plugin": "filter", "args": {"predicate": PREDICATE}}]},
            "filter_select_wasm": {"table": t, "transforms": [
                {"plugin": "filter", "args": {"predicate": PREDICATE}},
                {"plugin": "select", "args": {"columns": SELECT}},
            ]},
        }
        for name, command in cases.items():
            timed_read(client, command)  # warm: page cache, compiled plugin
            seconds, rows, runs = median_of(args.runs, lambda: timed_read(client, command))
            report[name] = {"seconds": seconds, "rows": rows, "runs": runs, "rows_per_s": args.rows / seconds}
        for op in ["select", "filter"]:
            report[f"{op}_wasm_vs_native"] = report[f"{op}_wasm"]["seconds"] / report[f"{op}_native"]["seconds"]
            report[f"{op}_wasm_vs_scan"] = report[f"{op}_wasm"]["seconds"] / report["scan"]["seconds"]

        tiny = [lineitem(i, 1) for i in range(5000)]
        plain, _, _ = median_of(args.runs, lambda: exchange(client, tiny, []))
        wasm, rows, _ = median_of(args.runs, lambda: exchange(client, tiny, [{"plugin": "select", "args": {"columns": SELECT}}]))
        assert rows == len(tiny)
        report["per_batch_overhead_us"] = (wasm - plain) / len(tiny) * 1e6

        small = {"table": t, "limit": 1}
        plain = statistics.median(timed_info(client, small) for _ in range(50))
        chained = {**small, "transforms": [{"plugin": "select", "args": {"columns": SELECT}}]}
        with_plugin = statistics.median(timed_info(client, chained) for _ in range(50))
        report["get_flight_info_p50_ms"] = plain * 1e3
        report["instantiate_and_bind_ms"] = (with_plugin - plain) * 1e3
    print(json.dumps(report, indent=2))


def timed_info(client: Client, command: dict) -> float:
    started = time.perf_counter()
    client.info(command)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
