"""Wall time of the example project's `dbt build` through floe vs the same project on
plain dbt-duckdb with local files.

    .venv/bin/python tests/bench/dbt_bench.py --runs 3

floe: examples/dbt/jaffle_floe against a fresh host with the demo data (sources read over
Flight, WASM transforms, models written to Iceberg). Plain: the same models and tests, the
demo data as local Parquet files (`external_location`), the WASM steps as SQL (sha256,
WHERE, a snapshot as `order_id <= 120000`), models as DuckDB tables. Each run starts from a
fresh dbt target folder; the timing is the `dbt build` process alone.
"""
import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "dbt"))
sys.path.insert(0, str(REPO / "tests"))

import demo_data  # noqa: E402
import jaffle  # noqa: E402
from floe_client import Client, Host  # noqa: E402

PLAIN_MODELS = {
    "stg_customers": "select customer_id, sha256('jaffle' || email) as email_hash, country, signup_date from {{ source('raw', 'customers') }}",
    "stg_orders": "select order_id, customer_id, order_date, amount_cents from {{ source('raw', 'orders') }} where status = 'completed'",
    "orders_first_load": "select order_id, customer_id, status, amount_cents from {{ source('raw', 'orders') }} where order_id <= 120000",
}


def plain_project(root: Path) -> Path:
    """The example project rewritten for plain dbt-duckdb over local Parquet files."""
    data = root / "data"
    data.mkdir(parents=True)
    pq.write_table(demo_data.customers(), data / "customers.parquet")
    pq.write_table(demo_data.orders(0, jaffle.FIRST_ORDERS + jaffle.MORE_ORDERS), data / "orders.parquet")
    pq.write_table(demo_data.payments(jaffle.FIRST_ORDERS + jaffle.MORE_ORDERS), data / "payments.parquet")
    project = root / "plain"
    models = project / "models"
    models.mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: jaffle_plain\nversion: '1.0'\nconfig-version: 2\nprofile: jaffle_plain\n"
        "models:\n  jaffle_plain:\n    +materialized: table\n"
    )
    (project / "profiles.yml").write_text(
        f"jaffle_plain:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {root / 'plain.duckdb'}\n      threads: 4\n"
    )
    (models / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: raw\n    meta:\n"
        f"      external_location: \"{data}/{{name}}.parquet\"\n"
        "    tables:\n      - name: customers\n      - name: orders\n      - name: payments\n"
    )
    for name, sql in PLAIN_MODELS.items():
        (models / f"{name}.sql").write_text(sql + "\n")
    for name in ["customer_revenue.sql", "payment_runs.sql", "schema.yml"]:
        shutil.copy(jaffle.PROJECT / "models" / name, models / name)
    return project


def timed(f) -> float:
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import subprocess

    with tempfile.TemporaryDirectory(prefix="floe-dbt-bench-") as tmp:
        tmp = Path(tmp)
        floe_runs = []
        for i in range(args.runs):
            with Host(tmp / f"warehouse{i}") as host:
                dbt_vars = jaffle.load_demo(Client(host.location))
                jaffle.register_plugins(host.warehouse)
                floe_runs.append(timed(lambda: jaffle.dbt("build", host.port, tmp / f"floe{i}", dbt_vars)))

        project = plain_project(tmp / "local")
        dbt = str(Path(sys.executable).parent / "dbt")
        plain_runs = []
        for i in range(args.runs):
            (tmp / "local" / "plain.duckdb").unlink(missing_ok=True)
            command = [dbt, "build", "--project-dir", str(project), "--profiles-dir", str(project),
                       "--target-path", str(tmp / f"plain{i}"), "--log-path", str(tmp / f"plain{i}")]
            env = {**__import__("os").environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
            plain_runs.append(timed(lambda: subprocess.run(command, check=True, capture_output=True, env=env)))

    report = {
        "floe_s": statistics.median(floe_runs), "floe_runs": [round(r, 2) for r in floe_runs],
        "plain_s": statistics.median(plain_runs), "plain_runs": [round(r, 2) for r in plain_runs],
    }
    report["ratio"] = report["floe_s"] / report["plain_s"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
