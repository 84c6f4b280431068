"""dbt end to end: the example project (examples/dbt/jaffle_floe) built with dbt-duckdb
and the floe plugin against a real host, checked through Flight, pyiceberg and the
DuckDB file dbt-duckdb leaves behind."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog.sql import SqlCatalog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "dbt"))

import demo_data  # noqa: E402
import jaffle  # noqa: E402
from certs import make_all, server_args  # noqa: E402
from floe_client import HOST_BIN, Client, Host, free_port  # noqa: E402

MODELS = ["stg_customers", "stg_orders", "customer_revenue", "payment_runs", "orders_first_load", "daily_revenue"]
# What `dbt build` of the example project reports passing: models, data tests and hooks.
BUILD_PASSES = "PASS=22"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A host with the demo data and plugins, and one `dbt build` done."""
    work = tmp_path_factory.mktemp("dbt")
    with Host(work / "warehouse") as host:
        client = Client(host.location)
        dbt_vars = jaffle.load_demo(client)
        jaffle.register_plugins(host.warehouse)
        result = jaffle.dbt("build", host.port, work / "dbt", dbt_vars)
        yield {"host": host, "client": client, "vars": dbt_vars, "target": work / "dbt", "build": result}


def read(client: Client, table: str, key: str) -> pa.Table:
    return client.read({"table": table}).sort_by(key)


def orders() -> pa.Table:
    return pa.concat_tables([demo_data.orders(0, jaffle.FIRST_ORDERS), demo_data.orders(jaffle.FIRST_ORDERS, jaffle.MORE_ORDERS)])


def completed_orders() -> pa.Table:
    all_orders = orders()
    return all_orders.filter(pc.equal(all_orders["status"], "completed")).select(
        ["order_id", "customer_id", "order_date", "amount_cents"]
    )


def revenue_by_day(completed: pa.Table) -> pa.Table:
    sums = completed.group_by("order_date").aggregate([("order_id", "count"), ("amount_cents", "sum")])
    return pa.table({"order_date": sums["order_date"], "orders": sums["order_id_count"],
                     "revenue_cents": sums["amount_cents_sum"]}).sort_by("order_date")


def test_dbt_build_passes_models_and_tests(built):
    out = built["build"].stdout
    assert "ERROR=0" in out and BUILD_PASSES in out, out
    tables = {t["name"]: t for t in built["client"].action("list_tables")}
    for model in MODELS:
        assert tables[f"main.{model}"]["target"] == "iceberg"


def test_models_hold_the_expected_rows(built):
    client = built["client"]
    customers = demo_data.customers()

    stg_customers = read(client, "main.stg_customers", "customer_id")
    assert stg_customers.column_names == ["customer_id", "email_hash", "country", "signup_date"]
    expected_hash = [hashlib.sha256(("jaffle" + e).encode()).hexdigest() for e in customers["email"].to_pylist()]
    assert stg_customers["email_hash"].to_pylist() == expected_hash
    assert stg_customers["country"].equals(customers["country"])

    stg_orders = read(client, "main.stg_orders", "order_id")
    assert stg_orders.equals(completed_orders().sort_by("order_id"))

    revenue = read(client, "main.customer_revenue", "customer_id")
    sums = completed_orders().group_by("customer_id").aggregate([("order_id", "count"), ("amount_cents", "sum")])
    by_customer = {r["customer_id"]: (r["order_id_count"], r["amount_cents_sum"]) for r in sums.to_pylist()}
    assert revenue.num_rows == customers.num_rows
    for row in revenue.to_pylist():
        assert (row["orders"], row["revenue_cents"]) == by_customer.get(row["customer_id"], (0, 0)), row

    runs = read(client, "main.payment_runs", "method")
    payments = demo_data.payments(jaffle.FIRST_ORDERS + jaffle.MORE_ORDERS)
    expected = payments.group_by("method").aggregate([("payment_id", "count"), ("amount_cents", "sum")])
    expected = {r["method"]: (r["payment_id_count"], r["amount_cents_sum"]) for r in expected.to_pylist()}
    assert {r["method"]: (r["payments"], r["amount_cents"]) for r in runs.to_pylist()} == expected

    daily = read(client, "main.daily_revenue", "order_date")
    assert daily.equals(revenue_by_day(completed_orders()).cast(daily.schema))
    tables = {t["name"]: t for t in client.action("list_tables")}
    assert tables["main.daily_revenue"]["partition_by"] == ["day(order_date)"]

    first_load = read(client, "main.orders_first_load", "order_id")
    assert first_load.num_rows == jaffle.FIRST_ORDERS
    assert first_load["order_id"].to_pylist() == list(range(1, jaffle.FIRST_ORDERS + 1))


