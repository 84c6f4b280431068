"""Put and get throughput of the host core, and the host's peak RSS during the put.

    .venv/bin/python tests/bench/core_bench.py --rows 6000000 --runs 3

Each run uses a fresh host and warehouse. MB are Arrow bytes (RecordBatch.nbytes).
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data  # noqa: E402
from floe_client import Client, Host  # noqa: E402


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_once(rows: int, batch_rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="floe-bench-") as tmp, Host(Path(tmp) / "warehouse") as host:
        client = Client(host.location)
        # Generated up front, in the client, so the timing is the upload alone.
        batches = list(data.reader(rows, batch_rows=batch_rows))
        arrow_bytes = sum(b.nbytes for b in batches)
        rss_before = peak_rss_mib(host.proc.pid)
        started = time.perf_counter()
        result = client.put({"table": "bench.t", "mode": "create"}, pa.RecordBatchReader.from_batches(data.SCHEMA, iter(batches)))
        put = time.perf_counter() - started
        del batches
        rss_put = peak_rss_mib(host.proc.pid)
        assert result["rows"] == rows

        info = client.info({"table": "bench.t"})
        started = time.perf_counter()
        reader = client.flight.do_get(info.endpoints[0].ticket)
        got_rows = got_bytes = 0
        for chunk in reader:
            got_rows += chunk.data.num_rows
            got_bytes += chunk.data.nbytes
        get = time.perf_counter() - started
        assert got_rows == rows
        return {
            "put_s": put, "get_s": get, "put_mb": arrow_bytes / 1e6, "get_mb": got_bytes / 1e6,
            "rss_start_mib": rss_before, "rss_peak_put_mib": rss_put, "rss_peak_all_mib": peak_rss_mib(host.proc.pid),
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=6_000_000)
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [run_once(args.rows, args.batch_rows) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    report = {
        "rows": args.rows,
        "runs": runs,
        "median": med,
        "put_rows_per_s": args.rows / med["put_s"],
        "put_mb_per_s": med["put_mb"] / med["put_s"],
        "get_rows_per_s": args.rows / med["get_s"],
        "get_mb_per_s": med["get_mb"] / med["get_s"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
