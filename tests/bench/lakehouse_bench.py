"""floe against the Python prototype's stack (BASELINE, tests/bench/prototype_server.py)
on TPC-H lineitem: ingest, full scan, selective scan, small requests, peak RSS.

    .venv/bin/python tests/bench/lakehouse_bench.py --scale 0.1 1 --runs 5

lineitem comes from tpchgen-cli (deterministic), cached in ~/.cache/floe/tpch. Each
ingest run uses fresh server processes and warehouses; the scans and small requests then
run against the last run's tables. The bare Parquet write (host/examples/parquet_write.rs)
uses floe's Parquet settings, once on one thread and once with one file per core. The
8-client mix (4 reads, 1 append of 100 rows, per client, for 10 s) reads the selective
scan's result of a small table on both sides; floe also runs it with 100-row slices of
lineitem as the reads. The baseline runs twice: as the prototype was (whole tables,
filtered client-side) and as its strongest fair version (`prototype_server.py
--pushdown`: columns, filter and limit in its DuckDB query). Writes
tests/bench/results/latest.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from floe_client import HOST_BIN, TARGET_DIR, Host, free_port  # noqa: E402

GUESTS = TARGET_DIR / "wasm32-wasip2" / "release"
PARQUET_WRITE = TARGET_DIR / "release" / "examples" / "parquet_write"
CACHE = Path.home() / ".cache" / "floe" / "tpch"
COLUMNS = ["l_orderkey", "l_extendedprice", "l_discount", "l_shipdate"]
PREDICATE = "l_quantity < 24 AND l_discount >= 0.05 AND l_shipmode IN ('MAIL', 'SHIP')"


def lineitem(scale: float) -> list[pa.RecordBatch]:
    path = CACHE / f"sf{scale}" / "lineitem.parquet"
    if not path.exists():
        subprocess.run([str(Path(sys.executable).parent / "tpchgen-cli"), "parquet", "-s", str(scale),
                        "--tables=lineitem", f"--output-dir={path.parent}"], check=True)
    table = pq.read_table(path)
    # Plain strings (string_view is not an Iceberg type); the same batches for every contender.
    schema = pa.schema([pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type, f.nullable)
                        for f in table.schema])
    return table.cast(schema).combine_chunks().to_batches(max_chunksize=100_000)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Prototype:
    """The baseline server as a process."""

    def __init__(self, warehouse: Path, pushdown: bool = False):
        self.port = free_port()
        self.location = f"grpc://127.0.0.1:{self.port}"
        args = ["--warehouse", str(warehouse), "--port", str(self.port), *(["--pushdown"] if pushdown else [])]
        self.proc = subprocess.Popen([sys.executable, str(HERE / "prototype_server.py"), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = flight.FlightClient(self.location)
        for _ in range(200):
            try:
                list(client.list_actions())
                return
            except pa.ArrowNotImplementedError:
                return  # it answered
            except flight.FlightUnavailableError:
                time.sleep(0.05)
        raise RuntimeError("the prototype server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def put(location: str, name: str, batches: list[pa.RecordBatch], mode: str | None = None) -> None:
    client = flight.FlightClient(location)
    command = {"table": name, **({"mode": mode} if mode else {})}
    writer, reader = client.do_put(flight.FlightDescriptor.for_command(json.dumps(command)), batches[0].schema)
    for batch in batches:
        writer.write_batch(batch)
    writer.done_writing()
    reader.read()
    writer.close()


def get(location: str, command: dict) -> tuple[int, int]:
    """GetFlightInfo + DoGet, draining the stream: (rows, bytes)."""
    client = flight.FlightClient(location)
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
    info = client.get_flight_info(descriptor)
    rows = size = 0
    for chunk in client.do_get(info.endpoints[0].ticket):
        rows += chunk.data.num_rows
        size += chunk.data.nbytes
    return rows, size


def baseline_selective(location: str, table: str) -> int:
    """What the prototype's users did: fetch everything, filter and project client-side."""
    client = flight.FlightClient(location)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"table": table})))
    data = client.do_get(info.endpoints[0].ticket).read_all()
    mask = pc.and_(pc.and_(pc.less(data["l_quantity"], pa.scalar(24, data["l_quantity"].type)),
                           pc.greater_equal(data["l_discount"], pa.scalar(0.05).cast(data["l_discount"].type))),
                   pc.is_in(data["l_shipmode"], pa.array(["MAIL", "SHIP"])))
    return data.filter(mask).select(COLUMNS).num_rows


