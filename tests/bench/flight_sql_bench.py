"""Flight SQL against floe's JSON path and the in-process floor, one host, one run.

    .venv/bin/python tests/bench/flight_sql_bench.py --rows 6000000 --reads 300

One host on an SF 1-sized lineitem (`--rows`) and a 10,000-row one. Small reads (100
and 10,000 rows of a filtered query, of each table) are timed end to end as a client
sees them, p50/p99 of `--reads`:
- ADBC (adbc-driver-flightsql dbapi), the same query again on one cursor: the
  statement is prepared once, then each run is GetFlightInfo + DoGet;
- ADBC with a new parameter value each run (DoPut of the value + GetFlightInfo + DoGet);
- floe's JSON path, the same SQL (GetFlightInfo + DoGet) and the same read as a
  table read with a filter (GetFlightInfo + DoGet);
- the floor: DuckDB in-process running the SQL over the table's Parquet files.
Full scans (median of 5) in MB/s of Arrow data: ADBC, JSON, and the floor.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from floe_client import Client, Host  # noqa: E402
from limits_bench import load  # noqa: E402

SMALL = "SELECT * FROM bench.{table} WHERE l_orderkey < {n} LIMIT {limit}"


def timed(run, n: int) -> tuple[float, float]:
    for _ in range(min(20, n)):
        run()  # warm
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    return round(times[len(times) // 2] * 1000, 2), round(times[int(len(times) * 0.99)] * 1000, 2)


def scan(read) -> int:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        nbytes = read()
        runs.append(nbytes / (time.perf_counter() - start) / 1e6)
    return round(statistics.median(runs))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=6_000_000)
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args()
    wh = Path(tempfile.mkdtemp(prefix="floe-flight-sql-bench-")) / "warehouse"
    results = {}
    with Host(wh) as host:
        client = Client(host.location)
        load(client, "bench.lineitem", args.rows)
        load(client, "bench.small", 10_000)
        floor = duckdb.connect()
        for table in ("lineitem", "small"):
            files = [str(p) for p in (wh / "iceberg" / "bench").glob(f"{table}-*/**/*.parquet")]
            floor.sql(f"CREATE VIEW bench_{table} AS SELECT * FROM read_parquet({files!r})")
        conn = flightsql.connect(host.location, autocommit=True)
        cursor = conn.cursor()

        cases = [("lineitem", 100, 100), ("lineitem", 10_000, 40_000), ("small", 100, 1_000), ("small", 10_000, 10**9)]
        for table, rows, orderkey in cases:
            sql = SMALL.format(table=table, n=orderkey, limit=rows)

            def adbc(sql=sql, rows=rows):
                cursor.execute(sql)
                assert cursor.fetch_arrow_table().num_rows == rows

            def adbc_param(table=table, rows=rows, orderkey=orderkey, state={"k": 0}):
                state["k"] += 1
                # A new value each run; LIMIT keeps the row count fixed.
                cursor.execute(SMALL.format(table=table, n="?", limit=rows), (orderkey + state["k"] % 7,))
                assert cursor.fetch_arrow_table().num_rows == rows

            def json_sql(sql=sql, rows=rows):
                assert client.read({"sql": sql}).num_rows == rows

            def json_table(table=table, orderkey=orderkey, rows=rows):
                read = {"table": f"bench.{table}", "filter": f"l_orderkey < {orderkey}", "limit": rows}
                assert client.read(read).num_rows == rows

            def in_process(sql=sql, rows=rows):
                assert floor.sql(sql.replace("bench.", "bench_")).to_arrow_table().num_rows == rows

            for name, run in [("ADBC, same query", adbc), ("ADBC, new parameter value", adbc_param),
                              ("JSON, SQL", json_sql), ("JSON, table read", json_table),
                              ("floor (DuckDB in-process)", in_process)]:
                p50, p99 = timed(run, args.reads)
                case = f"{rows} rows of {'6M' if table == 'lineitem' else '10k'}-row table"
                results.setdefault(case, {})[name] = {"p50_ms": p50, "p99_ms": p99}
                print(case, name, p50, p99, flush=True)

        def adbc_scan():
            cursor.execute("SELECT * FROM bench.lineitem")
            return cursor.fetch_arrow_table().nbytes

        results["full scan MB/s"] = {
            "ADBC": scan(adbc_scan),
            "JSON": scan(lambda: client.read({"table": "bench.lineitem"}).nbytes),
            "floor (DuckDB in-process)": scan(lambda: floor.sql("SELECT * FROM bench_lineitem").to_arrow_table().nbytes),
        }
        cursor.close()
        conn.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
