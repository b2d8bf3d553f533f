/**
 * The control wire (docs/ARCHITECTURE.md): config-space access by routing ID, the identity of a
 * device (which mailbox endpoint sits behind each DOE capability) and the hotplug announce. It
 * rides the spdm-emu frame codec of socket.ts: `command` is a control opcode, `transport` a request
 * tag the reply echoes, the payload the message body below. Every body integer is little-endian.
 *
 * Bodies, fields in order:
 *   CFG_READ       rid u16 | offset u16 | width u8                         → CFG_READ_RSP value u32
 *   CFG_WRITE      rid u16 | offset u16 | width u8 | value u32             → CFG_WRITE_RSP (empty)
 *   CFG_BATCH      count u16 | count × (op u8 | rid u16 | offset u16 | width u8 | n u16 | value u32)
 *                  op 0 reads n registers of `width` from offset up (value 0), op 1 writes value
 *                  once (n 1); run in order, all checked first   → CFG_BATCH_RSP every read's bytes
 *                  in order, little-endian (a scan reads a whole config space in one round trip)
 *   IDENTITY       (empty)                                                 → IDENTITY_RSP identity
 *   ANNOUNCE       control host str8 | control port u16 | identity         (device → host, no reply)
 *   FAULT_ADD      rule json16                                             → FAULT_ADD_RSP id u32
 *   FAULT_LIST     (empty)                                                 → FAULT_LIST_RSP rules json16
 *   FAULT_CLEAR    (empty)                                                 → FAULT_CLEAR_RSP cleared u16
 *   ERROR          code u16 | text str16                                   (reply to a bad request)
 *   identity       name str8 | bus u8 | count u16 | count × (rid u16 | doeCapOffset u16 |
 *                  mailbox u8 | port u16 | host str8)
 * str8 / str16 = UTF-8 bytes after a u8 / u16 byte count; json16 = a str16 holding JSON (a fault
 * rule is an object the device validates, src/device/faults.ts; a rule list is an array of them).
 */
import { Parser } from "binary-parser";
import { DecodeError, requireBytes } from "./errors.js";
import { CONFIG_SPACE_BYTES, type ConfigWidth } from "./pci.js";
import type { SocketFrame } from "./socket.js";

/**
 * Opcodes, in a range of their own so a control-wire frame is never mistaken for a mailbox-wire
 * one; a reply is its request | 0x80.
 */
export const ControlCommand = {
  CFG_READ: 0x4301,
  CFG_WRITE: 0x4302,
  IDENTITY: 0x4303,
  ANNOUNCE: 0x4304,
  FAULT_ADD: 0x4305,
  FAULT_LIST: 0x4306,
  FAULT_CLEAR: 0x4307,
  CFG_BATCH: 0x4308,
  CFG_READ_RSP: 0x4381,
  CFG_WRITE_RSP: 0x4382,
  IDENTITY_RSP: 0x4383,
  FAULT_ADD_RSP: 0x4385,
  FAULT_LIST_RSP: 0x4386,
  FAULT_CLEAR_RSP: 0x4387,
  CFG_BATCH_RSP: 0x4388,
  ERROR: 0x43ff,
} as const;

/** Largest control-wire payload; an identity of 8 functions × a few mailboxes is a few KiB. */
export const CONTROL_MAX_PAYLOAD = 64 * 1024;

export const ControlErrorCode = {
  MALFORMED: 1,
  /** A well-formed message that is not a request this endpoint serves. */
  UNEXPECTED: 2,
  BAD_WIDTH: 3,
  MISALIGNED: 4,
  OUT_OF_RANGE: 5,
  INTERNAL: 6,
  /** A fault rule the device does not accept. */
  BAD_FAULT: 7,
} as const;

