// Applying fossil deltas: the format of delta-compressed subscriptions
// (docs/protocol.md, "Delta compression"). Only the applier: the server
// makes the deltas.

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";

const VALUE = (() => {
  const v = new Int8Array(256).fill(-1);
  for (let i = 0; i < DIGITS.length; i++) v[DIGITS.charCodeAt(i)] = i;
  return v;
})();

/** checksum is the format's: the sum of the target's big-endian 32-bit words, the last padded with zeros. */
function checksum(b: Uint8Array): number {
  let sum = 0;
  let i = 0;
  for (; i + 4 <= b.length; i += 4) sum = (sum + ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3])) >>> 0;
  let shift = 24;
  for (; i < b.length; i++, shift -= 8) sum = (sum + (b[i] << shift)) >>> 0;
  return sum >>> 0;
}

/**
 * applyDelta returns the target that the fossil delta makes from src. It
 * throws when the delta is malformed, refers outside src, or its length
 * or checksum does not match.
 */
export function applyDelta(src: Uint8Array, delta: Uint8Array): Uint8Array {
  let i = 0;
  const int = (): number => {
    const start = i;
    let n = 0;
    while (i < delta.length && VALUE[delta[i]] >= 0) {
      n = n * 64 + VALUE[delta[i++]];
      if (n > 0xffffffff) throw new Error("switchboard: malformed delta: integer too large");
    }
    if (i === start) throw new Error(`switchboard: malformed delta: expected a number at byte ${i}`);
    return n;
  };
  const size = int();
  if (delta[i++] !== 0x0a) throw new Error("switchboard: malformed delta: no target length");
  const out = new Uint8Array(size);
  let o = 0;
  for (;;) {
    const n = int();
    const op = delta[i++];
    if (op === 0x40 /* @ */) {
      const off = int();
      if (delta[i++] !== 0x2c /* , */) throw new Error("switchboard: malformed delta: bad copy command");
      if (off + n > src.length || o + n > size) throw new Error("switchboard: malformed delta: copy out of range");
      out.set(src.subarray(off, off + n), o);
      o += n;
    } else if (op === 0x3a /* : */) {
      if (i + n > delta.length || o + n > size) throw new Error("switchboard: malformed delta: insert out of range");
      out.set(delta.subarray(i, i + n), o);
      o += n;
      i += n;
    } else if (op === 0x3b /* ; */) {
      if (i !== delta.length || o !== size) throw new Error("switchboard: malformed delta: target length");
      if (checksum(out) !== n) throw new Error("switchboard: malformed delta: checksum mismatch");
      return out;
    } else {
      throw new Error(`switchboard: malformed delta: unknown command at byte ${i - 1}`);
    }
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** applyTextDelta applies a delta that travelled as a string to the previous data as text. */
export function applyTextDelta(prev: string, delta: string): string {
  return decoder.decode(applyDelta(encoder.encode(prev), encoder.encode(delta)));
}
