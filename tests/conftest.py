import sys
from pathlib import Path

import pytest

# The tests' own helpers (data.py); floe_client comes from the installed package.
sys.path.insert(0, str(Path(__file__).parent))

from floe_client import HOST_BIN, Client, Host  # noqa: E402


def pytest_sessionstart(session):
    if not HOST_BIN.exists():
        pytest.exit(f"{HOST_BIN} is missing: run tests/setup (or tests/run) first", returncode=2)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """One real host per test module, on a fresh warehouse, using the iceberg extension."""
    with Host(tmp_path_factory.mktemp("wh") / "warehouse", "--iceberg-reader", "extension") as h:
        yield h


@pytest.fixture(scope="module")
def client(host) -> Client:
    return Client(host.location)
