/**
 * A small field-list language for SPDM layouts, and for the PCI-SIG protocols SPDM carries (IDE-KM,
 * TDISP): each message is one array of fields, and the same array drives decoding and encoding, so
 * the two can't drift apart. binary-parser is not used because sizes here depend on the version, on
 * earlier fields and on the negotiated context, and every short read must become a DecodeError
 * naming the field.
 */
// Imported: Node 20's global Buffer is an accessor, paid on every use, and every field uses it.
import { Buffer } from "node:buffer";
import { DecodeError, requireBytes } from "../errors.js";
import type { DecodeContext } from "./context.js";

type Obj = Record<string, unknown>;
/** Counts and lengths read before the data they describe (e.g. PSK_EXCHANGE's three lengths). */
type Scratch = Map<string, number>;

/** A Buffer view of `b` (no copy); decoders copy what they keep with Reader.take. */
export const asBuffer = (b: Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

export class Reader {
  off = 0;
  constructor(readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.off;
  }

  /** A copy, so decoded messages don't alias the caller's (possibly reused) buffer. */
  take(n: number, field: string): Buffer {
    requireBytes(this.buf, this.off, n, field);
    const out = Buffer.from(this.buf.subarray(this.off, this.off + n));
    this.off += n;
    return out;
  }

  uint(size: number, field: string): number {
    requireBytes(this.buf, this.off, size, field);
    const v = this.buf.readUIntLE(this.off, size);
    this.off += size;
    return v;
  }

  u64(field: string): bigint {
    requireBytes(this.buf, this.off, 8, field);
    const v = this.buf.readBigUInt64LE(this.off);
    this.off += 8;
    return v;
  }

  /** Throws DecodeError when bytes are left: for messages whose length is exactly their fields. */
  end(field: string): void {
    if (this.remaining > 0)
      throw new DecodeError(field, this.off, `${this.remaining} bytes after the message`);
  }
}

export class Writer {
  private readonly parts: Buffer[] = [];
  length = 0;

  bytes(b: Uint8Array): Buffer {
    const copy = Buffer.from(b);
    this.parts.push(copy);
    this.length += copy.length;
    return copy;
  }

  /** Throws RangeError when `v` is not an integer that fits. */
  uint(v: unknown, size: number, field: string): Buffer {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= 2 ** (8 * size)) {
      throw new RangeError(`${field}: ${String(v)} is not a ${8 * size}-bit unsigned integer`);
    }
    const b = this.own(size);
    b.writeUIntLE(v, 0, size);
    return b;
  }

  /** Throws RangeError when `v` is not a bigint that fits in 64 bits. */
  u64(v: unknown, field: string): Buffer {
    if (typeof v !== "bigint" || v < 0n || v > 0xffff_ffff_ffff_ffffn) {
      throw new RangeError(`${field}: ${String(v)} is not a 64-bit unsigned bigint`);
    }
    const b = this.own(8);
    b.writeBigUInt64LE(v, 0);
    return b;
  }

  /**
   * `size` new bytes at the end, for the caller to write whole: from the pool, not zeroed, and not
   * copied as bytes() copies what it is given. Every response field goes through here.
   */
  private own(size: number): Buffer {
    const b = Buffer.allocUnsafe(size);
    this.parts.push(b);
    this.length += size;
    return b;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}

type SizeKey =
  | "hashSize"
  | "asymSignatureSize"
  | "reqAsymSignatureSize"
  | "dheExchangeSize"
  | "measurementHashSize"
  | "measurementSummaryHashType";
type FlagKey =
  | "multiKeyConn"
  | "handshakeInTheClear"
  | "measurementSignatureRequested"
  | "endpointInfoSignatureRequested";

/** Context access during a decode: a missing value is a DecodeError naming it, at the current offset. */
export class Need {
  constructor(
    readonly ctx: DecodeContext,
    readonly r: Reader,
    readonly where: string,
  ) {}

  child(name: string): Need {
    return new Need(this.ctx, this.r, `${this.where}.${name}`);
  }

  num(key: SizeKey): number {
    const v = this.ctx[key];
    if (v === undefined) throw new DecodeError(`context.${key}`, this.r.off, `${this.where} needs it`);
    if (!Number.isSafeInteger(v) || v < 0)
      throw new DecodeError(`context.${key}`, this.r.off, `${v} is not usable`);
    return v;
  }

  flag(key: FlagKey): boolean {
    const v = this.ctx[key];
    if (v === undefined) throw new DecodeError(`context.${key}`, this.r.off, `${this.where} needs it`);
    return v;
  }

  /** H when the request asked for a measurement summary hash, else 0. */
  summaryHashSize(): number {
    return this.num("measurementSummaryHashType") === 0 ? 0 : this.num("hashSize");
  }
}

interface EncState {
  where: string;
  /** Length fields waiting for their structure's end: [patch target, start offset]. */
  lengths: [Buffer, number][];
}

export interface Field<M> {
  /** Message keys this field fills (empty for reserved bytes and counts). */
  readonly keys: readonly string[];
  dec(r: Reader, m: Obj, n: Need, s: Scratch): void;
  enc(w: Writer, m: M, e: EncState): void;
}

/** One element of a list: digests, version entries, algorithm tables. */
export interface Elem<E> {
  /** Bytes per element when fixed: a list checks its count against the bytes left before reading. */
  readonly size?: number;
  dec(r: Reader, n: Need, field: string): E;
  enc(w: Writer, v: E, field: string): void;
}

type KeysOf<M, T> = { [K in keyof M]-?: [NonNullable<M[K]>] extends [T] ? K : never }[keyof M] & string;
type Size<M> = number | ((m: M, n: Need) => number);
type Cond<M> = (m: M) => boolean;

const val = (m: unknown, k: string): unknown => (m as Obj)[k];

function lengthOf(v: unknown, field: string): number {
  if (Buffer.isBuffer(v) || Array.isArray(v)) return v.length;
  throw new RangeError(`${field}: missing`);
}

function buf(v: unknown, field: string): Buffer {
  if (Buffer.isBuffer(v)) return v;
  throw new RangeError(`${field}: missing (Buffer expected)`);
}

/** Decodes `schema` into `into` (which may already hold code and version for conditions). */
export function decodeFields(schema: readonly Field<unknown>[], r: Reader, n: Need, into: Obj = {}): Obj {
  const s: Scratch = new Map();
  for (const f of schema) f.dec(r, into, n, s);
  return into;
}

export function encodeFields<M>(schema: readonly Field<M>[], w: Writer, m: M, where: string): void {
  const e: EncState = { where, lengths: [] };
  for (const f of schema) f.enc(w, m, e);
}

/** A structure that fills `input` exactly (bytes left over: DecodeError at `${where}.trailing`). */
export function decodeWhole<M>(schema: readonly Field<M>[], input: Uint8Array, where: string): M {
  const r = new Reader(asBuffer(input));
  const m = decodeFields(schema as readonly Field<unknown>[], r, new Need({}, r, where));
  r.end(`${where}.trailing`);
  return m as unknown as M;
}

/** The bytes of a structure on its own. */
export function encodeWhole<M>(schema: readonly Field<M>[], m: M, where: string): Buffer {
  const w = new Writer();
  encodeFields(schema, w, m, where);
  return w.finish();
}

/** How a protocol whose messages are a header, then a body its message code picks, is laid out. */
export interface CodedProtocol<H, M extends { code: string }> {
  /** Prefix of DecodeError fields, e.g. "tdisp". */
  where: string;
  header: readonly Field<H>[];
  /** The header field holding the code, named in errors. */
  codeField: keyof H & string;
  /** Message codes by name; a name without a schema has no codec. */
  codes: Readonly<Record<string, number>>;
  schemas: Partial<Record<string, readonly Field<never>[]>>;
  /** The header of a message; a decoded message gets the header's fields but the code. */
  headerOf: (m: M, code: number) => H;
}

/**
 * The codec of a coded protocol (TDISP, CXL TSP): the header alone, whole messages (which must fill
 * their input exactly) and their bytes.
 */
export function codedCodec<H, M extends { code: string }>(p: CodedProtocol<H, M>) {
  const names = new Map(Object.entries(p.codes).map(([name, code]) => [code, name]));
  const readHeader = (r: Reader) =>
    decodeFields(p.header as readonly Field<unknown>[], r, new Need({}, r, `${p.where}.header`)) as H;
  return {
    decodeHeader: (input: Uint8Array): H => readHeader(new Reader(asBuffer(input))),
    /** The message name of a code, undefined for an unknown one. */
    nameOf: (code: number): string | undefined => names.get(code),
    decode(input: Uint8Array): M {
      const r = new Reader(asBuffer(input));
      const { [p.codeField]: code, ...fromHeader } = readHeader(r) as Record<string, unknown>;
      const name = names.get(code as number);
      const body = name === undefined ? undefined : p.schemas[name];
      if (!body) {
        const what = name === undefined ? "unknown" : `${name} has no codec`;
        throw new DecodeError(
          `${p.where}.header.${p.codeField}`,
          1,
          `0x${(code as number).toString(16)}: ${what}`,
        );
      }
      const where = `${p.where}.${name}`;
      const m = { code: name, ...fromHeader };
      decodeFields(body as readonly Field<unknown>[], r, new Need({}, r, where), m);
      r.end(`${where}.trailing`);
      return m as unknown as M;
    },
    encode(m: M): Buffer {
      const w = new Writer();
      const where = `${p.where}.${m.code}`;
      encodeFields(p.header, w, p.headerOf(m, p.codes[m.code]!), `${where}.header`);
      encodeFields(p.schemas[m.code] as readonly Field<M>[], w, m, where);
      return w.finish();
    },
  };
}

const uintField = (size: number) => (k: string) => ({
  keys: [k],
  dec(r: Reader, m: Obj, n: Need) {
    m[k] = r.uint(size, `${n.where}.${k}`);
  },
  enc(w: Writer, m: unknown, e: EncState) {
    w.uint(val(m, k), size, `${e.where}.${k}`);
  },
});

const prefixField = (size: number) => (k: string) => ({
  keys: [],
  dec(r: Reader, _m: Obj, n: Need, s: Scratch) {
    s.set(k, r.uint(size, `${n.where}.${k}.length`));
  },
  enc(w: Writer, m: unknown, e: EncState) {
    w.uint(lengthOf(val(m, k), `${e.where}.${k}`), size, `${e.where}.${k}.length`);
  },
});

function prefixed(s: Scratch, k: string): number {
  const v = s.get(k);
  if (v === undefined) throw new Error(`schema bug: no count/length read for ${k}`);
  return v;
}

const impl = {
  u8: uintField(1),
  u16: uintField(2),
  u24: uintField(3),
  u32: uintField(4),
  len8: prefixField(1),
  len16: prefixField(2),
  len24: prefixField(3),
  len32: prefixField(4),

  /** A u16 length immediately followed by that many bytes (opaque data). */
  lp16: (k: string) => ({
    keys: [k],
    dec(r: Reader, m: Obj, n: Need) {
      m[k] = r.take(r.uint(2, `${n.where}.${k}.length`), `${n.where}.${k}`);
    },
    enc(w: Writer, m: unknown, e: EncState) {
      const b = buf(val(m, k), `${e.where}.${k}`);
      w.uint(b.length, 2, `${e.where}.${k}.length`);
      w.bytes(b);
    },
  }),

  reserved: (size: number) => ({
    keys: [],
    dec(r: Reader, _m: Obj, n: Need) {
      r.take(size, `${n.where}.reserved`); // ignored, as receivers must
    },
    enc(w: Writer) {
      w.bytes(Buffer.alloc(size));
    },
  }),

  bytes: (k: string, size: Size<unknown>) => ({
    keys: [k],
    dec(r: Reader, m: Obj, n: Need) {
      const len = typeof size === "number" ? size : size(m, n);
      m[k] = r.take(len, `${n.where}.${k}`);
    },
    enc(w: Writer, m: unknown, e: EncState) {
      const b = buf(val(m, k), `${e.where}.${k}`);
      if (typeof size === "number" && b.length !== size) {
        throw new RangeError(`${e.where}.${k}: ${b.length} bytes, must be ${size}`);
      }
      w.bytes(b);
    },
  }),

  /** Bytes whose length an earlier lenN(k) gave. */
  data: (k: string) => ({
    keys: [k],
    dec(r: Reader, m: Obj, n: Need, s: Scratch) {
      m[k] = r.take(prefixed(s, k), `${n.where}.${k}`);
    },
    enc(w: Writer, m: unknown, e: EncState) {
      w.bytes(buf(val(m, k), `${e.where}.${k}`));
    },
  }),

  u64: (k: string) => ({
    keys: [k],
    dec(r: Reader, m: Obj, n: Need) {
      m[k] = r.u64(`${n.where}.${k}`);
    },
    enc(w: Writer, m: unknown, e: EncState) {
      w.u64(val(m, k), `${e.where}.${k}`);
    },
  }),

  list: <E>(k: string, count: "prefixed" | ((m: unknown, n: Need) => number), elem: Elem<E>) => ({
    keys: [k],
    dec(r: Reader, m: Obj, n: Need, s: Scratch) {
      const c = count === "prefixed" ? prefixed(s, k) : count(m, n);
      if (elem.size !== undefined && c * elem.size > r.remaining) {
        const need = c * elem.size;
        throw new DecodeError(
          `${n.where}.${k}`,
          r.off,
          `${c} entries need ${need} bytes, ${r.remaining} left`,
        );
      }
      const out: E[] = [];
      for (let i = 0; i < c; i++) out.push(elem.dec(r, n, `${n.where}.${k}[${i}]`));
      m[k] = out;
    },
    enc(w: Writer, m: unknown, e: EncState) {
      const v = val(m, k);
      if (!Array.isArray(v)) throw new RangeError(`${e.where}.${k}: missing (array expected)`);
      for (const [i, x] of (v as E[]).entries()) elem.enc(w, x, `${e.where}.${k}[${i}]`);
    },
  }),

  struct: (k: string, schema: readonly Field<unknown>[]) => ({
    keys: [k],
    dec(r: Reader, m: Obj, n: Need) {
      m[k] = decodeFields(schema, r, n.child(k));
    },
    enc(w: Writer, m: unknown, e: EncState) {
      const v = val(m, k);
      if (typeof v !== "object" || v === null) throw new RangeError(`${e.where}.${k}: missing`);
      encodeFields(schema, w, v, `${e.where}.${k}`);
    },
  }),

  /**
   * Fields present when `cond` holds on what was decoded so far (version, params). Encoding checks
   * the message agrees: required when `cond` holds, absent otherwise.
   */
  when: (cond: (m: unknown) => boolean, ...fields: Field<unknown>[]) => {
    const keys = fields.flatMap((f) => f.keys);
    return {
      keys,
      dec(r: Reader, m: Obj, n: Need, s: Scratch) {
        if (cond(m)) for (const f of fields) f.dec(r, m, n, s);
      },
      enc(w: Writer, m: unknown, e: EncState) {
        if (cond(m)) {
          for (const f of fields) f.enc(w, m, e);
          return;
        }
        const extra = keys.filter((k) => val(m, k) !== undefined);
        if (extra.length > 0) throw new RangeError(`${e.where}: ${extra.join(", ")} not allowed here`);
      },
    };
  },

  /** Fields whose presence the negotiated context decides; an encoder writes them iff they are set. */
  ctxWhen: (cond: (m: unknown, n: Need) => boolean, ...fields: Field<unknown>[]) => {
    const keys = fields.flatMap((f) => f.keys);
    return {
      keys,
      dec(r: Reader, m: Obj, n: Need, s: Scratch) {
        if (cond(m, n)) for (const f of fields) f.dec(r, m, n, s);
      },
      enc(w: Writer, m: unknown, e: EncState) {
        const set = keys.filter((k) => val(m, k) !== undefined).length;
        if (set === 0) return;
        if (set !== keys.length) throw new RangeError(`${e.where}: ${keys.join(", ")} go together`);
        for (const f of fields) f.enc(w, m, e);
      },
    };
  },

  /**
   * The rest of the buffer, or the part `measure` says belongs to the message. Left unset when
   * empty; written when set.
   */
  rest: (k: string, measure?: (tail: Buffer, n: Need) => number) => ({
    keys: [k],
    dec(r: Reader, m: Obj, n: Need) {
      const len = measure ? measure(r.buf.subarray(r.off), n) : r.remaining;
      if (len > 0) m[k] = r.take(len, `${n.where}.${k}`);
    },
    enc(w: Writer, m: unknown, e: EncState) {
      const v = val(m, k);
      if (v !== undefined) w.bytes(buf(v, `${e.where}.${k}`));
    },
  }),

  /** A u16 Length counting from `at` bytes before it to lengthEnd(); computed when encoding. */
  lengthStart: (at: number) => ({
    keys: [],
    dec(r: Reader, _m: Obj, n: Need, s: Scratch) {
      s.set("$lengthAt", r.off);
      s.set("$lengthStart", r.off - at);
      s.set("$length", r.uint(2, `${n.where}.length`));
    },
    enc(w: Writer, _m: unknown, e: EncState) {
      const start = w.length - at;
      e.lengths.push([w.bytes(Buffer.alloc(2)), start]);
    },
  }),

  lengthEnd: () => ({
    keys: [],
    dec(r: Reader, _m: Obj, n: Need, s: Scratch) {
      const declared = prefixed(s, "$length");
      const actual = r.off - prefixed(s, "$lengthStart");
      if (declared !== actual) {
        throw new DecodeError(
          `${n.where}.length`,
          prefixed(s, "$lengthAt"),
          `says ${declared} bytes, the fields take ${actual}`,
        );
      }
    },
    enc(w: Writer, _m: unknown, e: EncState) {
      const pending = e.lengths.pop();
      if (!pending) throw new Error("schema bug: lengthEnd without lengthStart");
      const [target, start] = pending;
      const len = w.length - start;
      if (len > 0xffff) throw new RangeError(`${e.where}.length: ${len} does not fit in 16 bits`);
      target.writeUInt16LE(len, 0);
    },
  }),

  /** A u32 kept only when non-zero: a field a later version defines in bytes reserved (zero) before. */
  u32IfSet: (k: string) => ({
    keys: [k],
    dec(r: Reader, m: Obj, n: Need) {
      const v = r.uint(4, `${n.where}.${k}`);
      if (v !== 0) m[k] = v;
    },
    enc(w: Writer, m: unknown, e: EncState) {
      w.uint(val(m, k) ?? 0, 4, `${e.where}.${k}`);
    },
  }),

  /** One of two layouts of the same keys, e.g. a field that grew from 16 to 32 bits in a version. */
  either: (cond: (m: unknown) => boolean, yes: Field<unknown>[], no: Field<unknown>[]) => ({
    keys: [...new Set([...yes, ...no].flatMap((f) => f.keys))],
    dec(r: Reader, m: Obj, n: Need, s: Scratch) {
      for (const f of cond(m) ? yes : no) f.dec(r, m, n, s);
    },
    enc(w: Writer, m: unknown, e: EncState) {
      for (const f of cond(m) ? yes : no) f.enc(w, m, e);
    },
  }),

  /**
   * A one-byte bit field of which only `bit` is kept, as `k: true` when set (when `cond` holds on
   * what was decoded so far; the byte is reserved otherwise). Unset means clear.
   */
  flagByte: (k: string, bit: number, cond: (m: unknown) => boolean) => ({
    keys: [k],
    dec(r: Reader, m: Obj, n: Need) {
      const v = r.uint(1, `${n.where}.${k}`);
      if (cond(m) && (v & bit) !== 0) m[k] = true;
    },
    enc(w: Writer, m: unknown, e: EncState) {
      if (val(m, k) === true && !cond(m)) throw new RangeError(`${e.where}.${k}: not allowed here`);
      w.uint(val(m, k) === true ? bit : 0, 1, `${e.where}.${k}`);
    },
  }),

  /** A decode-time consistency check on the fields so far. */
  check: (fn: (m: unknown, n: Need) => void) => ({
    keys: [],
    dec(_r: Reader, m: Obj, n: Need) {
      fn(m, n);
    },
    enc() {},
  }),
};

/** The field builders, typed so that each key names a property of M of the right type. */
export interface Builder<M> {
  u8(k: KeysOf<M, number>): Field<M>;
  u16(k: KeysOf<M, number>): Field<M>;
  u24(k: KeysOf<M, number>): Field<M>;
  u32(k: KeysOf<M, number>): Field<M>;
  u64(k: KeysOf<M, bigint>): Field<M>;
  /** A count or byte length of k, read/written here; k itself comes later via data() or list(). */
  len8(k: KeysOf<M, Buffer | readonly unknown[]>): Field<M>;
  len16(k: KeysOf<M, Buffer | readonly unknown[]>): Field<M>;
  len24(k: KeysOf<M, Buffer | readonly unknown[]>): Field<M>;
  len32(k: KeysOf<M, Buffer | readonly unknown[]>): Field<M>;
  lp16(k: KeysOf<M, Buffer>): Field<M>;
  reserved(size: number): Field<M>;
  bytes(k: KeysOf<M, Buffer>, size: Size<M>): Field<M>;
  data(k: KeysOf<M, Buffer>): Field<M>;
  list<E>(
    k: KeysOf<M, readonly E[]>,
    count: "prefixed" | ((m: M, n: Need) => number),
    elem: Elem<E>,
  ): Field<M>;
  struct<K extends KeysOf<M, object>>(k: K, schema: readonly Field<NonNullable<M[K]>>[]): Field<M>;
  when(cond: Cond<M>, ...fields: Field<M>[]): Field<M>;
  ctxWhen(cond: (m: M, n: Need) => boolean, ...fields: Field<M>[]): Field<M>;
  rest(k: KeysOf<M, Buffer>, measure?: (tail: Buffer, n: Need) => number): Field<M>;
  lengthStart(at: number): Field<M>;
  lengthEnd(): Field<M>;
  check(fn: (m: M, n: Need) => void): Field<M>;
  either(cond: Cond<M>, yes: Field<M>[], no: Field<M>[]): Field<M>;
  u32IfSet(k: KeysOf<M, number>): Field<M>;
  flagByte(k: KeysOf<M, boolean>, bit: number, cond: Cond<M>): Field<M>;
}

/** Builds a schema for M: `schema<Foo>((f) => [f.u8("a"), ...])`. */
export function schema<M>(build: (f: Builder<M>) => Field<M>[]): Field<M>[] {
  return build(impl as unknown as Builder<M>);
}

// ---- list elements ----------------------------------------------------------------------------

export const u8Elem: Elem<number> = {
  dec: (r, _n, field) => r.uint(1, field),
  enc: (w, v, field) => w.uint(v, 1, field),
};

export const u16Elem: Elem<number> = {
  dec: (r, _n, field) => r.uint(2, field),
  enc: (w, v, field) => w.uint(v, 2, field),
};

export const u32Elem: Elem<number> = {
  size: 4,
  dec: (r, _n, field) => r.uint(4, field),
  enc: (w, v, field) => w.uint(v, 4, field),
};

/** Fixed-size byte strings whose size the context gives (e.g. digests of H bytes). */
export const bytesElem = (size: (n: Need) => number): Elem<Buffer> => ({
  dec: (r, n, field) => r.take(size(n), field),
  enc: (w, v, field) => w.bytes(buf(v, field)),
});

/** A struct per element; `size` when every element has the same byte length. */
export const structElem = <S>(fields: readonly Field<S>[], size?: number): Elem<S> => ({
  size,
  dec: (r, n, field) => decodeFields(fields as readonly Field<unknown>[], r, new Need(n.ctx, r, field)) as S,
  enc: (w, v, field) => encodeFields(fields, w, v, field),
});
