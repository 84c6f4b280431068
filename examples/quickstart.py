"""floe quickstart: a fresh warehouse, demo data loaded over Flight, the example WASM
plugins registered, `dbt build` reading its sources from and writing its models to
Iceberg through the host, then a summary.

Run through `examples/quickstart` (which builds the host and guests and installs the clients).
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "dbt"))

import jaffle  # noqa: E402
from floe_client import Client, Host  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, help="where the warehouse and dbt's files go (default: a fresh temporary folder)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="floe-quickstart-"))

    with Host(workdir / "warehouse") as host:
        client = Client(host.location)
        print(f"host up at {host.location}, warehouse {host.warehouse}")
        started = time.perf_counter()
        dbt_vars = jaffle.load_demo(client)
        print(f"loaded raw.customers, raw.orders (2 snapshots), raw.payments in {time.perf_counter() - started:.1f}s")
        jaffle.register_plugins(host.warehouse)
        print("registered WASM plugins: " + ", ".join(p["name"] for p in client.action("list_plugins")))

        started = time.perf_counter()
        result = jaffle.dbt("build", host.port, workdir / "dbt", dbt_vars)
        print(f"\n$ dbt build  ({time.perf_counter() - started:.1f}s)")
        print("\n".join(line for line in result.stdout.splitlines() if " OK " in line or "Done." in line))

        # New orders arrive: the incremental models take in only what changed.
        dbt_vars |= jaffle.load_new_orders(client)
        print(f"\nloaded {jaffle.NEW_ORDERS:,} new orders dated from {dbt_vars['revenue_since']}")
        started = time.perf_counter()
        result = jaffle.dbt("build", host.port, workdir / "dbt", dbt_vars)
        print(f"$ dbt build --vars '{{revenue_since: {dbt_vars['revenue_since']}}}'  ({time.perf_counter() - started:.1f}s)")
        print("\n".join(line for line in result.stdout.splitlines() if "OK created" in line or "Done." in line))
        for model in ("stg_orders", "daily_revenue"):
            last = client.action("list_snapshots", {"table": f"main.{model}"})[-1]
            print(f"main.{model}: snapshot {last['snapshot_id']} ({last['operation']}), "
                  f"{last.get('summary', {}).get('added-records', '?')} rows added, "
                  f"{last.get('summary', {}).get('deleted-data-files', '?')} files replaced")

        print(f"\n{'table':<32} {'rows':>10} {'snapshots':>10}")
        for table in client.action("list_tables"):
            snapshots = client.action("list_snapshots", {"table": table["name"]})
            print(f"{table['name']:<32} {table['rows']:>10,} {len(snapshots):>10}")
    print("host stopped")


if __name__ == "__main__":
    main()
