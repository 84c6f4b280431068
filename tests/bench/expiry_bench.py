"""A table fed by many small appends, with snapshot expiry on and off.

    .venv/bin/python tests/bench/expiry_bench.py --appends 10000 --reads 300

Two hosts, one warehouse each: one expires in the background after every commit
(`--snapshot-retain-last 10 --snapshot-retention 0s`, the steady state of a table older
than its retention), one never (`--background-maintenance false`). Each takes
`--appends` appends of 10 rows from one client; then the table's current metadata
file size, the files in its metadata directory, and the p50 of a 100-row filtered read
(GetFlightInfo + DoGet) are measured, beside the same read of a fresh table holding the
same rows in one snapshot.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data  # noqa: E402
from floe_client import Client, Host  # noqa: E402
from iceberg_catalog import catalog  # noqa: E402

READ = {"filter": "id >= 5000 AND id < 5100", "limit": 100}


def read_p50(client: Client, table: str, n: int) -> float:
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"table": table, **READ}))
    times = []
    for i in range(n + 20):
        start = time.perf_counter()
        info = client.flight.get_flight_info(descriptor, client.options)
        assert client.flight.do_get(info.endpoints[0].ticket, client.options).read_all().num_rows == 100
        if i >= 20:
            times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def measure(args, name: str, *host_args: str) -> dict:
    warehouse = Path(tempfile.mkdtemp(prefix=f"floe-expiry-{name}-")) / "warehouse"
    with Host(warehouse, *host_args) as host:
        client = Client(host.location)
        start = time.perf_counter()
        for i in range(args.appends):
            client.put({"table": "bench.fed"}, data.table(10, start=i * 10))
        appending = time.perf_counter() - start
        time.sleep(2)  # the last background expiry and compaction
        client.put({"table": "bench.fresh"}, client.read({"table": "bench.fed"}))
        table = catalog(warehouse).load_table("bench.fed")
        metadata_dir = Path(table.metadata_location.removeprefix("file://")).parent
        return {
            "appends_per_s": round(args.appends / appending, 1),
            "snapshots": len(table.metadata.snapshots),
            "metadata_file_bytes": Path(table.metadata_location.removeprefix("file://")).stat().st_size,
            "metadata_dir_files": sum(1 for _ in metadata_dir.iterdir()),
            "metadata_dir_bytes": sum(p.stat().st_size for p in metadata_dir.iterdir()),
            "read_p50_ms": read_p50(client, "bench.fed", args.reads),
            "fresh_table_read_p50_ms": read_p50(client, "bench.fresh", args.reads),
        }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args()
    report = {
        "expiry on": measure(args, "on", "--snapshot-retain-last", "10", "--snapshot-retention", "0s"),
        "expiry off": measure(args, "off", "--background-maintenance", "false"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
