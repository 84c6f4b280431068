// Write a floe transform plugin in JavaScript.
//
// A plugin is a class bound once per request to an input schema and the client's
// JSON arguments; `exportPlugin` makes it the component's plugin, and
// `node guests/js/build.mjs plugin.js` turns the file into a WebAssembly component
// for `host plugins add`:
//
//   import { Plugin, exportPlugin } from 'floe-plugin';
//
//   class Passthrough extends Plugin {
//     static name = 'passthrough';
//     static description = 'Returns every batch unchanged.';
//     static stateless = true;
//     outputSchema() { return this.inputSchema; }
//     process(batch) { return batch; }
//   }
//
//   exportPlugin(Passthrough);
//
// `static name` defaults to the class's own name. Extend `RowFilter` instead to keep or drop rows: `keep` returns one boolean per
// row and the host applies it to the whole batch.
export { Batch, Column, Field, Schema, Type } from './arrow.js';
export * as arrow from './arrow.js';
export { sha256Hex } from './sha256.js';

/** Thrown by a plugin; the host reports it to the client with the plugin's name. */
export class PluginError extends Error {}
/** The arguments are wrong (the client gets InvalidArgument). */
export class InvalidArgs extends PluginError {}
/** The input schema cannot be handled: a missing column, an unsupported type. */
export class UnsupportedSchema extends PluginError {}
/** Anything else (the client gets Internal). */
export class Failed extends PluginError {}

/** What every plugin says of itself (static fields: name, version, description,
 * argsSchema — a JSON Schema: unknown keys are refused when it says
 * additionalProperties: false, missing required ones always — and stateless: nothing
 * kept between batches, `finish` returns nothing, so the host may replace the
 * instance between batches), and its binding to a schema and args. */
class Described {
  static version = '0.1.0';
  static description = '';
  static argsSchema = { type: 'object' };
  static stateless = false;

  constructor(schema, args) { this.inputSchema = schema; this.args = args; }
}

/** Batches in, batches out: override the constructor (schema, args), `outputSchema`
 * and `process`; `inputColumns` and `finish` are optional. */
export class Plugin extends Described {
  outputSchema() { throw new Failed('outputSchema() is not implemented'); }
  /** The input columns read, if not all: `process` then receives exactly these. */
  inputColumns() { return undefined; }
  process(batch) { throw new Failed('process() is not implemented'); }
  finish() { return undefined; }
}

/** Says which rows to keep: override the constructor and `keep`; `columns` names
 * what `keep` reads (only those cross into the plugin). */
export class RowFilter extends Described {
  columns() { return undefined; }
  /** One value per row: truthy to keep it. */
  keep(batch) { throw new Failed('keep() is not implemented'); }
}

export const exported = { plugin: null };

/** Make `cls` (a Plugin or RowFilter subclass) this component's plugin. */
export function exportPlugin(cls) {
  if (!(cls.prototype instanceof Plugin || cls.prototype instanceof RowFilter)) {
    throw new TypeError('exportPlugin() takes a subclass of Plugin or RowFilter');
  }
  exported.plugin = cls;
  return cls;
}