def test_pyiceberg_reads_the_same_models(built):
    warehouse = built["host"].warehouse
    catalog = SqlCatalog("floe", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}")
    keys = {"stg_customers": "customer_id", "stg_orders": "order_id", "customer_revenue": "customer_id",
            "payment_runs": "method", "orders_first_load": "order_id", "daily_revenue": "order_date"}
    for model, key in keys.items():
        via_iceberg = catalog.load_table(f"main.{model}").scan().to_arrow().sort_by(key)
        via_flight = read(built["client"], f"main.{model}", key)
        assert via_iceberg.num_rows == via_flight.num_rows > 0
        assert via_iceberg.to_pylist() == via_flight.to_pylist(), model


def test_sources_load_only_what_their_config_asks_for(built):
    # dbt-duckdb materializes each source in its own DuckDB file: look at what arrived.
    with duckdb.connect(str(built["target"] / "jaffle_floe.duckdb"), read_only=True) as con:
        completed = con.sql("SELECT * FROM raw.orders_completed").arrow().read_all()
        assert completed.column_names == ["order_id", "customer_id", "order_date", "amount_cents"]
        assert completed.sort_by("order_id").equals(completed_orders().sort_by("order_id"))

        first = con.sql("SELECT count(*), max(order_id) FROM raw.orders_first_load").fetchone()
        assert first == (jaffle.FIRST_ORDERS, jaffle.FIRST_ORDERS)  # the table has 150,000 now

        masked = con.sql("SELECT * FROM raw.customers_masked ORDER BY customer_id LIMIT 1").arrow().read_all()
        assert masked.column_names == ["customer_id", "email", "country", "signup_date"]
        assert masked["email"][0].as_py() == hashlib.sha256(b"jaffle" + b"customer1@example.com").hexdigest()


def test_running_twice_overwrites_once_and_appends_once(built):
    client, host = built["client"], built["host"]
    before = {m: client.action("list_snapshots", {"table": f"main.{m}"}) for m in MODELS}
    contents = {m: client.read({"table": f"main.{m}"}) for m in MODELS if m != "payment_runs"}
    jaffle.dbt("run", host.port, built["target"], built["vars"])
    for model in MODELS:
        after = client.action("list_snapshots", {"table": f"main.{model}"})
        assert len(after) == len(before[model]) + 1, model
        assert after[-1]["operation"] == ("append" if model == "payment_runs" else "overwrite"), model
    for model, content in contents.items():
        key = content.column_names[0]
        assert client.read({"table": f"main.{model}"}).sort_by(key).equals(content.sort_by(key)), model
    runs = client.read({"table": "main.payment_runs"})
    assert runs.num_rows == 8 and len(set(runs["run_id"].to_pylist())) == 2


