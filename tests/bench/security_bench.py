"""What authentication and TLS cost, measured against the real host, one run side by side.

    .venv/bin/python tests/bench/security_bench.py --rows 6000000 --reads 300

Four hosts on the same warehouse data (an SF 1-sized lineitem, `--rows`): plain
(anonymous, grpc://), auth (a service token on every call), tls (grpc+tls://,
anonymous), auth+tls. For each: the p50/p99 of 100-row filtered reads (GetFlightInfo +
DoGet, as a dashboard does) and the full-scan MB/s (median of 5), with the in-process
floor (DuckDB reading the same table's Parquet files) beside them.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from certs import make_all, server_args  # noqa: E402
from floe_client import HOST_BIN, Client, Host  # noqa: E402
from limits_bench import load  # noqa: E402

SMALL = {"table": "bench.lineitem", "filter": "l_orderkey < 100", "limit": 100}


def small_reads(client: Client, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        assert client.read(SMALL).num_rows == 100
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000


def full_scan(client: Client) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        table = client.read({"table": "bench.lineitem"})
        runs.append(table.nbytes / (time.perf_counter() - start) / 1e6)
    return statistics.median(runs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=6_000_000)
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="floe-security-bench-"))
    wh = work / "warehouse"
    certs = make_all(work / "certs")
    root = (certs / "ca.crt").read_bytes()
    with Host(wh) as h:
        load(Client(h.location), "bench.lineitem", args.rows)
    results = {}
    token = None
    # Without principals first (anonymous), then with a service token on every call.
    for name, tls, auth in [("plain", False, False), ("tls", True, False), ("auth", False, True),
                            ("auth+tls", True, True)]:
        if auth and token is None:
            token = subprocess.run(
                [str(HOST_BIN), "tokens", "create", "bench", "--grant", "read:*", "-w", str(wh)],
                check=True, capture_output=True, text=True).stdout.strip()
        with Host(wh, *(server_args(certs) if tls else []), probe=False) as host:
            location = f"grpc+tls://127.0.0.1:{host.port}" if tls else host.location
            client = Client(location, token=token if auth else None, tls_root_certs=root if tls else None)
            small_reads(client, 20)  # warm
            p50, p99 = small_reads(client, args.reads)
            mbps = full_scan(client)
            results[name] = {"small_p50_ms": round(p50, 2), "small_p99_ms": round(p99, 2), "scan_MBps": round(mbps)}
            print(name, results[name], flush=True)
    files = [str(p) for p in (wh / "iceberg").rglob("*.parquet")]
    con = duckdb.connect()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        con.sql(f"SELECT * FROM read_parquet({files!r}) WHERE l_orderkey < 100 LIMIT 100").to_arrow_table()
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    scanned = con.sql(f"SELECT * FROM read_parquet({files!r})").to_arrow_table()
    results["floor (DuckDB in-process)"] = {
        "small_p50_ms": round(statistics.median(times) * 1000, 2),
        "scan_MBps": round(scanned.nbytes / (time.perf_counter() - start) / 1e6),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
