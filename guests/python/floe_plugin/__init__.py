"""Write a floe transform plugin in Python.

A plugin is a class bound once per request to an input schema and the client's JSON
arguments; `export` makes it the component's plugin, and `python -m floe_plugin.build`
turns the file into a WebAssembly component for `host plugins add`:

    from floe_plugin import Plugin, export

    class Passthrough(Plugin):
        name = "passthrough"
        description = "Returns every batch unchanged."
        stateless = True

        def __init__(self, schema, args):
            self.schema = schema

        def output_schema(self):
            return self.schema

        def process(self, batch):
            return batch

    export(Passthrough)

Subclass `RowFilter` instead to keep or drop rows: `keep` returns one bool per row
and the host applies it to the whole batch.
"""
from __future__ import annotations

from .arrow import Batch, Column, Field, Schema, Type

__all__ = ["Plugin", "RowFilter", "export", "InvalidArgs", "UnsupportedSchema", "Failed",
           "Batch", "Column", "Field", "Schema", "Type"]


class PluginError(Exception):
    """Raised by a plugin; the host reports it to the client with the plugin's name."""


class InvalidArgs(PluginError):
    """The arguments are wrong (the client gets InvalidArgument)."""


class UnsupportedSchema(PluginError):
    """The input schema cannot be handled: a missing column, an unsupported type."""


class Failed(PluginError):
    """Anything else (the client gets Internal)."""


class _Plugin:
    """What every plugin says of itself, and its binding."""

    name: str = ""
    version: str = "0.1.0"
    description: str = ""
    #: A JSON Schema for the arguments. Unknown keys are refused when it says
    #: "additionalProperties": false, and missing "required" ones always.
    args_schema: dict = {"type": "object"}
    #: True when nothing is kept from one batch to the next (and `finish` returns
    #: None): the host may then replace the instance between batches. It does before
    #: the Python runtime's memory nears the cap, so long streams keep running.
    stateless: bool = False

    def __init__(self, schema: Schema, args: dict):
        """Check `args` against the input `schema`: called once per request."""
        self.input_schema = schema


class Plugin(_Plugin):
    """Batches in, batches out. Override `__init__(schema, args)`, `output_schema`
    and `process`; `input_columns` and `finish` are optional."""

    def output_schema(self) -> Schema:
        raise NotImplementedError

    def input_columns(self) -> list[str] | None:
        """The input columns read, if not all: `process` then receives exactly these."""
        return None

    def process(self, batch: Batch) -> Batch | None:
        raise NotImplementedError

    def finish(self) -> Batch | None:
        return None


class RowFilter(_Plugin):
    """Says which rows to keep. Override `__init__(schema, args)` and `keep`;
    `columns` names what `keep` reads (only those cross into the plugin)."""

    def columns(self) -> list[str] | None:
        return None

    def keep(self, batch: Batch) -> list:
        """One value per row: truthy to keep it (None drops it)."""
        raise NotImplementedError


_exported: list = []


def export(cls):
    """Make `cls` (a Plugin or RowFilter subclass) this component's plugin."""
    if not (isinstance(cls, type) and issubclass(cls, (Plugin, RowFilter))):
        raise TypeError("export() takes a subclass of floe_plugin.Plugin or floe_plugin.RowFilter")
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a `name`")
    _exported[:] = [cls]
    return cls
