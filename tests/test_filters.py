"""The `filter` field is parsed as exactly one SQL expression: attempts to escape it
(comments, dollar quotes, a second statement, a subquery) are refused with
InvalidArgument naming the filter, whether the read is planned (GetFlightInfo) or sent
straight as a ticket (DoGet), on both Iceberg read paths."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from floe_client import Client, Host

SECRET = "the other table's secret"

ESCAPES = {
    "line comment": "1=0 --'\n) UNION ALL SELECT secret FROM other.t WHERE (1=1 --'",
    "block comment": "1=0 /*'*/) UNION ALL SELECT secret FROM other.t WHERE (1=1 /*'*/",
    "dollar quotes": "1=0 AND $$'$$ = $$'$$) UNION ALL SELECT secret FROM other.t WHERE ($$'$$ = $$'$$",
    "semicolon": "1=0); SELECT secret FROM other.t; SELECT 1 WHERE (1=1",
    "subquery": "name IN (SELECT secret FROM other.t)",
}


@pytest.fixture(scope="module", params=["extension", "read-parquet"])
def client(request, tmp_path_factory):
    with Host(tmp_path_factory.mktemp("filters") / "warehouse", "--iceberg-reader", request.param) as host:
        client = Client(host.location)
        client.put({"table": "f.t", "mode": "overwrite"}, pa.table({"name": ["a", "b"], "n": [1, 2]}))
        client.put({"table": "other.t", "mode": "overwrite"}, pa.table({"secret": [SECRET]}))
        yield client


def read(client: Client, rpc: str, command: dict) -> pa.Table:
    if rpc == "GetFlightInfo":
        return client.read(command)
    return client.flight.do_get(flight.Ticket(json.dumps(command).encode())).read_all()


@pytest.mark.parametrize("rpc", ["GetFlightInfo", "DoGet"])
@pytest.mark.parametrize("escape", ESCAPES)
def test_escaping_filters_are_refused(client, rpc, escape):
    with pytest.raises(pa.ArrowInvalid) as err:
        read(client, rpc, {"table": "f.t", "filter": ESCAPES[escape]})
    message = str(err.value)
    assert "invalid filter" in message and ("1=0" in message or "name IN" in message), message
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("rpc", ["GetFlightInfo", "DoGet"])
def test_the_parsed_filter_is_what_runs(client, rpc):
    command = {"table": "f.t", "filter": "n BETWEEN 2 AND 3 -- a trailing comment is fine"}
    assert read(client, rpc, command).to_pydict() == {"name": ["b"], "n": [2]}
    command = {"table": "f.t", "filter": "name = 'a'' ) OR (1=1' OR n > 1"}
    assert read(client, rpc, command).to_pydict() == {"name": ["b"], "n": [2]}
