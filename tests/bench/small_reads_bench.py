"""Small filtered reads, as a dashboard makes them: direct reads, DuckDB, no plan cache.

    .venv/bin/python tests/bench/small_reads_bench.py --rows 6000000 --reads 300 --runs 5

Two tables on one warehouse: 10,000 rows of the test data (7 columns) and an SF 1-sized
lineitem (`--rows`). For each: a 100-row filtered read, GetFlightInfo + DoGet, timed
end to end by a pyarrow client (p50 and p99 of `--reads`, GetFlightInfo and DoGet also
apart), against hosts as they come (the host reads the files itself: a direct read),
with `--direct-reads false` (DuckDB runs the read over the cached plan's files) and with
the plan cache off (`--plan-cache-tables 0`: every read plans from the catalog and reads
through DuckDB's iceberg_scan), beside the floor: DuckDB in-process running the same
query over the same Parquet files. Each figure is the median over `--runs` hosts.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import data  # noqa: E402
from floe_client import Client, Host  # noqa: E402
from limits_bench import load  # noqa: E402

READS = {
    "10k-row table": ({"table": "bench.small", "filter": "id >= 5000 AND id < 5100", "limit": 100},
                      "SELECT * FROM {t} WHERE id >= 5000 AND id < 5100 LIMIT 100"),
    "6M-row lineitem": ({"table": "bench.lineitem", "filter": "l_orderkey < 100", "limit": 100},
                        "SELECT * FROM {t} WHERE l_orderkey < 100 LIMIT 100"),
}


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.99)] * 1000


def through_host(client: Client, command: dict, n: int) -> dict:
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
    info_t, get_t, total = [], [], []
    for i in range(n + 20):
        start = time.perf_counter()
        info = client.flight.get_flight_info(descriptor, client.options)
        mid = time.perf_counter()
        table = client.flight.do_get(info.endpoints[0].ticket, client.options).read_all()
        end = time.perf_counter()
        assert table.num_rows == 100
        if i >= 20:  # warm-up
            info_t.append(mid - start)
            get_t.append(end - mid)
            total.append(end - start)
    p50, p99 = percentiles(total)
    return {"p50_ms": p50, "p99_ms": p99, "info_p50_ms": percentiles(info_t)[0], "get_p50_ms": percentiles(get_t)[0]}


def in_process(con, sql: str, n: int) -> dict:
    times = []
    for i in range(n + 20):
        start = time.perf_counter()
        assert con.sql(sql).to_arrow_table().num_rows == 100
        if i >= 20:
            times.append(time.perf_counter() - start)
    p50, p99 = percentiles(times)
    return {"p50_ms": p50, "p99_ms": p99}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=6_000_000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    wh = Path(tempfile.mkdtemp(prefix="floe-small-reads-")) / "warehouse"
    with Host(wh) as host:
        client = Client(host.location)
        client.put({"table": "bench.small", "mode": "overwrite"}, data.table(10_000))
        load(client, "bench.lineitem", args.rows)
    con = duckdb.connect()
    con.sql("SET parquet_metadata_cache = true")  # as the host has it: the floor at its best
    for table in ("small", "lineitem"):
        files = [str(p) for p in (wh / "iceberg" / "bench").glob(f"{table}-*/**/*.parquet")]
        con.sql(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({files!r})")
    runs: dict = {}
    for run in range(args.runs):
        for mode, extra in [("direct", []), ("DuckDB", ["--direct-reads", "false"]),
                            ("plan cache off", ["--plan-cache-tables", "0"])]:
            with Host(wh, *extra) as host:
                client = Client(host.location)
                for name, (command, _) in READS.items():
                    runs.setdefault(name, {}).setdefault(mode, []).append(through_host(client, command, args.reads))
        for name, (command, sql) in READS.items():
            table = command["table"].split(".")[1]
            runs[name].setdefault("floor (DuckDB in-process)", []).append(in_process(con, sql.format(t=table), args.reads))
        print(f"run {run + 1} of {args.runs} done", flush=True)
    report = {name: {mode: {k: round(statistics.median(r[k] for r in results), 2) for k in results[0]}
                     for mode, results in modes.items()} for name, modes in runs.items()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
