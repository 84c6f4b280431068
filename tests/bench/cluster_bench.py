"""Several hosts on one warehouse (PostgreSQL catalog; table files in a shared local
directory, or in a bucket of an S3-compatible server on loopback) against one host on
the default (local directory, SQLite catalog), in one run:

    .venv/bin/python tests/bench/cluster_bench.py --scale 1 --runs 3

- ingest: TPC-H lineitem (tpchgen-cli, cached) as `--puts` uploads through one host, on
  local+SQLite, local+PostgreSQL and S3+PostgreSQL;
- full scan of it: one host (one endpoint) and three hosts (one endpoint per host,
  fetched in parallel by floe_client), with each host's CPU seconds, and an
  order-independent checksum (DuckDB: count and sum of row hashes) that must equal
  the local single-host read's; the floor is DuckDB in-process reading the same files
  (from the bucket, through httpfs, for S3);
- commit latency: 12 appenders, 4 per host, `--appends` small uploads each.
The S3 server is moto's (the tests' own): a single Python process, far slower than a
real object store, so its figures bound floe's overhead from above.
Each figure is the median over `--runs`.
"""
import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from floe_client import Client, Host, free_port  # noqa: E402
from lakehouse_bench import lineitem  # noqa: E402
from limits_bench import cpu_seconds  # noqa: E402
from postgres import Postgres  # noqa: E402
from s3 import S3Server  # noqa: E402

TABLE = "bench.lineitem"


def checksum(rows: pa.Table) -> tuple:
    return duckdb.sql("SELECT count(*), sum(hash(t)::HUGEINT) FROM rows t").fetchone()


def ingest(client: Client, batches: list, puts: int) -> float:
    per_put = -(-len(batches) // puts)
    start = time.perf_counter()
    for i in range(0, len(batches), per_put):
        mode = "overwrite" if i == 0 else "append"
        client.put({"table": TABLE, "mode": mode}, pa.Table.from_batches(batches[i:i + per_put]))
    return time.perf_counter() - start


def scan(client: Client, hosts: list) -> dict:
    before = [cpu_seconds(h.proc.pid) for h in hosts]
    start = time.perf_counter()
    info = client.info({"table": TABLE})
    got = client.read({"table": TABLE})
    seconds = time.perf_counter() - start
    cpu = [round(cpu_seconds(h.proc.pid) - b, 2) for h, b in zip(hosts, before)]
    return {"seconds": seconds, "endpoints": len(info.endpoints), "cpu_s_per_host": cpu,
            "checksum": checksum(got), "rows": got.num_rows}


def commit_latency(hosts: list, appends: int) -> list:
    latencies, errors = [], []
    small = pa.table({"n": pa.array(range(100), pa.int64())})

    def appender(host):
        client = Client(host.location)
        try:
            for _ in range(appends):
                start = time.perf_counter()
                client.put({"table": "bench.commits"}, small)
                latencies.append(time.perf_counter() - start)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    Client(hosts[0].location).put({"table": "bench.commits", "mode": "overwrite"}, small)
    threads = [threading.Thread(target=appender, args=(h,)) for h in hosts for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    rows = Client(hosts[1].location).rows("bench.commits")
    assert rows == 100 * (1 + len(threads) * appends), rows
    return sorted(latencies)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1)
    parser.add_argument("--puts", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--appends", type=int, default=25)
    args = parser.parse_args()
    batches = lineitem(args.scale)
    rows = sum(b.num_rows for b in batches)
    work = Path(tempfile.mkdtemp(prefix="floe-cluster-bench-"))
    results: dict = {}

    def add(key, value):
        results.setdefault(key, []).append(value)

    def several(label, hosts, reference):
        """Ingest through the first of `hosts`, scan with it alone, then with all."""
        hosts[0].start()
        try:
            client = Client(hosts[0].location)
            add(f"ingest {label} rows/s", rows / ingest(client, batches, args.puts))
            one = scan(client, hosts[:1])
            assert one["endpoints"] == 1 and one["checksum"] == reference, one
            add(f"scan {label} 1 host s", one["seconds"])
            add(f"scan {label} 1 host CPU s", one["cpu_s_per_host"])
            for h in hosts[1:]:
                h.start()
            # The first host learns of the others at its next heartbeat (5 s).
            deadline = time.monotonic() + 15
            while len(client.info({"table": TABLE}).endpoints) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            three = scan(client, hosts)
            assert three["endpoints"] == 3 and three["checksum"] == reference, three
            add(f"scan {label} 3 hosts s", three["seconds"])
            add(f"scan {label} 3 hosts CPU s per host", three["cpu_s_per_host"])
            latencies = commit_latency(hosts, args.appends)
            add(f"commit {label} p50 ms (12 appenders, 3 hosts)", latencies[len(latencies) // 2] * 1000)
            add(f"commit {label} p99 ms (12 appenders, 3 hosts)", latencies[int(len(latencies) * 0.99)] * 1000)
        finally:
            for h in hosts:
                h.stop()

    def floor(con, files) -> float:
        start = time.perf_counter()
        got = con.sql(f"SELECT * FROM read_parquet({files!r})").to_arrow_table()
        assert got.num_rows == rows
        return time.perf_counter() - start

    with Postgres() as pg, S3Server() as s3:
        for run in range(args.runs):
            lite, shared = work / f"lite-{run}", work / f"shared-{run}"
            uri = pg.database(f"bench_{run}")
            with Host(lite / "warehouse") as host:
                client = Client(host.location)
                add("ingest local+SQLite rows/s", rows / ingest(client, batches, args.puts))
                single = scan(client, [host])
                add("scan local+SQLite s", single["seconds"])
                reference = single["checksum"]
            on_disk = [Host(shared / "warehouse", "--catalog", uri) for _ in range(3)]
            several("local+PostgreSQL", on_disk, reference)
            files = [str(p) for p in (shared / "warehouse" / "iceberg" / "bench").glob("lineitem-*/data/**/*.parquet")]
            add("scan floor (DuckDB in-process) s", floor(duckdb.connect(), files))

            url = f"{s3.bucket(f'floe-bench-{run}')}/wh"
            uri = pg.database(f"bench_s3_{run}")
            in_bucket = []
            for i in range(3):
                home, port = work / f"s3-{run}-host-{i}", free_port()
                in_bucket.append(Host(home, port=port, env=s3.env, serve_args=[
                    "serve", "-w", url, "--host-dir", str(home), "--catalog", uri, "-p", str(port)]))
            several("S3+PostgreSQL", in_bucket, reference)
            con = duckdb.connect()
            con.sql("LOAD httpfs")
            con.sql(s3.duckdb_secret())
            keys = [f"s3://floe-bench-{run}/{k}" for k in s3.keys(f"{url}/iceberg/bench/lineitem-") if k.endswith(".parquet")]
            add("scan floor S3 (DuckDB in-process, httpfs) s", floor(con, keys))
            print(f"run {run + 1} of {args.runs} done", flush=True)
    report = {"rows": rows}
    for key, values in results.items():
        if isinstance(values[0], list):
            report[key] = values
        else:
            report[key] = round(statistics.median(values), 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
