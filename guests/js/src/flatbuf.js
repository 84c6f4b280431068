// Just enough FlatBuffers to read and write Arrow IPC message headers.
// Reading follows offsets in place. Writing lays each table out before the objects
// it points to (FlatBuffers' unsigned offsets only point forward), vtable first.

export class Table {
  constructor(view, pos) {
    this.view = view; // a DataView over the message
    this.pos = pos;
    this.vtable = pos - view.getInt32(pos, true);
    this.vlen = view.getUint16(this.vtable, true);
  }

  static root(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return new Table(view, view.getUint32(0, true));
  }

  field(slot) {
    const at = 4 + 2 * slot;
    return at < this.vlen ? this.view.getUint16(this.vtable + at, true) : 0;
  }

  scalar(slot, kind, fallback = 0) {
    const off = this.field(slot);
    if (!off) return fallback;
    const at = this.pos + off;
    const v = this.view;
    switch (kind) {
      case 'bool': return v.getUint8(at) !== 0;
      case 'u8': return v.getUint8(at);
      case 'i16': return v.getInt16(at, true);
      case 'i32': return v.getInt32(at, true);
      case 'i64': return Number(v.getBigInt64(at, true));
      default: throw new Error(`unknown scalar kind ${kind}`);
    }
  }

  target(slot) {
    const off = this.field(slot);
    if (!off) return null;
    const at = this.pos + off;
    return at + this.view.getUint32(at, true);
  }

  table(slot) {
    const at = this.target(slot);
    return at === null ? null : new Table(this.view, at);
  }

  string(slot) {
    const at = this.target(slot);
    if (at === null) return null;
    const n = this.view.getUint32(at, true);
    return new TextDecoder().decode(new Uint8Array(this.view.buffer, this.view.byteOffset + at + 4, n));
  }

  /** The elements of a vector, each read by `read(position)` at `size` bytes apart. */
  vector(slot, size, read) {
    const at = this.target(slot);
    if (at === null) return [];
    const out = [];
    for (let i = 0, n = this.view.getUint32(at, true); i < n; i++) out.push(read(at + 4 + size * i));
    return out;
  }

  tables(slot) {
    return this.vector(slot, 4, (elem) => new Table(this.view, elem + this.view.getUint32(elem, true)));
  }

  /** A vector of structs of two int64s (FieldNode, Buffer), as [a, b] Number pairs. */
  pairs(slot) {
    return this.vector(slot, 16, (p) => [Number(this.view.getBigInt64(p, true)), Number(this.view.getBigInt64(p + 8, true))]);
  }
}

// What a table to write holds: a Map (or array of [slot, [kind, value]]) where kinds
// are scalar kinds ('bool', 'u8', 'i16', 'i32', 'i64'), 'str', 'table', 'tables' and
// 'pairs' (a vector of [int64, int64] structs). Fields whose value is null are left out.
const WIDTH = { bool: 1, u8: 1, i16: 2, i32: 4, i64: 8 };

class Out {
  constructor() { this.bytes = new Uint8Array(256); this.view = new DataView(this.bytes.buffer); this.length = 0; }
  reserve(n) {
    if (this.length + n <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }
  pad(align) { const n = (align - (this.length % align)) % align; this.reserve(n); this.length += n; }
  alloc(n) { this.reserve(n); const at = this.length; this.length += n; return at; }
}

export function build(root) {
  const out = new Out();
  out.alloc(4);
  const table = writeTable(out, root); // first: writing may replace out.view
  out.view.setUint32(0, table, true);
  out.pad(8);
  return out.bytes.slice(0, out.length);
}

function writeScalar(out, kind, at, value) {
  const v = out.view;
  switch (kind) {
    case 'bool': v.setUint8(at, value ? 1 : 0); break;
    case 'u8': v.setUint8(at, value); break;
    case 'i16': v.setInt16(at, value, true); break;
    case 'i32': v.setInt32(at, value, true); break;
    case 'i64': v.setBigInt64(at, BigInt(value), true); break;
    default: throw new Error(`unknown scalar kind ${kind}`);
  }
}

function writeTable(out, fields) {
  const present = [...(fields instanceof Map ? fields : new Map(fields))].filter(([, [, v]]) => v !== null && v !== undefined);
  // Inline layout: 4-byte soffset, then fields widest first (8-byte ones land aligned).
  const layout = new Map();
  let size = 4;
  for (const [slot, [kind]] of [...present].sort((a, b) => (WIDTH[b[1][0]] ?? 4) - (WIDTH[a[1][0]] ?? 4))) {
    const width = WIDTH[kind] ?? 4;
    size += (width - (size % width)) % width;
    layout.set(slot, size);
    size += width;
  }
  const slots = present.reduce((m, [slot]) => Math.max(m, slot + 1), 0);
  out.pad(2);
  const vpos = out.alloc(4 + 2 * slots);
  out.view.setUint16(vpos, 4 + 2 * slots, true);
  out.view.setUint16(vpos + 2, size, true);
  for (let s = 0; s < slots; s++) out.view.setUint16(vpos + 4 + 2 * s, layout.get(s) ?? 0, true);
  out.pad(8); // the table starts 8-aligned (its 8-byte fields must be)
  const tpos = out.alloc(size);
  out.bytes.fill(0, tpos, tpos + size);
  out.view.setInt32(tpos, tpos - vpos, true);
  const later = [];
  for (const [slot, [kind, value]] of present) {
    const at = tpos + layout.get(slot);
    if (kind in WIDTH) writeScalar(out, kind, at, value);
    else later.push([at, kind, value]);
  }
  for (const [at, kind, value] of later) {
    const target = writeObject(out, kind, value);
    out.view.setUint32(at, target - at, true);
  }
  return tpos;
}

function writeObject(out, kind, value) {
  if (kind === 'str') {
    const data = new TextEncoder().encode(value);
    out.pad(4);
    const pos = out.alloc(4 + data.length + 1);
    out.view.setUint32(pos, data.length, true);
    out.bytes.set(data, pos + 4);
    out.bytes[pos + 4 + data.length] = 0;
    return pos;
  }
  if (kind === 'table') return writeTable(out, value);
  if (kind === 'tables') {
    out.pad(4);
    const pos = out.alloc(4 + 4 * value.length);
    out.view.setUint32(pos, value.length, true);
    value.forEach((fields, i) => {
      const elem = pos + 4 + 4 * i;
      const table = writeTable(out, fields);
      out.view.setUint32(elem, table - elem, true);
    });
    return pos;
  }
  if (kind === 'pairs') { // elements 8-aligned after the length
    while ((out.length + 4) % 8) out.alloc(1);
    const pos = out.alloc(4 + 16 * value.length);
    out.view.setUint32(pos, value.length, true);
    value.forEach(([a, b], i) => {
      out.view.setBigInt64(pos + 4 + 16 * i, BigInt(a), true);
      out.view.setBigInt64(pos + 12 + 16 * i, BigInt(b), true);
    });
    return pos;
  }
  throw new Error(`unknown field kind ${kind}`);
}
