"""The WIT side (floe:plugin/transform, through componentize-py's bindings): turns
the exported class's answers into the contract's bytes and errors. Imported only
inside the component, by the modules `build` generates."""
from __future__ import annotations

import json
import traceback

from componentize_py_types import Err
from wit_world.exports import transform as wit

from . import Failed, InvalidArgs, PluginError, RowFilter, UnsupportedSchema, _exported, arrow

_MASK_SCHEMA = arrow.Schema((arrow.Field("keep", arrow.bool_(), True),))


def _plugin_class():
    if not _exported:
        raise RuntimeError("the plugin module did not call floe_plugin.export(...)")
    return _exported[0]


def _error(err: BaseException):
    if isinstance(err, InvalidArgs):
        return Err(wit.Error_InvalidArgs(str(err)))
    if isinstance(err, (UnsupportedSchema, arrow.ArrowError)):
        return Err(wit.Error_UnsupportedSchema(str(err)))
    if isinstance(err, PluginError):
        return Err(wit.Error_Failed(str(err)))
    where = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
    at = f" at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else ""
    return Err(wit.Error_Failed(f"{type(err).__name__}: {err}{at}"))


def _args(text: str, schema: dict) -> dict:
    try:
        args = json.loads(text or "{}")
    except ValueError as err:
        raise InvalidArgs(f"the arguments are not JSON: {err}") from None
    if not isinstance(args, dict):
        raise InvalidArgs("the arguments must be a JSON object")
    known = schema.get("properties", {})
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise InvalidArgs(f"unknown argument {unknown[0]!r} (known: {', '.join(known) or 'none'})")
    missing = [k for k in schema.get("required", []) if k not in args]
    if missing:
        raise InvalidArgs(f"missing argument {missing[0]!r}")
    return args


class Transform:
    def describe(self) -> wit.Description:
        cls = _plugin_class()
        kind = wit.Kind.FILTER if issubclass(cls, RowFilter) else wit.Kind.TRANSFORM
        return wit.Description(cls.name, cls.version, kind, cls.description, json.dumps(cls.args_schema),
                               bool(cls.stateless))


class Instance:
    """One bound plugin: the user's object and what the contract asks of it."""

    @classmethod
    def bind(cls, input_schema: bytes, args: str) -> "Instance":
        try:
            schema = arrow.decode_schema(input_schema)
            plugin_class = _plugin_class()
            plugin = plugin_class(schema, _args(args, plugin_class.args_schema))
            self = cls()
            self.plugin, self.filter = plugin, isinstance(plugin, RowFilter)
            if self.filter:
                columns = plugin.columns()
                self.output, self.columns = schema, columns
            else:
                self.output, self.columns = plugin.output_schema(), plugin.input_columns()
            self.output_bytes = arrow.encode_schema(self.output)
            return self
        except Exception as err:
            raise _error(err) from None

    def output_schema(self) -> bytes:
        return self.output_bytes

    def input_columns(self):
        return None if self.columns is None else list(self.columns)

    def process(self, batch: bytes):
        try:
            batch = arrow.decode_batch(batch)
            if self.filter:
                keep = self.plugin.keep(batch)
                if len(keep) != batch.num_rows:
                    raise Failed(f"keep() returned {len(keep)} values for {batch.num_rows} rows")
                mask = arrow.Column.from_list(_MASK_SCHEMA.fields[0], [bool(k) for k in keep])
                return arrow.encode_batch(arrow.Batch(_MASK_SCHEMA, [mask], batch.num_rows))
            out = self.plugin.process(batch)
            return None if out is None else arrow.encode_batch(out)
        except Exception as err:
            raise _error(err) from None

    def finish(self):
        try:
            out = None if self.filter else self.plugin.finish()
            return None if out is None else arrow.encode_batch(out)
        except Exception as err:
            raise _error(err) from None