def test_a_retried_run_appends_once(built):
    """The orchestrator's run id (FLOE_RUN_ID) makes a retried task the same run: the
    append model's upload carries the same idempotency key and commits nothing."""
    client, host = built["client"], built["host"]
    retry = {"FLOE_RUN_ID": "airflow-run-42"}
    jaffle.dbt("run", host.port, built["target"], built["vars"], "--select", "payment_runs", env=retry)
    snapshots = client.action("list_snapshots", {"table": "main.payment_runs"})
    rows = client.rows("main.payment_runs")
    second = jaffle.dbt("run", host.port, built["target"], built["vars"], "--select", "payment_runs", env=retry)
    assert "already written by this run" in second.stdout
    assert client.action("list_snapshots", {"table": "main.payment_runs"}) == snapshots
    assert client.rows("main.payment_runs") == rows
    # Without it, each dbt invocation is a run of its own.
    jaffle.dbt("run", host.port, built["target"], built["vars"], "--select", "payment_runs")
    assert client.rows("main.payment_runs") == rows + 4


def test_incremental_runs_equal_a_full_rebuild_and_a_retry_changes_nothing(tmp_path):
    with Host(tmp_path / "warehouse") as host:
        client = Client(host.location)
        dbt_vars = jaffle.load_demo(client)
        jaffle.register_plugins(host.warehouse)
        jaffle.dbt("run", host.port, tmp_path / "dbt", dbt_vars)
        daily_files = len(client.action("list_snapshots", {"table": "main.daily_revenue"}))
        dbt_vars |= jaffle.load_new_orders(client)
        jaffle.dbt("run", host.port, tmp_path / "dbt", dbt_vars)
        new = demo_data.orders(jaffle.FIRST_ORDERS + jaffle.MORE_ORDERS, jaffle.NEW_ORDERS, days=jaffle.NEW_DAYS)
        completed = pa.concat_tables([completed_orders(), new.filter(pc.equal(new["status"], "completed")).select(
            ["order_id", "customer_id", "order_date", "amount_cents"])])
        # The same tables a full rebuild over all the orders gives.
        stg_orders = read(client, "main.stg_orders", "order_id")
        assert stg_orders.equals(completed.sort_by("order_id"))
        daily = read(client, "main.daily_revenue", "order_date")
        assert daily.equals(revenue_by_day(completed).cast(daily.schema))
        # Each took in only what changed: the new orders merged, the new days added.
        for model, added in [("stg_orders", "completed new orders"), ("daily_revenue", "new days")]:
            last = client.action("list_snapshots", {"table": f"main.{model}"})[-1]
            assert last["operation"] == "overwrite" and last["summary"]["deleted-data-files"] == "0", (model, last)
        assert len(client.action("list_snapshots", {"table": "main.daily_revenue"})) == daily_files + 1
        # A retried run: nothing changes.
        jaffle.dbt("run", host.port, tmp_path / "dbt", dbt_vars)
        assert read(client, "main.stg_orders", "order_id").equals(stg_orders)
        assert read(client, "main.daily_revenue", "order_date").equals(daily)


def test_a_host_that_is_down_fails_dbt_fast_with_its_address(tmp_path):
    port = free_port()
    started = time.monotonic()
    result = jaffle.dbt("run", port, tmp_path / "dbt", {"orders_first_snapshot": 1}, "--select", "stg_orders", check=False)
    assert result.returncode != 0
    assert f"floe host unreachable at grpc://127.0.0.1:{port}" in result.stdout, result.stdout
    assert time.monotonic() - started < 60


def test_plugin_errors_name_the_problem(built):
    from dbt.adapters.duckdb.utils import SourceConfig
    import floe_dbt

    plugin = floe_dbt.Plugin("floe", {"host": "127.0.0.1", "port": built["host"].port})
    missing = SourceConfig(name="raw", identifier="nope", schema="raw", database=None, meta={}, tags=[])
    with pytest.raises(floe_dbt.FloeError, match="raw.nope.*not found"):
        plugin.load(missing)
    bad = SourceConfig(name="raw", identifier="orders", schema="raw", database=None, meta={"limit": "ten"}, tags=[])
    with pytest.raises(floe_dbt.FloeError, match="'limit' must be an integer"):
        plugin.load(bad)
    with pytest.raises(floe_dbt.FloeError, match="'mode' must be one of overwrite, append, merge, replace_where, not 'upsert'"):
        floe_dbt.choice({"mode": "upsert"}, "mode", floe_dbt.MODES)
    with pytest.raises(floe_dbt.FloeError, match="unknown config key"):
        floe_dbt.Plugin("floe", {"hots": "x"})
    reader = plugin.load(SourceConfig(name="raw", identifier="orders", schema="raw", database=None, meta={"limit": 5}, tags=[]))
    assert isinstance(reader, pa.RecordBatchReader) and reader.read_all().num_rows == 5


