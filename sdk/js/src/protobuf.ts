// The binary protocol ("switchboard.v1.protobuf"): a small Protocol
// Buffers codec for the two messages a client needs, Command (sent) and
// Reply (received), as internal/protocol/pb/switchboard.proto defines
// them. decodeReply turns a Reply into the JSON protocol's message, so
// that the transport handles both protocols alike; publication data sent
// as bytes arrives as a Uint8Array.

/** SUBPROTOCOL is the WebSocket subprotocol of the binary protocol. */
export const SUBPROTOCOL = "switchboard.v1.protobuf";

const enc = new TextEncoder();
const dec = new TextDecoder();

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

class Writer {
  private b: Uint8Array<ArrayBuffer> = new Uint8Array(128);
  private n = 0;

  private room(k: number): void {
    if (this.n + k <= this.b.length) return;
    const nb = new Uint8Array(Math.max(this.b.length * 2, this.n + k));
    nb.set(this.b.subarray(0, this.n));
    this.b = nb;
  }

  /** varint writes a non-negative integer (exact up to 2^53), or a negative one as int64. */
  varint(v: number): void {
    this.room(10);
    if (v < 0) {
      // Two's complement over 64 bits: 10 bytes.
      let big = BigInt.asUintN(64, BigInt(Math.trunc(v)));
      while (big >= 0x80n) {
        this.b[this.n++] = Number(big & 0x7fn) | 0x80;
        big >>= 7n;
      }
      this.b[this.n++] = Number(big);
      return;
    }
    while (v >= 0x80) {
      this.b[this.n++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.b[this.n++] = v;
  }

  tag(num: number, type: number): void {
    this.varint(num * 8 + type);
  }

  bytes(num: number, data: Uint8Array): void {
    this.tag(num, LEN);
    this.varint(data.length);
    this.room(data.length);
    this.b.set(data, this.n);
    this.n += data.length;
  }

  string(num: number, s: unknown): void {
    if (typeof s === "string" && s !== "") this.bytes(num, enc.encode(s));
  }

  finish(): Uint8Array<ArrayBuffer> {
    return this.b.slice(0, this.n);
  }
}

/** isBytes reports whether v is binary data (a Uint8Array, or another view or an ArrayBuffer). */
export function isBytes(v: unknown): v is Uint8Array | ArrayBuffer | ArrayBufferView {
  return v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

/** asBytes returns binary data as a Uint8Array over the same memory. */
export function asBytes(v: Uint8Array | ArrayBuffer | ArrayBufferView): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** base64 encodes bytes as standard, padded base64. */
function base64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * jsonBytes is JSON.stringify's replacer for the JSON protocol: binary
 * data becomes its JSON form, {"$binary":"<base64>"}, which binary
 * subscribers receive as bytes.
 */
export function jsonBytes(_key: string, v: unknown): unknown {
  return isBytes(v) ? { $binary: base64(asBytes(v)) } : v;
}

/**
 * encodeCommand encodes a command of the JSON protocol's shape as a
 * Command message. Binary `data` goes in the binary field, anything else
 * as JSON text.
 */
export function encodeCommand(cmd: Record<string, unknown>): Uint8Array<ArrayBuffer> {
  const w = new Writer();
  if (typeof cmd.id === "number") {
    w.tag(1, VARINT);
    w.varint(cmd.id);
  }
  w.string(2, cmd.command);
  w.string(3, cmd.channel);
  if (cmd.data !== undefined) {
    if (isBytes(cmd.data)) w.bytes(5, asBytes(cmd.data));
    else w.bytes(4, enc.encode(JSON.stringify(cmd.data)));
  }
  w.string(6, cmd.token);
  const since = cmd.since as { offset?: number; epoch?: string } | undefined;
  if (since && typeof since === "object") {
    const s = new Writer();
    if (since.offset) {
      s.tag(1, VARINT);
      s.varint(since.offset);
    }
    s.string(2, since.epoch);
    w.bytes(7, s.finish());
  }
  if (typeof cmd.limit === "number") {
    w.tag(8, VARINT);
    w.varint(cmd.limit);
  }
  if (cmd.reverse) {
    w.tag(9, VARINT);
    w.varint(1);
  }
  if (typeof cmd.idempotency_key === "string") w.bytes(10, enc.encode(cmd.idempotency_key));
  w.string(11, cmd.method);
  return w.finish();
}

/** ProtobufError: a frame from the server that is not a valid Reply. */
export class ProtobufError extends Error {
  constructor(message: string) {
    super(`switchboard: malformed binary message: ${message}`);
    this.name = "ProtobufError";
  }
}

class Reader {
  pos = 0;
  constructor(private b: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.b.length;
  }

  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.b.length) throw new ProtobufError("truncated varint");
      const c = this.b[this.pos++];
      v += (c & 0x7f) * mul;
      if (c < 0x80) {
        // An int64 above 2^63 is negative (ids; nothing else is).
        return v >= 2 ** 63 ? v - 2 ** 64 : v;
      }
      mul *= 0x80;
    }
    throw new ProtobufError("varint too long");
  }