def timed(f):
    started = time.perf_counter()
    result = f()
    return time.perf_counter() - started, result


def median(runs: list[float]) -> float:
    return statistics.median(runs)


def latencies(f, n: int) -> dict:
    samples = sorted(timed(f)[0] for _ in range(n))
    return {"p50_ms": 1e3 * statistics.median(samples), "p99_ms": 1e3 * samples[min(n - 1, int(n * 0.99))], "n": n}


def mixed_load(read, append, clients: int = 8, seconds: float = 10.0) -> float:
    """Requests/s of `clients` threads, each doing 4 small reads then 1 small append."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def work(i: int):
        k = 0
        while time.monotonic() < stop:
            (append if k % 5 == 4 else read)(i, k)
            done[i] += 1
            k += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


def bench_scale(scale: float, runs: int, tmp: Path) -> dict:
    batches = lineitem(scale)
    rows, arrow_mb = sum(b.num_rows for b in batches), sum(b.nbytes for b in batches) / 1e6
    ipc_path = tmp / f"lineitem-{scale}.arrow"
    with pa.OSFile(str(ipc_path), "wb") as sink, pa.ipc.new_file(sink, batches[0].schema) as writer:
        for b in batches:
            writer.write_batch(b)
    out = {"scale": scale, "rows": rows, "arrow_mb": arrow_mb}

    def bare_write(threads: int) -> float:
        out = subprocess.run([str(PARQUET_WRITE), str(ipc_path), str(tmp / "bare"), str(threads)],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)["seconds"]

    cores = os.cpu_count() or 1
    bare = [bare_write(1) for _ in range(runs)]
    bare_all = [bare_write(cores) for _ in range(runs)]
    floe_put, proto_put, floe_rss, proto_rss = [], [], [], []
    for run in range(runs):
        last = run == runs - 1
        host = Host(tmp / f"floe-{scale}-{run}" / "warehouse").start()
        seconds, _ = timed(lambda: put(host.location, "bench.lineitem", batches, "create"))
        floe_put.append(seconds)
        floe_rss.append(peak_rss_mib(host.proc.pid))
        proto = Prototype(tmp / f"proto-{scale}-{run}")
        seconds, _ = timed(lambda: put(proto.location, "bench.lineitem", batches))
        proto_put.append(seconds)
        proto_rss.append(peak_rss_mib(proto.proc.pid))
        if not last:
            host.stop()
            proto.stop()
    out["ingest"] = {
        "floe_s": median(floe_put), "bare_parquet_s": median(bare), "bare_parquet_all_cores_s": median(bare_all),
        "baseline_s": median(proto_put),
        "floe_runs": floe_put, "bare_runs": bare, "bare_all_cores_runs": bare_all, "baseline_runs": proto_put,
        "floe_peak_rss_mib": median(floe_rss), "baseline_peak_rss_mib": median(proto_rss),
    }

    # The strongest fair baseline: the same stack pushing columns, filter and limit into
    # its DuckDB query, on the last run's warehouse.
    strong = Prototype(tmp / f"proto-{scale}-{runs - 1}", pushdown=True)
    try:
        for name in ["select", "filter"]:
            subprocess.run([str(HOST_BIN), "plugins", "add", name, str(GUESTS / f"{name}.wasm"), "-w",
                            str(host.warehouse), "--force"], check=True, capture_output=True)
        table = {"table": "bench.lineitem"}
        con = duckdb.connect()
        con.sql("LOAD iceberg")
        iceberg_metadata = sorted((host.warehouse / "iceberg" / "bench").glob("lineitem-*/metadata/*.metadata.json"))[-1]

        def in_process():
            reader = con.sql(f"SELECT * FROM iceberg_scan('{iceberg_metadata}')").to_arrow_reader(65_536)
            return sum(b.num_rows for b in reader)

        scans = {
            "floe": [timed(lambda: get(host.location, table))[0] for _ in range(runs)],
            "duckdb_in_process": [timed(in_process)[0] for _ in range(runs)],
            "baseline": [timed(lambda: get(proto.location, table))[0] for _ in range(runs)],
            "baseline_pushdown": [timed(lambda: get(strong.location, table))[0] for _ in range(runs)],
        }
        out["full_scan"] = {f"{k}_s": median(v) for k, v in scans.items()} | {"runs": scans}

        pushdown = {**table, "columns": COLUMNS, "filter": PREDICATE}
        wasm = {**table, "transforms": [{"plugin": "filter", "args": {"predicate": PREDICATE}},
                                        {"plugin": "select", "args": {"columns": COLUMNS}}]}
        selective = {
            "floe_pushdown": [timed(lambda: get(host.location, pushdown))[0] for _ in range(runs)],
            "floe_wasm": [timed(lambda: get(host.location, wasm))[0] for _ in range(runs)],
            "baseline_client_side": [timed(lambda: baseline_selective(proto.location, "bench.lineitem"))[0] for _ in range(runs)],
            "baseline_pushdown": [timed(lambda: get(strong.location, pushdown))[0] for _ in range(runs)],
        }
        out["selective_scan"] = {f"{k}_s": median(v) for k, v in selective.items()} | {"runs": selective}

        orders = rows // 4

        def slice_command(k: int) -> dict:
            start = (k * 7919) % max(orders - 30, 1)
            return {**table, "filter": f"l_orderkey >= {start} AND l_orderkey < {start + 30}", "limit": 100}

        floe_small = latencies(lambda: get(host.location, slice_command(int(time.perf_counter_ns()) % 1000)), 100)
        proto_small = latencies(lambda: baseline_selective(proto.location, "bench.lineitem"), 5 if scale >= 1 else 20)
        strong_small = latencies(lambda: get(strong.location, slice_command(int(time.perf_counter_ns()) % 1000)), 100)
        small_batch = batches[0].slice(0, 100)
        put(host.location, "bench.small", [small_batch], "overwrite")
        put(proto.location, "bench.small", [small_batch])
        # Both sides do the same work: read what the selective scan keeps of bench.small
        # (floe filters in the scan, the baseline client-side) and append 100 rows to it.
        small_pushdown = {**pushdown, "table": "bench.small"}
        floe_rps = mixed_load(lambda i, k: get(host.location, small_pushdown),
                              lambda i, k: put(host.location, "bench.small", [small_batch], "append"))
        proto_rps = mixed_load(lambda i, k: baseline_selective(proto.location, "bench.small"),
                               lambda i, k: put(proto.location, "bench.small", [small_batch]))
        strong_rps = mixed_load(lambda i, k: get(strong.location, small_pushdown),
                                lambda i, k: put(strong.location, "bench.small", [small_batch]))
        # floe alone: the same mix with the 100-row slices of lineitem as the reads.
        floe_slices_rps = mixed_load(lambda i, k: get(host.location, slice_command(i * 1000 + k)),
                                     lambda i, k: put(host.location, "bench.small", [small_batch], "append"))
        out["small_requests"] = {"floe": floe_small, "baseline": proto_small, "baseline_pushdown": strong_small,
                                 "floe_8_clients_rps": floe_rps, "baseline_8_clients_rps": proto_rps,
                                 "baseline_pushdown_8_clients_rps": strong_rps,
                                 "floe_8_clients_lineitem_slices_rps": floe_slices_rps}
        out["peak_rss_mib"] = {"floe": peak_rss_mib(host.proc.pid), "baseline": peak_rss_mib(proto.proc.pid)}
    finally:
        host.stop()
        proto.stop()
        strong.stop()
    return out


def ratios(r: dict) -> dict:
    i, f, s, q = r["ingest"], r["full_scan"], r["selective_scan"], r["small_requests"]
    return {
        "ingest_vs_baseline": i["baseline_s"] / i["floe_s"],
        "ingest_vs_bare_parquet": i["bare_parquet_s"] / i["floe_s"],
        "ingest_vs_bare_parquet_all_cores": i["bare_parquet_all_cores_s"] / i["floe_s"],
        "full_scan_vs_baseline": f["baseline_s"] / f["floe_s"],
        "full_scan_vs_pushdown_baseline": f["baseline_pushdown_s"] / f["floe_s"],
        "full_scan_vs_duckdb_in_process": f["duckdb_in_process_s"] / f["floe_s"],
        "selective_pushdown_vs_baseline": s["baseline_client_side_s"] / s["floe_pushdown_s"],
        "selective_pushdown_vs_pushdown_baseline": s["baseline_pushdown_s"] / s["floe_pushdown_s"],
        "selective_wasm_vs_pushdown": s["floe_wasm_s"] / s["floe_pushdown_s"],
        "small_p50_baseline_over_floe": q["baseline"]["p50_ms"] / q["floe"]["p50_ms"],
        "small_p50_pushdown_baseline_over_floe": q["baseline_pushdown"]["p50_ms"] / q["floe"]["p50_ms"],
        "eight_clients_floe_over_baseline": q["floe_8_clients_rps"] / q["baseline_8_clients_rps"],
        "eight_clients_floe_over_pushdown_baseline": q["floe_8_clients_rps"] / q["baseline_pushdown_8_clients_rps"],
    }


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}; {report['date']}; median of {report['runs']} runs. "
             "Baseline = the prototype's stack (tests/bench/prototype_server.py); pushdown = the same stack "
             "pushing columns, filter and limit into its DuckDB query (`--pushdown`).", "",
             "| SF | rows | ingest floe / bare Parquet 1 core / all cores / baseline (s) | full scan floe / DuckDB in-process / baseline / pushdown (s) | selective floe pushdown / WASM / baseline / pushdown (s) | 100-row read p50 (p99) floe / baseline / pushdown (ms) | 8 clients floe / baseline / pushdown (req/s) | peak RSS floe / baseline (MiB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["scales"]:
        i, f, s, q, m = r["ingest"], r["full_scan"], r["selective_scan"], r["small_requests"], r["peak_rss_mib"]
        lines.append(
            f"| {r['scale']} | {r['rows']:,} | {i['floe_s']:.2f} / {i['bare_parquet_s']:.2f} / {i['bare_parquet_all_cores_s']:.2f} / {i['baseline_s']:.2f} "
            f"| {f['floe_s']:.2f} / {f['duckdb_in_process_s']:.2f} / {f['baseline_s']:.2f} / {f['baseline_pushdown_s']:.2f} "
            f"| {s['floe_pushdown_s']:.2f} / {s['floe_wasm_s']:.2f} / {s['baseline_client_side_s']:.2f} / {s['baseline_pushdown_s']:.2f} "
            f"| {q['floe']['p50_ms']:.1f} ({q['floe']['p99_ms']:.1f}) / {q['baseline']['p50_ms']:.0f} ({q['baseline']['p99_ms']:.0f}) "
            f"/ {q['baseline_pushdown']['p50_ms']:.1f} ({q['baseline_pushdown']['p99_ms']:.1f}) "
            f"| {q['floe_8_clients_rps']:.0f} / {q['baseline_8_clients_rps']:.1f} / {q['baseline_pushdown_8_clients_rps']:.1f} "
            f"| {m['floe']:.0f} / {m['baseline']:.0f} |")
    lines += ["", "| SF | floe ingest (M rows/s, MB/s) | floe full scan (M rows/s, MB/s) | baseline ingest | baseline full scan |",
              "|---|---|---|---|---|"]
    for r in report["scales"]:
        def rate(seconds: float) -> str:
            return f"{r['rows'] / seconds / 1e6:.2f}, {r['arrow_mb'] / seconds:.0f}"
        i, f = r["ingest"], r["full_scan"]
        lines.append(f"| {r['scale']} | {rate(i['floe_s'])} | {rate(f['floe_s'])} | {rate(i['baseline_s'])} | {rate(f['baseline_s'])} |")
    lines += ["", "| SF | " + " | ".join(report["scales"][0]["ratios"]) + " |", "|---" * (1 + len(report["scales"][0]["ratios"])) + "|"]
    for r in report["scales"]:
        lines.append(f"| {r['scale']} | " + " | ".join(f"{v:.2f}" for v in r["ratios"].values()) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, nargs="+", default=[0.1, 1])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if not PARQUET_WRITE.exists():
        sys.exit(f"{PARQUET_WRITE} is missing: cargo build --release --example parquet_write")
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
              "date": datetime.date.today().isoformat(), "runs": args.runs, "scales": []}
    with tempfile.TemporaryDirectory(prefix="floe-bench-") as tmp:
        for scale in args.scale:
            result = bench_scale(scale if scale < 1 else int(scale), args.runs, Path(tmp))
            result["ratios"] = ratios(result)
            report["scales"].append(result)
            print(json.dumps(result["ratios"], indent=2), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2))
    (args.out / "latest.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