def test_a_fresh_virtualenv_with_only_the_package_builds_the_project(tmp_path):
    """`pip install './clients/python[dbt]'` is all a dbt user needs (no PYTHONPATH)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    package = Path(__file__).resolve().parent.parent / "clients" / "python"
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    f"{package}[dbt]"], check=True, capture_output=True, text=True)
    with Host(tmp_path / "warehouse") as host:
        dbt_vars = jaffle.load_demo(Client(host.location))
        jaffle.register_plugins(host.warehouse)
        result = jaffle.dbt("build", host.port, tmp_path / "dbt", dbt_vars, python=venv / "bin" / "python")
        assert "ERROR=0" in result.stdout and BUILD_PASSES in result.stdout, result.stdout
        assert Client(host.location).rows("main.customer_revenue") == demo_data.customers().num_rows


def test_dbt_runs_against_a_host_with_tls_and_a_service_token(tmp_path):
    certs = make_all(tmp_path / "certs")
    wh = tmp_path / "warehouse"
    wh.mkdir()
    token = subprocess.run([str(HOST_BIN), "tokens", "create", "dbt", "--grant", "write:main,raw",
                            "-w", str(wh)], check=True, capture_output=True, text=True).stdout.strip()
    with Host(wh, *server_args(certs), probe=False) as host:
        location = f"grpc+tls://127.0.0.1:{host.port}"
        client = Client(location, token=token, tls_root_certs=(certs / "ca.crt").read_bytes())
        dbt_vars = jaffle.load_demo(client)
        jaffle.register_plugins(host.warehouse)
        env = {"FLOE_URI": location, "FLOE_TOKEN": token, "FLOE_TLS_ROOT_CERTS": str(certs / "ca.crt")}
        result = jaffle.dbt("build", host.port, tmp_path / "dbt", dbt_vars, env=env)
        assert "ERROR=0" in result.stdout and BUILD_PASSES in result.stdout, result.stdout
        assert "floe: customer_revenue -> main.customer_revenue:" in result.stdout and "snapshot" in result.stdout
        assert client.rows("main.customer_revenue") == demo_data.customers().num_rows
        wrong = jaffle.dbt("run", host.port, tmp_path / "dbt-wrong", dbt_vars, "--select", "stg_orders",
                           check=False, env={**env, "FLOE_TOKEN": "floe1.not.mine"})
        assert wrong.returncode != 0
        assert f"floe host at {location} refused the credentials: invalid bearer token" in wrong.stdout, wrong.stdout


def test_a_source_read_may_stream_longer_than_the_timeout(built):
    """`timeout` bounds connecting and single calls, not a long read."""
    from dbt.adapters.duckdb.utils import SourceConfig
    import floe_dbt

    client = built["client"]
    client.put({"table": "raw.big", "mode": "overwrite"}, data_table(1_500_000))
    plugin = floe_dbt.Plugin("floe", {"host": "127.0.0.1", "port": built["host"].port, "timeout": 2})
    reader = plugin.load(SourceConfig(name="raw", identifier="big", schema="raw", database=None, meta={}, tags=[]))
    rows = reader.read_next_batch().num_rows
    time.sleep(3)  # the host cannot finish sending meanwhile: HTTP/2 flow control waits for us
    for batch in reader:
        rows += batch.num_rows
    assert rows == 1_500_000


def data_table(rows: int) -> pa.Table:
    import data
    return data.table(rows, batch_rows=100_000)
