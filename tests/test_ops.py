"""What an operator sees: Prometheus metrics over HTTP and one JSON log record per RPC,
with the principal on its span."""
from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import pyarrow.flight as flight

import data
from floe_client import HOST_BIN, Client, Host, free_port

PASSWORD = "metrics password"


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_exactly_what_was_sent_and_read(tmp_path):
    metrics_port = free_port()
    with Host(tmp_path / "warehouse", "--metrics-address", f"127.0.0.1:{metrics_port}") as h:
        before = scrape(metrics_port)
        client = Client(h.location)
        client.put({"table": "ops.t", "mode": "overwrite"}, data.table(1234))
        assert client.get({"table": "ops.t"}).num_rows == 1234
        after = scrape(metrics_port)

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert delta('floe_rows_total{direction="in"}') == 1234
    assert delta('floe_rows_total{direction="out"}') == 1234
    assert delta('floe_requests_total{rpc="DoPut",code="OK"}') == 1
    assert delta('floe_requests_total{rpc="DoGet",code="OK"}') == 1
    assert delta('floe_bytes_total{direction="in"}') > 1234 * 8
    assert delta('floe_bytes_total{direction="out"}') > 1234 * 8
    assert delta('floe_request_duration_seconds_count{rpc="DoGet"}') == 1
    assert after["floe_active_uploads"] == 0
    for name in ("floe_commit_retries_total", "floe_compactions_total", "floe_plugin_calls_total",
                 "floe_plugin_timeouts_total", "floe_plugin_traps_total", "floe_plugin_memory_refusals_total"):
        assert name in after, name


def test_json_logs_carry_the_principal_on_each_rpc(tmp_path):
    wh = tmp_path / "warehouse"
    wh.mkdir()
    subprocess.run([str(HOST_BIN), "users", "add", "ana", "--grant", "admin", "--password-stdin", "-w", str(wh)],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    with Host(wh, "--log-format", "json") as h:
        client = Client(h.location, user="ana", password=PASSWORD)
        client.put({"table": "ops.j", "mode": "overwrite"}, data.table(10))
        client.action("drop_table", {"table": "ops.j"})
        try:
            Client(h.location).action("list_tables")
        except flight.FlightUnauthenticatedError:
            pass
    lines = [line for line in h.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    rpcs = [r for r in records if r.get("fields", {}).get("message") == "rpc done"]
    put = next(r for r in rpcs if r["span"]["rpc"] == "DoPut")
    assert put["span"]["principal"] == "ana" and put["span"]["table"] == "ops.j"
    assert put["fields"]["rows"] == 10 and put["fields"]["status"] == "Ok"
    dropped = next(r for r in rpcs if r["span"].get("action") == "drop_table")
    assert dropped["span"]["principal"] == "ana" and dropped["span"]["table"] == "ops.j"
    refused = [r for r in rpcs if r["fields"]["status"] == "Unauthenticated"]
    assert refused and "principal" not in refused[0]["span"]
    assert not any(PASSWORD in line for line in lines)
    assert not re.search(r"floe1\.[A-Za-z0-9_-]{20,}", "\n".join(lines)), "no token in the logs"
