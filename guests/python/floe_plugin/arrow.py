"""A small Arrow for plugins: schemas, columns and batches, read from and written to
the IPC stream bytes the host exchanges with a guest (no native code, so it runs
inside a component).

A column is kept as the bytes it arrived in until a plugin asks for its values, so
selecting, reordering or renaming columns never decodes them. Values decode to and
encode from Python lists for int, float, bool, utf8/large utf8, binary, date,
timestamp and decimal columns, with None for nulls.
"""
from __future__ import annotations

import datetime as dt
import decimal
import struct
from dataclasses import dataclass, field, replace

from . import flatbuf

# Type ids of the Arrow flatbuffer schema (Schema.fbs `Type` union).
NULL, INT, FLOAT, BINARY, UTF8, BOOL, DECIMAL, DATE, TIME, TIMESTAMP, INTERVAL = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
LIST, STRUCT, FIXED_BINARY, FIXED_LIST, MAP, DURATION, LARGE_BINARY, LARGE_UTF8, LARGE_LIST = (
    12, 13, 15, 16, 17, 18, 19, 20, 21)

# Each type's table fields: (slot, struct format or "str", name, default).
_PARAMS = {
    INT: [(0, "i", "bit_width", 0), (1, "?", "signed", False)],
    FLOAT: [(0, "h", "precision", 0)],
    DECIMAL: [(0, "i", "precision", 0), (1, "i", "scale", 0), (2, "i", "bit_width", 128)],
    DATE: [(0, "h", "unit", 1)],
    TIME: [(0, "h", "unit", 1), (1, "i", "bit_width", 32)],
    TIMESTAMP: [(0, "h", "unit", 0), (1, "str", "timezone", None)],
    INTERVAL: [(0, "h", "unit", 0)],
    FIXED_BINARY: [(0, "i", "byte_width", 0)],
    FIXED_LIST: [(0, "i", "list_size", 0)],
    MAP: [(0, "?", "keys_sorted", False)],
    DURATION: [(0, "h", "unit", 1)],
}
# How many buffers a column of each type has in IPC (its children add theirs).
_BUFFERS = {NULL: 0, BINARY: 3, UTF8: 3, LARGE_BINARY: 3, LARGE_UTF8: 3, LIST: 2, LARGE_LIST: 2, MAP: 2,
            FIXED_LIST: 1, STRUCT: 1}
_FIXED = {INT, FLOAT, BOOL, DECIMAL, DATE, TIME, TIMESTAMP, INTERVAL, FIXED_BINARY, DURATION}
_NAMES = {NULL: "null", INT: "int", FLOAT: "float", BINARY: "binary", UTF8: "utf8", BOOL: "bool",
          DECIMAL: "decimal", DATE: "date", TIME: "time", TIMESTAMP: "timestamp", INTERVAL: "interval",
          LIST: "list", STRUCT: "struct", FIXED_BINARY: "fixed_size_binary", FIXED_LIST: "fixed_size_list",
          MAP: "map", DURATION: "duration", LARGE_BINARY: "large_binary", LARGE_UTF8: "large_utf8",
          LARGE_LIST: "large_list"}
_TIME_UNITS = {0: 1, 1: 1_000, 2: 1_000_000, 3: 1_000_000_000}  # per second
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DAY = dt.date(1970, 1, 1).toordinal()


class ArrowError(Exception):
    """Bytes that are not Arrow IPC this module understands."""


@dataclass(frozen=True)
class Type:
    id: int
    params: tuple = ()  # (name, value) pairs, as in _PARAMS

    def get(self, name: str):
        return dict(self.params).get(name)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params if v is not None)
        return f"{_NAMES.get(self.id, f'type {self.id}')}({args})" if args else _NAMES.get(self.id, str(self.id))


def _type(id: int, **params) -> Type:
    return Type(id, tuple((name, params.get(name, default)) for _, _, name, default in _PARAMS.get(id, [])))


def int64() -> Type: return _type(INT, bit_width=64, signed=True)
def int32() -> Type: return _type(INT, bit_width=32, signed=True)
def float64() -> Type: return _type(FLOAT, precision=2)
def bool_() -> Type: return _type(BOOL)
def utf8() -> Type: return _type(UTF8)
def date32() -> Type: return _type(DATE, unit=0)


@dataclass(frozen=True)
class Field:
    name: str
    type: Type
    nullable: bool = True
    children: tuple = ()
    metadata: tuple = ()  # (key, value) pairs

    def with_name(self, name: str) -> "Field":
        return replace(self, name=name)


