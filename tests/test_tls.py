"""TLS and mutual TLS with certificates made here (nothing checked in that expires),
and the standard gRPC health service beside Flight."""
from __future__ import annotations

import subprocess

import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import data
from certs import make_all
from floe_client import Client, Host


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return make_all(tmp_path_factory.mktemp("certs"))


def tls_location(host: Host) -> str:
    return f"grpc+tls://127.0.0.1:{host.port}"


@pytest.fixture(scope="module")
def tls_host(tmp_path_factory, certs):
    wh = tmp_path_factory.mktemp("tls") / "warehouse"
    with Host(wh, "--tls-cert", str(certs / "server.crt"), "--tls-key", str(certs / "server.key"),
              probe=False) as h:
        yield h


def test_a_client_with_the_ca_reads_and_writes(tls_host, certs):
    client = Client(tls_location(tls_host), tls_root_certs=(certs / "ca.crt").read_bytes())
    client.put({"table": "tls.t", "mode": "overwrite"}, data.table(100))
    assert client.read({"table": "tls.t"}).num_rows == 100
    assert "grpc+tls://" in tls_host.log()


def test_plaintext_and_untrusting_clients_are_refused(tls_host, certs):
    with pytest.raises(flight.FlightUnavailableError):
        Client(f"grpc://127.0.0.1:{tls_host.port}").action("healthcheck")
    stranger = Client(tls_location(tls_host), tls_root_certs=(certs / "other-ca.crt").read_bytes())
    with pytest.raises(flight.FlightUnavailableError):
        stranger.action("healthcheck")


def test_mutual_tls_refuses_a_client_without_a_certificate(tmp_path, certs):
    wh = tmp_path / "warehouse"
    with Host(wh, "--tls-cert", str(certs / "server.crt"), "--tls-key", str(certs / "server.key"),
              "--tls-client-ca", str(certs / "ca.crt"), probe=False) as h:
        root = (certs / "ca.crt").read_bytes()
        without = Client(tls_location(h), tls_root_certs=root)
        with pytest.raises(flight.FlightUnavailableError):
            without.action("healthcheck")
        with_cert = flight.FlightClient(tls_location(h), tls_root_certs=root,
                                        cert_chain=(certs / "client.crt").read_bytes(),
                                        private_key=(certs / "client.key").read_bytes())
        (result,) = with_cert.do_action(flight.Action("healthcheck", b"{}"))
        assert b'"ok"' in result.body.to_pybytes()


def test_bad_tls_settings_stop_the_host_with_the_file_named(tmp_path, certs):
    from floe_client import HOST_BIN
    for args, says in [
        (["--tls-cert", str(certs / "server.crt")], "--tls-key"),
        (["--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(certs / "server.key")], "missing.crt"),
        (["--tls-cert", str(certs / "server.crt"), "--tls-key", str(certs / "client.key")], "TLS"),
    ]:
        result = subprocess.run([str(HOST_BIN), "serve", "-w", str(tmp_path / "wh"), "-p", "0", *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and says in result.stderr, (args, result.stderr)


def test_the_health_service_answers_serving(tmp_path):
    with Host(tmp_path / "warehouse") as h, grpc.insecure_channel(f"127.0.0.1:{h.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "arrow.flight.protocol.FlightService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as err:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
