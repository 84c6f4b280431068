"""The host's SQL catalog as other engines open it (pyiceberg), for checking what floe wrote."""
from pathlib import Path

from pyiceberg.catalog.sql import SqlCatalog


def catalog(warehouse: Path) -> SqlCatalog:
    return SqlCatalog("floe", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}/iceberg")