@dataclass(frozen=True)
class Schema:
    fields: tuple
    metadata: tuple = ()

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def index(self, name: str) -> int:
        for i, f in enumerate(self.fields):
            if f.name == name:
                return i
        raise KeyError(name)

    def field(self, name: str) -> Field:
        return self.fields[self.index(name)]


@dataclass
class Column:
    """One column of a batch: its field, the IPC nodes and buffers of it and its
    children (kept as they arrived), and the decoded values once asked for."""

    field: Field
    nodes: list  # [(length, null_count)]
    buffers: list  # [bytes-like], in IPC order
    _values: list | None = None

    def __len__(self) -> int:
        return self.nodes[0][0]

    @property
    def null_count(self) -> int:
        return self.nodes[0][1]

    def renamed(self, name: str) -> "Column":
        return Column(self.field.with_name(name), self.nodes, self.buffers, self._values)

    def to_list(self) -> list:
        if self._values is None:
            self._values = _decode(self.field.type, len(self), self.null_count, self.buffers)
        return self._values

    @classmethod
    def from_list(cls, field: Field, values: list) -> "Column":
        nodes, buffers = _encode(field.type, values)
        return cls(field, nodes, buffers, list(values))


@dataclass
class Batch:
    schema: Schema
    columns: list
    num_rows: int = field(default=-1)

    def __post_init__(self):
        if self.num_rows < 0:
            self.num_rows = len(self.columns[0]) if self.columns else 0

    def column(self, key: str | int) -> Column:
        return self.columns[key if isinstance(key, int) else self.schema.index(key)]

    @classmethod
    def from_columns(cls, columns: list, metadata: tuple = ()) -> "Batch":
        return cls(Schema(tuple(c.field for c in columns), metadata), list(columns))


# --- IPC stream messages ------------------------------------------------------------

_CONTINUATION = b"\xff\xff\xff\xff"
_SCHEMA, _RECORD_BATCH = 1, 3


def _messages(data):
    """(header table, header type, body) for each message of an IPC stream."""
    view, pos = memoryview(data), 0
    while pos + 8 <= len(view):
        if bytes(view[pos:pos + 4]) == _CONTINUATION:
            pos += 4
        (size,) = struct.unpack_from("<i", view, pos)
        pos += 4
        if size == 0:
            return
        message = flatbuf.Table.root(view[pos:pos + size])
        pos += size
        body_len = message.scalar(3, "q")
        body = view[pos:pos + body_len]
        pos += body_len
        header = message.table(2)
        if header is None:
            raise ArrowError("an IPC message without a header")
        yield header, message.scalar(1, "B"), body


def decode_schema(data) -> Schema:
    for header, kind, _ in _messages(data):
        if kind == _SCHEMA:
            return _read_schema(header)
    raise ArrowError("no schema message in the IPC stream")


def decode_batch(data) -> Batch:
    """The one record batch of an IPC stream (schema message, batch, end)."""
    schema = None
    for header, kind, body in _messages(data):
        if kind == _SCHEMA:
            schema = _read_schema(header)
        elif kind == _RECORD_BATCH:
            if schema is None:
                raise ArrowError("a record batch before its schema")
            return _read_batch(schema, header, body)
        else:
            raise ArrowError(f"unsupported IPC message type {kind} (dictionaries are not supported)")
    raise ArrowError("no record batch in the IPC stream")


def encode_schema(schema: Schema) -> bytes:
    return _message(_SCHEMA, _schema_table(schema), b"") + _CONTINUATION + b"\0\0\0\0"


def encode_batch(batch: Batch) -> bytes:
    body, nodes, buffers = bytearray(), [], []
    for column in batch.columns:
        nodes.extend(column.nodes)
        for buf in column.buffers:
            buffers.append((len(body), len(buf)))
            body += buf
            body += b"\0" * (-len(body) % 8)
    header = {0: ("q", batch.num_rows), 1: (("structs", "qq"), nodes), 2: (("structs", "qq"), buffers)}
    return b"".join([
        _message(_SCHEMA, _schema_table(batch.schema), b""),
        _message(_RECORD_BATCH, header, body),
        _CONTINUATION, b"\0\0\0\0",
    ])


def _message(kind: int, header: dict, body) -> bytes:
    meta = flatbuf.build({0: ("h", 4), 1: ("B", kind), 2: ("table", header), 3: ("q", len(body))})
    return _CONTINUATION + struct.pack("<i", len(meta)) + meta + bytes(body)


