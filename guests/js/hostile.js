// hostile (JavaScript): misbehaves on purpose, for the host's sandbox tests.
//
// Args: {"mode": "loop" | "alloc" | "throw" | "pass"}; the misbehaviour happens in
// `process`. It declares itself stateless, so the host may renew it on a long stream.
import { Plugin, exportPlugin } from 'floe-plugin';

class Hostile extends Plugin {
  static name = 'hostile';
  static description = 'Misbehaves on purpose (for tests): loops, allocates, throws.';
  static stateless = true;

  outputSchema() { return this.inputSchema; }

  process(batch) {
    const mode = this.args.mode ?? 'pass';
    if (mode === 'loop') for (;;);
    if (mode === 'alloc') {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
    }
    if (mode === 'throw') throw new TypeError('hostile plugin threw on purpose');
    return batch;
  }
}

exportPlugin(Hostile);