  bytes(): Uint8Array {
    const n = this.varint();
    if (n < 0 || this.pos + n > this.b.length) throw new ProtobufError("truncated field");
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** field reads a tag, and its value: a number (varint) or bytes; other types are skipped (undefined). */
  field(): [number, number | Uint8Array | undefined, number] {
    const key = this.varint();
    const num = Math.floor(key / 8);
    const type = key % 8;
    switch (type) {
      case VARINT:
        return [num, this.varint(), type];
      case LEN:
        return [num, this.bytes(), type];
      case I64:
      case I32: {
        const n = type === I64 ? 8 : 4;
        if (this.pos + n > this.b.length) throw new ProtobufError("truncated field");
        this.pos += n;
        return [num, undefined, type];
      }
      default:
        throw new ProtobufError(`wire type ${type}`);
    }
  }
}

function fields(b: Uint8Array, f: (num: number, v: number | Uint8Array | undefined) => void): void {
  const r = new Reader(b);
  while (!r.done) {
    const [num, v] = r.field();
    f(num, v);
  }
}

function need<T>(v: unknown, kind: "number" | "bytes"): T {
  if (kind === "number" ? typeof v !== "number" : !(v instanceof Uint8Array)) throw new ProtobufError("wrong wire type");
  return v as T;
}

const text = (v: unknown): string => dec.decode(need<Uint8Array>(v, "bytes"));
const json = (v: unknown): unknown => JSON.parse(text(v));

/** publication decodes a Publication into {channel, data, offset}. */
function publication(b: Uint8Array): { channel: string; data: unknown; offset: number } {
  const p = { channel: "", data: null as unknown, offset: 0 };
  fields(b, (num, v) => {
    if (num === 1) p.channel = text(v);
    else if (num === 2) p.offset = need<number>(v, "number");
    else if (num === 3) p.data = json(v);
    else if (num === 4) p.data = need<Uint8Array>(v, "bytes").slice();
  });
  return p;
}

/**
 * decodeReply decodes a Reply message into the JSON protocol's message:
 * {"id","result"}, {"id","error"}, a publication push, an event push
 * ({"channel", kind: body}) or {"pong":{}}. It throws ProtobufError on a
 * malformed frame.
 */
export function decodeReply(b: Uint8Array): Record<string, any> {
  const msg: Record<string, any> = {};
  let result: Record<string, any> | undefined;
  let pubs: unknown[] | undefined;
  let whole: Record<string, any> | undefined;
  fields(b, (num, v) => {
    switch (num) {
      case 1:
        msg.id = need<number>(v, "number");
        break;
      case 2:
        result = json(v) as Record<string, any>;
        break;
      case 3: {
        const e: Record<string, any> = { code: 0, message: "" };
        fields(need<Uint8Array>(v, "bytes"), (n, x) => {
          if (n === 1) e.code = need<number>(x, "number") | 0;
          else if (n === 2) e.message = text(x);
          else if (n === 3) e.url = text(x);
        });
        msg.error = e;
        break;
      }
      case 4:
        if (!pubs) pubs = [];
        pubs.push(publication(need<Uint8Array>(v, "bytes")));
        break;
      case 5:
        Object.assign(msg, publication(need<Uint8Array>(v, "bytes")));
        break;
      case 6: {
        let channel = "";
        let kind = "";
        let body: unknown = {};
        fields(need<Uint8Array>(v, "bytes"), (n, x) => {
          if (n === 1) channel = text(x);
          else if (n === 2) kind = text(x);
          else if (n === 3) body = json(x);
        });
        msg.channel = channel;
        if (kind !== "channel") msg[kind] = body;
        break;
      }
      case 7:
        if (need<number>(v, "number")) msg.pong = {};
        break;
      case 15:
        whole = json(v) as Record<string, any>;
        break;
    }
  });
  if (whole) return whole;
  if ("id" in msg && !msg.error) {
    msg.result = result ?? {};
    if (pubs) msg.result.publications = pubs;
  }
  return msg;
}