def _schema_table(schema: Schema) -> dict:
    return {0: ("h", 0), 1: ("tables", [_field_table(f) for f in schema.fields]),
            2: ("tables", _metadata_tables(schema.metadata) or None)}


def _field_table(f: Field) -> dict:
    params = dict(f.type.params)
    type_fields = {slot: (fmt, params.get(name)) for slot, fmt, name, _ in _PARAMS.get(f.type.id, [])}
    return {0: ("str", f.name), 1: ("?", f.nullable), 2: ("B", f.type.id), 3: ("table", type_fields),
            5: ("tables", [_field_table(c) for c in f.children]),
            6: ("tables", _metadata_tables(f.metadata) or None)}


def _metadata_tables(pairs) -> list:
    return [{0: ("str", k), 1: ("str", v)} for k, v in pairs]


def _read_schema(header: flatbuf.Table) -> Schema:
    return Schema(tuple(_read_field(t) for t in header.tables(1)), _read_metadata(header, 2))


def _read_field(t: flatbuf.Table) -> Field:
    if t.table(4) is not None:
        raise ArrowError(f"column {t.string(0)!r} is dictionary-encoded, which this SDK does not read")
    type_id = t.scalar(2, "B")
    table = t.table(3)
    params = tuple(
        (name, (table.string(slot) if fmt == "str" else table.scalar(slot, fmt, default)) if table else default)
        for slot, fmt, name, default in _PARAMS.get(type_id, []))
    return Field(t.string(0) or "", Type(type_id, params), bool(t.scalar(1, "?", False)),
                 tuple(_read_field(c) for c in t.tables(5)), _read_metadata(t, 6))


def _read_metadata(t: flatbuf.Table, slot: int) -> tuple:
    return tuple((kv.string(0), kv.string(1)) for kv in t.tables(slot))


def _read_batch(schema: Schema, header: flatbuf.Table, body) -> Batch:
    if header.table(3) is not None:
        raise ArrowError("compressed IPC batches are not supported")
    nodes = header.structs(1, "qq")
    buffers = [body[off:off + size] for off, size in header.structs(2, "qq")]
    columns, n, b = [], 0, 0
    for f in schema.fields:
        n_nodes, n_buffers = _shape(f)
        columns.append(Column(f, nodes[n:n + n_nodes], buffers[b:b + n_buffers]))
        n, b = n + n_nodes, b + n_buffers
    return Batch(schema, columns, header.scalar(0, "q"))


def _shape(f: Field) -> tuple[int, int]:
    """The nodes and buffers a column of `f` spans."""
    if f.type.id in _FIXED:
        nodes, buffers = 1, 2
    elif f.type.id in _BUFFERS:
        nodes, buffers = 1, _BUFFERS[f.type.id]
    else:
        raise ArrowError(f"column {f.name!r} has type {f.type}, which this SDK does not support")
    for child in f.children:
        cn, cb = _shape(child)
        nodes, buffers = nodes + cn, buffers + cb
    return nodes, buffers


def check_supported(schema: Schema) -> None:
    """Raise ArrowError naming the first column whose layout is not known."""
    for f in schema.fields:
        _shape(f)


# --- values -------------------------------------------------------------------------

def _valid(bitmap, n: int, null_count: int) -> str | None:
    """'1' for each valid row, '0' for each null, or None when none is null."""
    if null_count == 0 or len(bitmap) == 0:
        return None
    bits = bin(int.from_bytes(bytes(bitmap), "little"))[2:].zfill(len(bitmap) * 8)
    return bits[::-1][:n]


def _view(buf, fmt: str, n: int):
    """The first `n` values of a buffer, as a typed memoryview (no copy)."""
    return memoryview(buf)[:n * struct.calcsize(fmt)].cast(fmt)


def _int_format(t: Type) -> str:
    width, signed = t.get("bit_width"), t.get("signed")
    return {8: "b", 16: "h", 32: "i", 64: "q"}[width] if signed else {8: "B", 16: "H", 32: "I", 64: "Q"}[width]