/** A request refused with a code: thrown by the device model, sent as ERROR, rethrown by the client. */
export class ControlError extends Error {
  override readonly name = "ControlError";
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** The PCI rule for a config access: width 1, 2 or 4, naturally aligned, inside the 4 KiB space. */
export function checkConfigAccess(offset: number, width: number): asserts width is ConfigWidth {
  if (width !== 1 && width !== 2 && width !== 4) {
    throw new ControlError(ControlErrorCode.BAD_WIDTH, `width ${width} is not 1, 2 or 4`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + width > CONFIG_SPACE_BYTES) {
    throw new ControlError(
      ControlErrorCode.OUT_OF_RANGE,
      `offset 0x${offset.toString(16)} is outside config space`,
    );
  }
  if (offset % width !== 0) {
    throw new ControlError(
      ControlErrorCode.MISALIGNED,
      `offset 0x${offset.toString(16)} is not aligned to width ${width}`,
    );
  }
}

export interface NetAddress {
  host: string;
  port: number;
}

export interface MailboxIdentity extends NetAddress {
  /** Routing ID of the function holding the DOE capability. */
  rid: number;
  /** Config-space offset of the DOE extended capability. */
  doeCapOffset: number;
  /** Index of the mailbox among its function's mailboxes. */
  mailbox: number;
}

export interface DeviceIdentity {
  name: string;
  bus: number;
  mailboxes: MailboxIdentity[];
}

/** One access of a CFG_BATCH: `count` consecutive registers read, or one written. */
export type ConfigAccess =
  | { op: "read"; rid: number; offset: number; width: number; count: number }
  | { op: "write"; rid: number; offset: number; width: number; value: number };

export type ControlMessage =
  | { kind: "cfgRead"; rid: number; offset: number; width: number }
  | { kind: "cfgBatch"; accesses: ConfigAccess[] }
  | { kind: "cfgBatchRsp"; data: Buffer }
  | { kind: "cfgReadRsp"; value: number }
  | { kind: "cfgWrite"; rid: number; offset: number; width: number; value: number }
  | { kind: "cfgWriteRsp" }
  | { kind: "identity" }
  | { kind: "identityRsp"; identity: DeviceIdentity }
  | { kind: "announce"; control: NetAddress; identity: DeviceIdentity }
  | { kind: "faultAdd"; rule: Record<string, unknown> }
  | { kind: "faultAddRsp"; id: number }
  | { kind: "faultList" }
  | { kind: "faultListRsp"; rules: Record<string, unknown>[] }
  | { kind: "faultClear" }
  | { kind: "faultClearRsp"; cleared: number }
  | { kind: "error"; code: number; message: string };

export type ControlKind = ControlMessage["kind"];

const COMMAND_OF: Record<ControlKind, number> = {
  cfgRead: ControlCommand.CFG_READ,
  cfgReadRsp: ControlCommand.CFG_READ_RSP,
  cfgWrite: ControlCommand.CFG_WRITE,
  cfgWriteRsp: ControlCommand.CFG_WRITE_RSP,
  identity: ControlCommand.IDENTITY,
  identityRsp: ControlCommand.IDENTITY_RSP,
  announce: ControlCommand.ANNOUNCE,
  faultAdd: ControlCommand.FAULT_ADD,
  faultAddRsp: ControlCommand.FAULT_ADD_RSP,
  faultList: ControlCommand.FAULT_LIST,
  faultListRsp: ControlCommand.FAULT_LIST_RSP,
  faultClear: ControlCommand.FAULT_CLEAR,
  faultClearRsp: ControlCommand.FAULT_CLEAR_RSP,
  cfgBatch: ControlCommand.CFG_BATCH,
  cfgBatchRsp: ControlCommand.CFG_BATCH_RSP,
  error: ControlCommand.ERROR,
};

const cfgReadParser = new Parser().endianness("little").uint16("rid").uint16("offset").uint8("width");
const cfgWriteParser = new Parser()
  .endianness("little")
  .uint16("rid")
  .uint16("offset")
  .uint8("width")
  .uint32("value");
const CFG_READ_BYTES = 5;
const CFG_WRITE_BYTES = 9;
const CFG_BATCH_ENTRY_BYTES = 12;

// ---- encoding ------------------------------------------------------------------------------

/** Appends little-endian fields; strings are length-prefixed UTF-8 with their bound checked. */
class Writer {
  private readonly parts: Buffer[] = [];

  u8(v: number): this {
    return this.push(1, (b) => b.writeUInt8(v));
  }
  u16(v: number): this {
    return this.push(2, (b) => b.writeUInt16LE(v));
  }
  u32(v: number): this {
    return this.push(4, (b) => b.writeUInt32LE(v >>> 0));
  }
  str(text: string, lengthBytes: 1 | 2, what: string): this {
    const bytes = Buffer.from(text, "utf8");
    const max = lengthBytes === 1 ? 0xff : 0xffff;
    if (bytes.length > max)
      throw new RangeError(`${what} is ${bytes.length} bytes of UTF-8, at most ${max} fit`);
    if (lengthBytes === 1) this.u8(bytes.length);
    else this.u16(bytes.length);
    this.parts.push(bytes);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
  private push(n: number, write: (b: Buffer) => void): this {
    const b = Buffer.alloc(n);
    write(b);
    this.parts.push(b);
    return this;
  }
}

function writeIdentity(w: Writer, id: DeviceIdentity): Writer {
  w.str(id.name, 1, "device name").u8(id.bus).u16(id.mailboxes.length);
  for (const m of id.mailboxes)
    w.u16(m.rid).u16(m.doeCapOffset).u8(m.mailbox).u16(m.port).str(m.host, 1, "mailbox host");
  return w;
}

function encodeBody(msg: ControlMessage): Buffer {
  const w = new Writer();
  switch (msg.kind) {
    case "cfgRead":
      return w.u16(msg.rid).u16(msg.offset).u8(msg.width).done();
    case "cfgReadRsp":
      return w.u32(msg.value).done();
    case "cfgWrite":
      return w.u16(msg.rid).u16(msg.offset).u8(msg.width).u32(msg.value).done();
    case "cfgBatch": {
      w.u16(msg.accesses.length);
      for (const a of msg.accesses) {
        const [op, n, value] = a.op === "read" ? [0, a.count, 0] : [1, 1, a.value];
        w.u8(op).u16(a.rid).u16(a.offset).u8(a.width).u16(n).u32(value);
      }
      return w.done();
    }
    case "cfgBatchRsp":
      return msg.data;
    case "cfgWriteRsp":
    case "identity":
    case "faultList":
    case "faultClear":
      return w.done();
    case "identityRsp":
      return writeIdentity(w, msg.identity).done();
    case "announce":
      return writeIdentity(
        w.str(msg.control.host, 1, "control host").u16(msg.control.port),
        msg.identity,
      ).done();
    case "faultAdd":
      return w.str(JSON.stringify(msg.rule), 2, "fault rule").done();
    case "faultAddRsp":
      return w.u32(msg.id).done();
    case "faultListRsp":
      return w.str(JSON.stringify(msg.rules), 2, "fault rules").done();
    case "faultClearRsp":
      return w.u16(msg.cleared).done();
    case "error":
      return w.u16(msg.code).str(msg.message, 2, "error text").done();
  }
}

/** The frame carrying `msg`; `tag` goes in the transport field and comes back in the reply. */
export function encodeControlFrame(tag: number, msg: ControlMessage): SocketFrame {
  return { command: COMMAND_OF[msg.kind], transport: tag >>> 0, payload: encodeBody(msg) };
}

// ---- decoding ------------------------------------------------------------------------------

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads fields in order, checking the bytes are there before each read. */
class Reader {
  offset = 0;
  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  u8(field: string): number {
    requireBytes(this.buf, this.offset, 1, field);
    return this.buf.readUInt8(this.offset++);
  }
  u16(field: string): number {
    requireBytes(this.buf, this.offset, 2, field);
    const v = this.buf.readUInt16LE(this.offset);
    this.offset += 2;
    return v;
  }
  str(lengthBytes: 1 | 2, field: string): string {
    const at = this.offset;
    const n = lengthBytes === 1 ? this.u8(field) : this.u16(field);
    requireBytes(this.buf, this.offset, n, field);
    const bytes = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    try {
      return utf8.decode(bytes);
    } catch {
      throw new DecodeError(field, at, "is not valid UTF-8");
    }
  }
  /** A json16 field holding an object (or, with `array`, an array of objects). */
  json(field: string, array: true): Record<string, unknown>[];
  json(field: string, array?: false): Record<string, unknown>;
  json(field: string, array = false): Record<string, unknown> | Record<string, unknown>[] {
    const at = this.offset;
    const text = this.str(2, field);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new DecodeError(field, at, "is not valid JSON");
    }
    const isObject = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
    const ok = array ? Array.isArray(value) && value.every(isObject) : isObject(value);
    if (!ok)
      throw new DecodeError(field, at, array ? "is not a JSON array of objects" : "is not a JSON object");
    return value as Record<string, unknown> | Record<string, unknown>[];
  }
  /** Throws unless every byte was consumed: trailing bytes mean the peer speaks another layout. */
  end(what: string): void {
    if (this.offset !== this.buf.length) {
      throw new DecodeError(what, this.offset, `${this.buf.length - this.offset} trailing bytes`);
    }
  }
}

/** Smallest encoded mailbox entry: rid, offset, index, port, empty host. */
const MIN_MAILBOX_ENTRY_BYTES = 2 + 2 + 1 + 2 + 1;

function readIdentity(r: Reader): DeviceIdentity {
  const name = r.str(1, "identity.name");
  const bus = r.u8("identity.bus");
  const countAt = r.offset;
  const count = r.u16("identity.count");
  // Checked before the loop so a huge count costs nothing.
  if (count * MIN_MAILBOX_ENTRY_BYTES > r.remaining) {
    throw new DecodeError("identity.count", countAt, `${count} mailboxes cannot fit in ${r.remaining} bytes`);
  }
  const mailboxes: MailboxIdentity[] = [];
  for (let i = 0; i < count; i++) {
    const f = `identity.mailboxes[${i}]`;
    const rid = r.u16(`${f}.rid`);
    const doeCapOffset = r.u16(`${f}.doeCapOffset`);
    const mailbox = r.u8(`${f}.mailbox`);
    const port = r.u16(`${f}.port`);
    const host = r.str(1, `${f}.host`);
    mailboxes.push({ rid, doeCapOffset, mailbox, host, port });
  }
  return { name, bus, mailboxes };
}

function readBatch(p: Buffer): ConfigAccess[] {
  requireBytes(p, 0, 2, "cfgBatch.count");
  const count = p.readUInt16LE(0);
  exactly(p, 2 + count * CFG_BATCH_ENTRY_BYTES, "cfgBatch");
  const accesses: ConfigAccess[] = [];
  for (let i = 0, at = 2; i < count; i++, at += CFG_BATCH_ENTRY_BYTES) {
    const [op, rid, offset, width, n] = [
      p.readUInt8(at),
      p.readUInt16LE(at + 1),
      p.readUInt16LE(at + 3),
      p.readUInt8(at + 5),
      p.readUInt16LE(at + 6),
    ];
    if (op === 0 && n > 0) accesses.push({ op: "read", rid, offset, width, count: n });
    else if (op === 1 && n === 1)
      accesses.push({ op: "write", rid, offset, width, value: p.readUInt32LE(at + 8) });
    else
      throw new DecodeError(
        `cfgBatch.accesses[${i}]`,
        at,
        `op ${op} with n ${n} is not a read (0, n >= 1) or a write (1, n 1)`,
      );
  }
  return accesses;
}

function exactly(payload: Buffer, n: number, field: string): void {
  if (payload.length !== n) throw new DecodeError(field, 0, `body is ${payload.length} bytes, not ${n}`);
}

type BodilessKind = "cfgWriteRsp" | "identity" | "faultList" | "faultClear";
/** The messages without a body, by opcode. */
const BODILESS = new Map<number, BodilessKind>([
  [ControlCommand.CFG_WRITE_RSP, "cfgWriteRsp"],
  [ControlCommand.IDENTITY, "identity"],
  [ControlCommand.FAULT_LIST, "faultList"],
  [ControlCommand.FAULT_CLEAR, "faultClear"],
]);

/** Decodes a control-wire frame's message (the tag is `frame.transport`); DecodeError if malformed. */
export function decodeControlFrame(frame: SocketFrame): ControlMessage {
  const p = frame.payload;
  const bodiless = BODILESS.get(frame.command);
  if (bodiless) {
    exactly(p, 0, bodiless);
    return { kind: bodiless };
  }
  const r = new Reader(p);
  let msg: ControlMessage;
  switch (frame.command) {
    case ControlCommand.CFG_READ: {
      exactly(p, CFG_READ_BYTES, "cfgRead");
      const b = cfgReadParser.parse(p) as { rid: number; offset: number; width: number };
      return { kind: "cfgRead", rid: b.rid, offset: b.offset, width: b.width };
    }
    case ControlCommand.CFG_WRITE: {
      exactly(p, CFG_WRITE_BYTES, "cfgWrite");
      const b = cfgWriteParser.parse(p) as { rid: number; offset: number; width: number; value: number };
      return { kind: "cfgWrite", rid: b.rid, offset: b.offset, width: b.width, value: b.value };
    }
    case ControlCommand.CFG_BATCH:
      return { kind: "cfgBatch", accesses: readBatch(p) };
    case ControlCommand.CFG_BATCH_RSP:
      return { kind: "cfgBatchRsp", data: p };
    case ControlCommand.CFG_READ_RSP:
      exactly(p, 4, "cfgReadRsp");
      return { kind: "cfgReadRsp", value: p.readUInt32LE(0) };
    case ControlCommand.IDENTITY_RSP:
      msg = { kind: "identityRsp", identity: readIdentity(r) };
      break;
    case ControlCommand.ANNOUNCE: {
      const host = r.str(1, "announce.control.host");
      const port = r.u16("announce.control.port");
      msg = { kind: "announce", control: { host, port }, identity: readIdentity(r) };
      break;
    }
    case ControlCommand.FAULT_ADD:
      msg = { kind: "faultAdd", rule: r.json("faultAdd.rule") };
      break;
    case ControlCommand.FAULT_ADD_RSP:
      exactly(p, 4, "faultAddRsp");
      return { kind: "faultAddRsp", id: p.readUInt32LE(0) };
    case ControlCommand.FAULT_LIST_RSP:
      msg = { kind: "faultListRsp", rules: r.json("faultListRsp.rules", true) };
      break;
    case ControlCommand.FAULT_CLEAR_RSP:
      exactly(p, 2, "faultClearRsp");
      return { kind: "faultClearRsp", cleared: p.readUInt16LE(0) };
    case ControlCommand.ERROR: {
      const code = r.u16("error.code");
      msg = { kind: "error", code, message: r.str(2, "error.text") };
      break;
    }
    default:
      throw new DecodeError("control.command", 0, `0x${frame.command.toString(16)} is not a control opcode`);
  }
  r.end(msg.kind);
  return msg;
}
