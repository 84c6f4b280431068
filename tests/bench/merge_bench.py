"""Merges and partitioned ingest on an SF 1-sized lineitem, against the real host.

    .venv/bin/python tests/bench/merge_bench.py --rows 6000000 --runs 3

- ingest: `--rows` lineitem rows, unpartitioned and partitioned by month(l_shipdate),
  each into a fresh host: rows/s and the host's peak RSS.
- merge: 10k and 100k rows keyed on (l_orderkey, l_linenumber), half updates of the
  newest rows and half new rows, into each table; beside a full overwrite of the same
  table (what a dbt run without merge does). The first merge's seconds, files and rows
  rewritten; the same merge again (median of the other `--runs - 1`), which finds its
  rows in the files the first one wrote.

Ship dates grow with the key (as orders arrive over time), so the newest rows sit in
the newest months: the partitioned table's merge touches those months only.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from floe_client import Client, Host  # noqa: E402
from plugins_bench import lineitem  # noqa: E402

BATCH = 500_000
KEYS = ["l_orderkey", "l_linenumber"]


def rows(start: int, n: int, total: int, changed: bool = False) -> pa.RecordBatch:
    batch = lineitem(start, n)
    keys = np.arange(start, start + n)
    days = pa.array((8000 + keys * 2500 // total).astype(np.int32)).cast(pa.date32())
    batch = batch.set_column(batch.schema.get_field_index("l_shipdate"), "l_shipdate", days)
    if changed:
        i = batch.schema.get_field_index("l_comment")
        batch = batch.set_column(i, "l_comment", pa.array(["updated"] * n))
    return batch


def reader(start: int, n: int, total: int) -> pa.RecordBatchReader:
    schema = rows(0, 1, total).schema
    return pa.RecordBatchReader.from_batches(
        schema, (rows(s, min(BATCH, start + n - s), total) for s in range(start, start + n, BATCH)))


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=6_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    total = args.rows
    work = Path(tempfile.mkdtemp(prefix="floe-merge-bench-"))
    report: dict = {"rows": total}
    layouts = {"unpartitioned": [], "month(l_shipdate)": ["month(l_shipdate)"]}
    for layout, partition_by in layouts.items():
        with Host(work / layout.replace("(", "_").replace(")", "")) as host:
            client = Client(host.location)
            started = time.perf_counter()
            client.put({"table": "b.lineitem", "mode": "overwrite", "partition_by": partition_by},
                       reader(0, total, total))
            took = time.perf_counter() - started
            entry = report.setdefault(layout, {})
            entry["ingest"] = {"seconds": round(took, 2), "rows_per_s": round(total / took),
                               "peak_rss_mib": round(peak_rss_mib(host.proc.pid))}
            for size in (10_000, 100_000):
                half = size // 2
                # The newest `half` rows changed, and `half` new ones.
                upload = pa.Table.from_batches([rows(total - half, half, total, changed=True),
                                                rows(total, half, total)])
                # The first merge rewrites files of the table as ingested; the same merge
                # again finds its rows in the files the first one wrote.
                times, summaries = [], []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    client.put({"table": "b.lineitem", "mode": "merge", "keys": KEYS}, upload)
                    times.append(time.perf_counter() - started)
                    summaries.append(client.action("list_snapshots", {"table": "b.lineitem"})[-1]["summary"])
                first = summaries[0]
                entry[f"merge {size:,}"] = {
                    "first_seconds": round(times[0], 2),
                    "first_files_replaced": int(first["deleted-data-files"]),
                    "first_rows_rewritten": int(first["deleted-records"]),
                    "again_seconds_median": round(statistics.median(times[1:]), 2),
                    "again_files_replaced": int(summaries[-1]["deleted-data-files"]),
                    "table_files": int(summaries[-1]["total-data-files"]),
                }
            count = client.read({"sql": "SELECT count(*) AS n FROM b.lineitem"}).column("n")[0].as_py()
            assert count == total + 50_000, count  # both merges' inserts, once each
            updated = client.read({"sql": "SELECT count(*) AS n FROM b.lineitem WHERE l_comment = 'updated'"})
            assert updated.column("n")[0].as_py() == 50_000
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                client.put({"table": "b.lineitem", "mode": "overwrite"}, reader(0, total, total))
                times.append(time.perf_counter() - started)
            entry["full overwrite"] = {"seconds": round(statistics.median(times), 2)}
        print(f"{layout} done", flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