def _decode(t: Type, n: int, null_count: int, buffers: list) -> list:
    valid = _valid(buffers[0], n, null_count) if buffers else None
    if t.id == INT:
        values = _view(buffers[1], _int_format(t), n).tolist()
    elif t.id == FLOAT:
        if t.get("precision") == 0:
            raise ArrowError("half-precision floats are not supported")
        values = _view(buffers[1], "f" if t.get("precision") == 1 else "d", n).tolist()
    elif t.id == BOOL:
        values = [c == "1" for c in _valid(buffers[1], n, 1) or ""] if n else []
    elif t.id in (UTF8, LARGE_UTF8, BINARY, LARGE_BINARY):
        offsets = _view(buffers[1], "i" if t.id in (UTF8, BINARY) else "q", n + 1).tolist()
        data = bytes(buffers[2])
        if t.id in (BINARY, LARGE_BINARY):
            values = [data[offsets[i]:offsets[i + 1]] for i in range(n)]
        else:
            text = data.decode()
            if len(text) != len(data):  # not ASCII: byte offsets differ from character offsets
                values = [data[offsets[i]:offsets[i + 1]].decode() for i in range(n)]
            else:
                values = [text[offsets[i]:offsets[i + 1]] for i in range(n)]
    # Below, a null row's slot may hold anything: only valid rows are converted.
    elif t.id == DATE:
        raw = _view(buffers[1], "i" if t.get("unit") == 0 else "q", n).tolist()
        per_day = 1 if t.get("unit") == 0 else 86_400_000
        return _convert(raw, valid, lambda v: dt.date.fromordinal(_EPOCH_DAY + v // per_day))
    elif t.id == TIMESTAMP:
        per_second = _TIME_UNITS[t.get("unit")]
        epoch = _EPOCH.replace(tzinfo=dt.timezone.utc if t.get("timezone") else None)
        raw = _view(buffers[1], "q", n).tolist()
        return _convert(raw, valid, lambda v: epoch + dt.timedelta(microseconds=v * 1_000_000 // per_second))
    elif t.id == DECIMAL and t.get("bit_width") == 128:
        scale, data = t.get("scale"), bytes(buffers[1])
        raw = [int.from_bytes(data[16 * i:16 * i + 16], "little", signed=True) for i in range(n)]
        return _convert(raw, valid, lambda v: decimal.Decimal(v).scaleb(-scale))
    else:
        raise ArrowError(f"reading values of type {t} is not supported")
    if valid is None:
        return values
    return [v if ok == "1" else None for v, ok in zip(values, valid)]


def _convert(raw: list, valid: str | None, convert) -> list:
    if valid is None:
        return [convert(v) for v in raw]
    return [convert(v) if ok == "1" else None for v, ok in zip(raw, valid)]


def _bitmap(flags) -> bytes:
    bits = "".join("1" if f else "0" for f in flags)[::-1]
    return int(bits or "0", 2).to_bytes((len(flags) + 7) // 8, "little")


def _encode(t: Type, values: list) -> tuple[list, list]:
    n = len(values)
    nulls = sum(v is None for v in values)
    validity = _bitmap([v is not None for v in values]) if nulls else b""
    if t.id == INT:
        data = struct.pack(f"<{n}{_int_format(t)}", *(0 if v is None else v for v in values))
    elif t.id == FLOAT:
        data = struct.pack(f"<{n}{'f' if t.get('precision') == 1 else 'd'}", *(0.0 if v is None else v for v in values))
    elif t.id == BOOL:
        data = _bitmap([bool(v) for v in values])
    elif t.id in (UTF8, LARGE_UTF8, BINARY, LARGE_BINARY):
        parts = [b"" if v is None else (v.encode() if isinstance(v, str) else bytes(v)) for v in values]
        offsets, at = [0], 0
        for p in parts:
            at += len(p)
            offsets.append(at)
        fmt = "i" if t.id in (UTF8, BINARY) else "q"
        return [(n, nulls)], [validity, struct.pack(f"<{n + 1}{fmt}", *offsets), b"".join(parts)]
    elif t.id == DATE:
        days = [0 if v is None else v.toordinal() - _EPOCH_DAY for v in values]
        data = struct.pack(f"<{n}i", *days) if t.get("unit") == 0 else struct.pack(
            f"<{n}q", *(d * 86_400_000 for d in days))
    elif t.id == TIMESTAMP:
        per_second, epoch = _TIME_UNITS[t.get("unit")], _EPOCH.replace(
            tzinfo=dt.timezone.utc if t.get("timezone") else None)
        ticks = [0 if v is None else (v - epoch) // dt.timedelta(microseconds=1) * per_second // 1_000_000
                 for v in values]
        data = struct.pack(f"<{n}q", *ticks)
    elif t.id == DECIMAL and t.get("bit_width") == 128:
        scale = t.get("scale")
        data = b"".join((0 if v is None else int(decimal.Decimal(v).scaleb(scale))).to_bytes(16, "little", signed=True)
                        for v in values)
    else:
        raise ArrowError(f"writing values of type {t} is not supported")
    return [(n, nulls)], [validity, data]
