"""The dbt example's flow, shared by the quickstart and the tests: load the demo data
into a floe host over Flight, register the example WASM plugins, run dbt."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "jaffle_floe"

import demo_data  # noqa: E402
from floe_client import HOST_BIN, TARGET_DIR, Client  # noqa: E402

GUESTS = TARGET_DIR / "wasm32-wasip2" / "release"
FIRST_ORDERS, MORE_ORDERS, NEW_ORDERS = 120_000, 30_000, 5_000
# New orders arrive dated in the 10 days after the demo's: daily_revenue replaces those days.
NEW_DAYS = (20_000, 20_010)


def load_demo(client: Client) -> dict:
    """customers, orders (two uploads: two snapshots), payments. Returns the first orders snapshot."""
    client.put({"table": "raw.customers", "mode": "overwrite"}, demo_data.customers())
    first = client.put({"table": "raw.orders", "mode": "overwrite"}, demo_data.orders(0, FIRST_ORDERS))
    client.put({"table": "raw.orders", "mode": "append"}, demo_data.orders(FIRST_ORDERS, MORE_ORDERS))
    client.put({"table": "raw.payments", "mode": "overwrite"}, demo_data.payments(FIRST_ORDERS + MORE_ORDERS))
    return {"orders_first_snapshot": first["snapshot_id"]}


def load_new_orders(client: Client) -> dict:
    """Orders that arrive after a first dbt run; the vars for the next run."""
    client.put({"table": "raw.orders", "mode": "append"},
               demo_data.orders(FIRST_ORDERS + MORE_ORDERS, NEW_ORDERS, days=NEW_DAYS))
    first_new_day = datetime.date(1970, 1, 1) + datetime.timedelta(days=NEW_DAYS[0])
    return {"revenue_since": first_new_day.isoformat()}


def register_plugins(warehouse: Path, names=("select", "filter", "mask")) -> None:
    for name in names:
        subprocess.run(
            [str(HOST_BIN), "plugins", "add", name, str(GUESTS / f"{name}.wasm"), "-w", str(warehouse), "--force"],
            check=True, capture_output=True, text=True,
        )


def dbt(command: str, port: int, target: Path, dbt_vars: dict | None = None, *extra: str,
        check: bool = True, python: Path = Path(sys.executable),
        env: dict | None = None) -> subprocess.CompletedProcess:
    """`dbt <command>` on the example project against the host on `port`; `target`
    holds dbt's own files (its DuckDB scratch database, the Parquet it writes). dbt is
    the one installed beside `python`, which must have floe-client[dbt] installed: the
    plugin is found as an installed module, never through PYTHONPATH."""
    target.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "FLOE_PORT": str(port),
        "FLOE_DBT_TARGET": str(target),
        "DBT_TARGET_PATH": str(target),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
        **(env or {}),
    }
    args = [str(python.parent / "dbt"), command, "--project-dir", str(PROJECT),
            "--profiles-dir", str(PROJECT), "--log-path", str(target / "logs")]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars)]
    result = subprocess.run([*args, *extra], env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"dbt {command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
