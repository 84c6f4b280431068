"""floe quickstart: a fresh warehouse, a demo upload, a filtered read, WASM transforms.

Run through `examples/quickstart` (which builds the host and installs the clients).
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import data  # noqa: E402  (the deterministic demo generator)
from floe_client import HOST_BIN, TARGET_DIR, Client, Host  # noqa: E402

GUESTS = TARGET_DIR / "wasm32-wasip2" / "release"  # built by tests/setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="demo rows to upload (default 1,000,000)")
    parser.add_argument("--warehouse", type=Path, help="warehouse directory (default: a fresh temporary one)")
    args = parser.parse_args()

    warehouse = args.warehouse or Path(tempfile.mkdtemp(prefix="floe-quickstart-")) / "warehouse"
    with Host(warehouse) as host:
        client = Client(host.location)
        print(f"host up at {host.location}, warehouse {warehouse}")

        started = time.perf_counter()
        result = client.put({"table": "demo.orders", "mode": "overwrite"}, data.reader(args.rows, batch_rows=50_000))
        seconds = time.perf_counter() - started
        print(f"uploaded {result['rows']:,} rows into Iceberg table demo.orders "
              f"(snapshot {result['snapshot_id']}, {result['data_files']} data file(s)) in {seconds:.1f}s")

        query = {
            "table": "demo.orders",
            "columns": ["id", "name", "price", "day"],
            "filter": "price > 99000000 AND flag",
            "limit": 10,
        }
        print(f"\nread {query}:")
        print(render(client.read(query)))

        summary = client.read({"sql": "SELECT flag, count(*) AS orders, round(avg(amount), 2) AS avg_amount "
                                      "FROM demo.orders GROUP BY flag ORDER BY flag NULLS LAST"})
        print("\nSELECT flag, count(*), avg(amount) FROM demo.orders GROUP BY flag:")
        print(render(summary))
        print("\nsnapshots:", [(s["operation"], s["summary"]["total-records"])
                              for s in client.action("list_snapshots", {"table": "demo.orders"})])

        # WASM plugins, registered while the host runs (`host plugins add`).
        for name in ["select", "filter", "mask"]:
            subprocess.run([str(HOST_BIN), "plugins", "add", name, str(GUESTS / f"{name}.wasm"), "-w", str(warehouse)],
                           check=True, capture_output=True)
        chain = [
            {"plugin": "select", "args": {"columns": ["id", "name", "amount"]}},
            {"plugin": "filter", "args": {"predicate": "amount > 250 AND name IS NOT NULL"}},
            {"plugin": "mask", "args": {"columns": ["name"], "salt": "quickstart"}},
        ]
        print("\nread demo.orders through WASM plugins select -> filter -> mask (first 5 rows):")
        print(render(client.read({"table": "demo.orders", "transforms": chain}).slice(0, 5)))
    print("host stopped")


def render(table) -> str:
    """A plain text table."""
    rows = [[str(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(table.column_names)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(table.column_names, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
