"""Just enough FlatBuffers to read and write Arrow IPC message headers.

Reading follows offsets in place. Writing lays each table out before the objects it
points to (FlatBuffers' unsigned offsets only point forward), vtable first.
"""
from __future__ import annotations

import struct


class Table:
    """A table at `pos` in `buf`; fields are read by their slot number."""

    __slots__ = ("buf", "pos", "vtable", "vlen")

    def __init__(self, buf, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vlen = struct.unpack_from("<H", buf, self.vtable)[0]

    @classmethod
    def root(cls, buf) -> "Table":
        return cls(buf, struct.unpack_from("<I", buf, 0)[0])

    def _field(self, slot: int) -> int:
        at = 4 + 2 * slot
        return struct.unpack_from("<H", self.buf, self.vtable + at)[0] if at < self.vlen else 0

    def scalar(self, slot: int, fmt: str, default=0):
        off = self._field(slot)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def _target(self, slot: int) -> int | None:
        off = self._field(slot)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, slot: int) -> "Table | None":
        at = self._target(slot)
        return None if at is None else Table(self.buf, at)

    def string(self, slot: int) -> str | None:
        at = self._target(slot)
        if at is None:
            return None
        (n,) = struct.unpack_from("<I", self.buf, at)
        return bytes(self.buf[at + 4 : at + 4 + n]).decode()

    def tables(self, slot: int) -> list["Table"]:
        at = self._target(slot)
        if at is None:
            return []
        (n,) = struct.unpack_from("<I", self.buf, at)
        out = []
        for i in range(n):
            elem = at + 4 + 4 * i
            out.append(Table(self.buf, elem + struct.unpack_from("<I", self.buf, elem)[0]))
        return out

    def structs(self, slot: int, fmt: str) -> list[tuple]:
        """A vector of structs, each unpacked with `fmt` (little-endian)."""
        at = self._target(slot)
        if at is None:
            return []
        (n,) = struct.unpack_from("<I", self.buf, at)
        return list(struct.iter_unpack("<" + fmt, self.buf[at + 4 : at + 4 + n * struct.calcsize(fmt)]))


# What a table to write holds: {slot: (kind, value)}, kinds being struct formats
# for scalars, "str", "table" (a dict like this one), "tables" (a list of them) and
# ("structs", fmt) for a vector of structs (value: a list of tuples).
Fields = dict


def build(root: Fields) -> bytes:
    out = bytearray(4)
    pos = _table(out, root)
    struct.pack_into("<I", out, 0, pos)
    _pad(out, 8)
    return bytes(out)


def _pad(out: bytearray, align: int) -> None:
    out.extend(b"\0" * (-len(out) % align))


def _table(out: bytearray, fields: Fields) -> int:
    present = {slot: kv for slot, kv in fields.items() if kv[1] is not None}
    # Inline layout: 4-byte soffset, then fields widest first (8-byte ones land aligned).
    layout, size = {}, 4
    for slot, (kind, _) in sorted(present.items(), key=lambda item: -_width(item[1][0])):
        width = _width(kind)
        size += -size % width
        layout[slot] = size
        size += width
    slots = max(present, default=-1) + 1
    vtable = struct.pack(f"<HH{slots}H", 4 + 2 * slots, size, *(layout.get(s, 0) for s in range(slots)))
    _pad(out, 2)
    vpos = len(out)
    out.extend(vtable)
    # The table starts 8-aligned (its 8-byte fields must be).
    while (len(out)) % 8:
        out.append(0)
    tpos = len(out)
    out.extend(b"\0" * size)
    struct.pack_into("<i", out, tpos, tpos - vpos)
    later = []
    for slot, (kind, value) in present.items():
        at = tpos + layout[slot]
        if isinstance(kind, str) and kind not in ("str", "table", "tables"):
            struct.pack_into("<" + kind, out, at, value)
        else:
            later.append((at, kind, value))
    for at, kind, value in later:
        target = _object(out, kind, value)
        struct.pack_into("<I", out, at, target - at)
    return tpos


def _width(kind) -> int:
    return struct.calcsize(kind) if isinstance(kind, str) and kind not in ("str", "table", "tables") else 4


def _object(out: bytearray, kind, value) -> int:
    if kind == "str":
        _pad(out, 4)
        pos = len(out)
        data = value.encode()
        out.extend(struct.pack("<I", len(data)) + data + b"\0")
        return pos
    if kind == "table":
        return _table(out, value)
    if kind == "tables":
        _pad(out, 4)
        pos = len(out)
        out.extend(struct.pack("<I", len(value)) + b"\0" * (4 * len(value)))
        for i, fields in enumerate(value):
            elem = pos + 4 + 4 * i
            struct.pack_into("<I", out, elem, _table(out, fields) - elem)
        return pos
    _, fmt = kind  # ("structs", fmt): elements 8-aligned after the length
    while (len(out) + 4) % 8:
        out.append(0)
    pos = len(out)
    out.extend(struct.pack("<I", len(value)))
    for item in value:
        out.extend(struct.pack("<" + fmt, *item))
    return pos
