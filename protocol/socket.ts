/**
 * DMTF spdm-emu socket ("platform") framing (spdm-emu 85436d53 spdm_emu/spdm_emu_common/command.h):
 * a 12-byte big-endian header (command, transport type, payload size) and the payload. Used by
 * spdm_requester_emu, spdm_responder_emu and QEMU's spdm-socket; our mailbox wire and, with its own
 * opcodes, the control wire (control.ts).
 */
// Imported: Node 20's global Buffer is an accessor, paid on every use on the per-frame path.
import { Buffer } from "node:buffer";
import { DOE_MAX_BYTES } from "./doe.js";
import { DecodeError } from "./errors.js";

export const SocketCommand = {
  NORMAL: 0x0001,
  STORAGE_IF_SEND: 0x0002,
  STORAGE_IF_RECV: 0x0003,
  STORAGE_ACK_STATUS: 0x0004,
  OOB_ENCAP_KEY_UPDATE: 0x8001,
  OOB_ENCAP_ENDPOINT_INFO: 0x8002,
  CONTINUE: 0xfffd,
  SHUTDOWN: 0xfffe,
  UNKNOWN: 0xffff,
  TEST: 0xdead,
} as const;
export type SocketCommandName = keyof typeof SocketCommand;

export const TransportType = {
  NONE: 0x00,
  MCTP: 0x01,
  PCI_DOE: 0x02,
  TCP: 0x03,
} as const;
export type TransportTypeName = keyof typeof TransportType;

function nameOf<T extends Record<string, number>>(table: T, value: number): string {
  for (const [name, v] of Object.entries(table)) if (v === value) return name;
  return `0x${value.toString(16)}`;
}
export const commandName = (value: number): string => nameOf(SocketCommand, value);
export const transportName = (value: number): string => nameOf(TransportType, value);

/**
 * OOB_ENCAP_KEY_UPDATE's payload: the session ID, 4 bytes in host order (LE), or nothing, read as
 * session 0. The command is echoed with no payload.
 */
export function encodeEncapKeyUpdate(sessionId: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32LE(sessionId);
  return payload;
}

export const decodeEncapKeyUpdate = (payload: Buffer): number =>
  payload.length === 4 ? payload.readUInt32LE(0) : 0;

/** "Client Hello!" and "Server Hello!" with their NUL, as spdm-emu sends them (14 bytes each). */
export const TEST_CLIENT_HELLO = Buffer.from("Client Hello!\0", "latin1");
export const TEST_SERVER_HELLO = Buffer.from("Server Hello!\0", "latin1");

export const FRAME_HEADER_BYTES = 12;
/** A whole DOE object plus slack, the largest payload accepted by default. */
export const DEFAULT_MAX_FRAME_PAYLOAD = DOE_MAX_BYTES + 8;

export interface FrameHeader {
  command: number;
  transport: number;
  payloadSize: number;
}

export interface SocketFrame {
  command: number;
  transport: number;
  payload: Buffer;
}

/** Big-endian u32 at `at`, read byte by byte: no DataView or view object per frame. */
const u32be = (b: Uint8Array, at: number) =>
  ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;

/** Read directly, not with binary-parser: this runs for every frame (see decodeDoeHeader). */
export function decodeFrameHeader(buf: Uint8Array, offset = 0): FrameHeader {
  if (buf.length - offset < FRAME_HEADER_BYTES) {
    throw new DecodeError(
      "frame.header",
      offset,
      `needs ${FRAME_HEADER_BYTES} bytes, ${buf.length - offset} left`,
    );
  }
  return {
    command: u32be(buf, offset),
    transport: u32be(buf, offset + 4),
    payloadSize: u32be(buf, offset + 8),
  };
}

/** The header and payload in one buffer, so a frame goes out in a single write. */
export function encodeFrame(frame: SocketFrame): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + frame.payload.length);
  out.writeUInt32BE(frame.command >>> 0, 0);
  out.writeUInt32BE(frame.transport >>> 0, 4);
  out.writeUInt32BE(frame.payload.length, 8);
  out.set(frame.payload, FRAME_HEADER_BYTES); // TypedArray set: Buffer's copy crosses into C++
  return out;
}

/** Decodes exactly one whole frame (header + payload, nothing after it). */
export function decodeFrame(buf: Uint8Array): SocketFrame {
  const h = decodeFrameHeader(buf);
  if (buf.length !== FRAME_HEADER_BYTES + h.payloadSize) {
    throw new DecodeError(
      "frame.payloadSize",
      8,
      `says ${h.payloadSize} bytes, ${buf.length - FRAME_HEADER_BYTES} follow`,
    );
  }
  return {
    command: h.command,
    transport: h.transport,
    payload: Buffer.from(buf.subarray(FRAME_HEADER_BYTES)),
  };
}

/**
 * Reassembles frames from a TCP byte stream: frames may be split at any byte and several may
 * arrive in one chunk. The payload size is checked against the bound before anything is allocated
 * for it; past a DecodeError the stream is unusable and the connection should be closed.
 */
export class FrameDecoder {
  /** Bytes received and not yet returned: chunks[0] from `offset` on, then the other chunks whole. */
  private chunks: Buffer[] = [];
  private offset = 0;
  private buffered = 0;
  private header: FrameHeader | undefined;

  constructor(readonly maxPayload = DEFAULT_MAX_FRAME_PAYLOAD) {}

  /** Bytes received but not yet part of a returned frame. */
  get pending(): number {
    return this.buffered;
  }

  /**
   * Feeds received bytes; the decoder keeps (does not copy) `chunk`, so it must not be reused. A
   * frame within one chunk (the usual case) is read in place and its payload is a view of the chunk.
   */
  push(chunk: Uint8Array): SocketFrame[] {
    if (chunk.length > 0) {
      this.chunks.push(
        Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
      );
      this.buffered += chunk.length;
    }
    const frames: SocketFrame[] = [];
    for (;;) {
      if (!this.header) {
        if (this.buffered < FRAME_HEADER_BYTES) break;
        const first = this.chunks[0]!;
        let header: FrameHeader;
        if (first.length - this.offset >= FRAME_HEADER_BYTES) {
          header = decodeFrameHeader(first, this.offset);
          this.consume(FRAME_HEADER_BYTES);
        } else header = decodeFrameHeader(this.take(FRAME_HEADER_BYTES));
        if (header.payloadSize > this.maxPayload) {
          throw new DecodeError(
            "frame.payloadSize",
            8,
            `${header.payloadSize} bytes exceeds the bound of ${this.maxPayload}`,
          );
        }
        this.header = header;
      }
      if (this.buffered < this.header.payloadSize) break;
      const { command, transport, payloadSize } = this.header;
      frames.push({ command, transport, payload: this.take(payloadSize) });
      this.header = undefined;
    }
    return frames;
  }

  /** Drops n bytes (n <= what chunks[0] has left). */
  private consume(n: number): void {
    this.offset += n;
    this.buffered -= n;
    if (this.offset === this.chunks[0]!.length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }

  /** Removes and returns the next n buffered bytes (n <= buffered), copying only across chunks. */
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    // Within one chunk: a view, no copy (push() takes ownership of the chunks it is given).
    if (first.length - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n);
      this.consume(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    for (let filled = 0; filled < n; ) {
      const c = this.chunks[0]!;
      const used = Math.min(c.length - this.offset, n - filled);
      c.copy(out, filled, this.offset, this.offset + used);
      filled += used;
      this.consume(used);
    }
    return out;
  }
}
