// filter: keep the rows where every condition holds.
//
// Args: {"where": [["amount", ">", 120], ["name", "in", ["a", "b"]], ["flag", "is not null"]]}.
// Operators: = != < <= > >= in, not in, is null, is not null. A null value never
// satisfies a comparison (as in SQL). Dates and timestamps compare with ISO strings.
// Only the columns named cross into the plugin; the host drops the rows.
import { InvalidArgs, RowFilter, UnsupportedSchema, arrow, exportPlugin } from 'floe-plugin';

const COMPARE = {
  '=': (a, b) => a == b, '!=': (a, b) => a != b, '<': (a, b) => a < b,
  '<=': (a, b) => a <= b, '>': (a, b) => a > b, '>=': (a, b) => a >= b,
};
const TICKS_PER_MS = [1e-3, 1, 1e3, 1e6]; // second, milli, micro, nano

/** A JSON value as the column's values are: dates as epoch ms, timestamps as ticks. */
function literal(field, value) {
  if (field.type.id === arrow.DATE) return Date.parse(value);
  if (field.type.id === arrow.TIMESTAMP) {
    const iso = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
    return BigInt(Math.round(Date.parse(iso.replace(' ', 'T')) * TICKS_PER_MS[field.type.params.unit]));
  }
  return value;
}

function condition(schema, [column, op, ...value]) {
  const field = schema.field(column);
  if (!field) throw new UnsupportedSchema(`no column "${column}" (columns: ${schema.names.join(', ')})`);
  const plain = field.type.id === arrow.DATE ? (v) => v?.getTime() ?? null : (v) => v;
  if ((op === 'is null' || op === 'is not null') && !value.length) return (v) => (v === null) === (op === 'is null');
  if (op in COMPARE && value.length === 1) {
    const test = COMPARE[op], other = literal(field, value[0]);
    return (v) => v !== null && test(plain(v), other);
  }
  if ((op === 'in' || op === 'not in') && value.length === 1 && Array.isArray(value[0])) {
    const options = value[0].map((x) => literal(field, x)), want = op === 'in';
    return (v) => v !== null && options.some((o) => o == plain(v)) === want;
  }
  throw new InvalidArgs(`cannot read condition ${JSON.stringify([column, op, ...value])}: expected [column, op, value] `
    + `with op one of ${[...Object.keys(COMPARE), 'in', 'not in'].join(', ')}, or [column, 'is [not] null']`);
}

class Filter extends RowFilter {
  static name = 'filter';
  static description = 'Keep rows where every [column, op, value] condition holds.';
  static stateless = true;
  static argsSchema = {
    type: 'object',
    properties: { where: { type: 'array', items: { type: 'array' } } },
    required: ['where'],
    additionalProperties: false,
  };

  constructor(schema, args) {
    super(schema, args);
    this.tests = args.where.map((cond) => {
      if (!Array.isArray(cond) || cond.length < 2) throw new InvalidArgs(`a condition is [column, op, value], not ${JSON.stringify(cond)}`);
      return [cond[0], condition(schema, cond)];
    });
    this.names = [...new Set(this.tests.map(([column]) => column))];
  }

  columns() { return this.names; }

  keep(batch) {
    const keep = new Array(batch.numRows).fill(true);
    for (const [column, test] of this.tests) {
      batch.column(column).toArray().forEach((v, i) => { keep[i] &&= test(v); });
    }
    return keep;
  }
}

exportPlugin(Filter);
