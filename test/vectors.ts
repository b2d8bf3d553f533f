/**
 * Readers for the DMTF spdm-emu recordings in test/fixtures/vectors (see its README.md).
 * `readDecoded` parses `<capture>_decoded.txt`, `readSecrets` the `name = hex` lines of
 * `<capture>_secrets.txt`. Set DOE_EMU_VECTORS to read another folder.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { decodeSpdmWithLength } from "../protocol/spdm/codec.js";
import { type DecodeContext, negotiatedContext } from "../protocol/spdm/context.js";
import type { SpdmMessage } from "../protocol/spdm/messages.js";
import {
  AEAD,
  type AeadAlgo,
  ASYM,
  type AsymAlgo,
  DHE,
  type DheAlgo,
  HASH,
  type HashAlgo,
} from "../src/crypto/suites.js";

export const VECTORS_DIR =
  process.env["DOE_EMU_VECTORS"] ?? fileURLToPath(new URL("./fixtures/vectors/", import.meta.url));

export const CAPTURES = [
  "spdm12_keyex",
  "spdm13_keyex",
  "spdm12_psk",
  "spdm13_psk",
  "spdm13_p256_auth",
  "spdm13_app",
] as const;
export type Capture = (typeof CAPTURES)[number];
/** Captures that open sessions and so have a `_secrets.txt`. */
export const SESSION_CAPTURES = CAPTURES.filter((c) => c !== "spdm13_p256_auth");

export interface SecuredInfo {
  sessionId: number;
  /** The record's Length field. */
  len16: number;
  /** DOE padding after the record. */
  pad: number;
  seq: number;
  /** Key set in the secrets file, e.g. "session1.ku1.response_data" (append _key / _iv). */
  keys: string;
}

export interface Frame {
  index: number;
  dir: "C2S" | "S2C";
  command: string;
  /** Socket payload size. */
  size: number;
  /** Raw payload of non-NORMAL frames (TEST, SHUTDOWN). */
  raw?: Buffer;
  doeType?: number;
  /** DOE padding after a cleartext SPDM message. */
  pad?: number;
  secured?: SecuredInfo;
  /** libspdm's session id for the message, 0 outside a session. */
  spdmSession?: number;
  /** Message name without the SPDM_ prefix, e.g. "KEY_EXCHANGE_RSP". */
  name?: string;
  /** What the recorder's VDM(...) says a vendor-defined message carries. */
  vdm?: VdmLabel;
  /** The exact SPDM message (decrypted for secured records). */
  plain?: Buffer;
  /** The whole DOE object as sent. */
  wire?: Buffer;
}

/** E.g. "VDM(std=0003 vid=0001 len16=17 PCI TDISP v10 GET_VERSION)", libspdm's message names. */
export interface VdmLabel {
  family: "PCI" | "CXL";
  protocol: "IDE_KM" | "TDISP" | "TSP";
  name: string;
}

/** An SPDM message frame: one that has a name and plain bytes. */
export type MessageFrame = Frame & { name: string; plain: Buffer; spdmSession: number };

export interface Negotiated {
  version: number;
  hash: HashAlgo;
  asym: AsymAlgo;
  dhe: DheAlgo;
  aead: AeadAlgo;
  /** OtherParamsSelection bit 4 (1.3 MULTI_KEY_CONN). */
  multiKey: boolean;
}

export interface DecodedCapture {
  frames: Frame[];
  messages: MessageFrame[];
  negotiated: Negotiated;
}

const keyValues = (text: string) =>
  Object.fromEntries([...text.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!] as const));

function parseFrame(line: string): Frame {
  const [head = "", ...parts] = line.split(" | ");
  const [index, , dir, command, , size] = head.split(" ");
  const f: Frame = {
    index: Number(index),
    dir: dir as Frame["dir"],
    command: command ?? "",
    size: Number(size?.split("=")[1]),
  };
  for (const part of parts) {
    const kv = keyValues(part);
    if (part.startsWith("DOE ")) f.doeType = Number(kv["type"]);
    else if (part.startsWith("pad=")) f.pad = Number(kv["pad"]);
    else if (part.startsWith("SECURED ")) {
      f.secured = {
        sessionId: Number.parseInt(kv["sid"]!, 16),
        len16: Number(kv["len16"]),
        pad: Number(kv["pad"]),
        seq: Number(kv["seq"]),
        keys: kv["keys"]!,
      };
    } else if (part.startsWith("SPDM[")) {
      const m = /^SPDM\[([0-9a-f]+)\] SPDM_(\S+)/.exec(part);
      f.spdmSession = Number.parseInt(m![1]!, 16);
      f.name = m![2]!;
      const vdm = /VDM\(std=\S+ vid=\S+ len16=\d+ (PCI|CXL) (IDE_KM|TDISP|TSP) .*?(\S+)\)/.exec(part);
      if (vdm) f.vdm = { family: vdm[1], protocol: vdm[2], name: vdm[3] } as VdmLabel;
    } else if (part.startsWith("plain=")) f.plain = Buffer.from(part.slice(6), "hex");
    else if (part.startsWith("wire=")) f.wire = Buffer.from(part.slice(5), "hex");
    else if (/^[0-9a-f]*$/.test(part)) f.raw = Buffer.from(part, "hex");
  }
  return f;
}

/** The recordings name algorithms as spdm-emu does, and so do our suites. */
function suiteName<T extends object>(table: T, name: string | undefined): keyof T {
  if (name === undefined || !(name in table)) throw new Error(`recording names an unknown algorithm ${name}`);
  return name as keyof T;
}

function parseNegotiated(line: string): Negotiated {
  const kv = Object.fromEntries(
    line
      .replace(/^# negotiated: /, "")
      .split("; ")
      .map((p) => p.split(" ") as [string, string]),
  );
  const [maj, min] = kv["SPDM"]!.split(".").map(Number);
  return {
    version: (maj! << 4) | min!,
    // The recordings spell the base hash "SHA-384", every other algorithm as spdm-emu does.
    hash: suiteName(HASH, kv["BaseHash"]?.replace("-", "_")),
    asym: suiteName(ASYM, kv["BaseAsym"]),
    dhe: suiteName(DHE, kv["DHE"]),
    aead: suiteName(AEAD, kv["AEAD"]),
    multiKey: (Number.parseInt(kv["OtherParamsSelection"]!, 16) & 0x10) !== 0,
  };
}

export function readDecoded(capture: Capture): DecodedCapture {
  const lines = readFileSync(join(VECTORS_DIR, `${capture}_decoded.txt`), "utf8").split("\n");
  const negotiatedLine = lines.find((l) => l.startsWith("# negotiated: "));
  if (!negotiatedLine) throw new Error(`${capture}: no "# negotiated:" line`);
  const frames = lines.filter((l) => l !== "" && !l.startsWith("#")).map(parseFrame);
  const messages = frames.filter((f): f is MessageFrame => f.name !== undefined && f.plain !== undefined);
  return { frames, messages, negotiated: parseNegotiated(negotiatedLine) };
}

/** Recordings kept as raw socket frames only (no `_decoded.txt`): the SPDM 1.4 ones. */
export const RAW_CAPTURES = ["spdm14_auth"] as const;
/** The raw recording of DMTF's pair in public-key mode (slot 0xFF), read by its own test. */
export const PUBLIC_KEY_CAPTURE = "spdm14_public_key";
type RawCapture = (typeof RAW_CAPTURES)[number] | typeof PUBLIC_KEY_CAPTURE;

/** A socket frame of a raw recording: its command, and for NORMAL PCI_DOE frames the DOE object. */
export interface RawFrame {
  index: number;
  dir: "C2S" | "S2C";
  command: number;
  /** DOE data object type (1 SPDM, 2 secured SPDM) and the body after the 8-byte DOE header. */
  doeType?: number;
  body?: Buffer;
}

/** The frames of `<capture>.txt` (see the README's file formats). */
export function readRawFrames(capture: RawCapture): RawFrame[] {
  const lines = readFileSync(join(VECTORS_DIR, `${capture}.txt`), "utf8").split("\n");
  return lines
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((line, index) => {
      const [dir, hex] = line.split(" ") as [RawFrame["dir"], string];
      const frame = Buffer.from(hex, "hex");
      const command = frame.readUInt32BE(0);
      const payload = frame.subarray(12, 12 + frame.readUInt32BE(8));
      const doe = command === 1 && frame.readUInt32BE(4) === 2 && payload.length >= 8;
      return doe
        ? {
            index,
            dir,
            command,
            doeType: payload[2]!,
            body: payload.subarray(8, payload.readUInt32LE(4) * 4),
          }
        : { index, dir, command };
    });
}

/** What decoding a response needs from its request. */
export function requestContext(req: SpdmMessage | undefined): DecodeContext {
  switch (req?.code) {
    case "CHALLENGE":
      return { measurementSummaryHashType: req.measurementSummaryHashType };
    case "KEY_EXCHANGE":
    case "PSK_EXCHANGE":
      return { measurementSummaryHashType: req.measurementSummaryHashType };
    case "GET_MEASUREMENTS":
      return { measurementSignatureRequested: (req.attributes & 1) !== 0 };
    default:
      return {};
  }
}

/** A plain SPDM message of a raw recording: its frame, the decoded message and its length in the DOE body. */
export interface RawMessage {
  frame: RawFrame & { body: Buffer };
  message: SpdmMessage;
  byteLength: number;
}

/**
 * The plain SPDM messages (DOE type 1) of a raw recording in order, each decoded with the context
 * its connection's VCA and (for a response) its request give.
 */
export function rawMessages(capture: RawCapture): RawMessage[] {
  const vca: Partial<Parameters<typeof negotiatedContext>[0]> = {};
  let ctx: DecodeContext = {};
  let lastRequest: SpdmMessage | undefined;
  const out: RawMessage[] = [];
  for (const frame of readRawFrames(capture)) {
    if (frame.doeType !== 1 || !frame.body) continue;
    const isRequest = (frame.body[1]! & 0x80) !== 0;
    const { message, byteLength } = decodeSpdmWithLength(frame.body, {
      ...ctx,
      ...(isRequest ? {} : requestContext(lastRequest)),
    });
    out.push({ frame: { ...frame, body: frame.body }, message, byteLength });
    if (isRequest) lastRequest = message;
    if (message.code === "GET_CAPABILITIES") vca.getCapabilities = message;
    if (message.code === "CAPABILITIES") vca.capabilities = message;
    if (message.code === "NEGOTIATE_ALGORITHMS") vca.negotiateAlgorithms = message;
    if (message.code === "ALGORITHMS") ctx = negotiatedContext({ ...vca, algorithms: message });
  }
  return out;
}

/** Every `name = hex` line of `<capture>_secrets.txt`. */
export function readSecrets(capture: Capture | "spdm13_csr"): Map<string, Buffer> {
  const text = readFileSync(join(VECTORS_DIR, `${capture}_secrets.txt`), "utf8");
  const out = new Map<string, Buffer>();
  for (const m of text.matchAll(/^([\w.]+) = ([0-9a-f]+)$/gm)) out.set(m[1]!, Buffer.from(m[2]!, "hex"));
  return out;
}

/** A secret that must exist. */
export function secret(secrets: Map<string, Buffer>, name: string): Buffer {
  const v = secrets.get(name);
  if (!v) throw new Error(`no secret ${name}`);
  return v;
}

/** SPDM request/response codes used by the transcript rules in the tests. */
export const Code = {
  DIGESTS: 0x01,
  CERTIFICATE: 0x02,
  CHALLENGE_AUTH: 0x03,
  MEASUREMENTS: 0x60,
  KEY_EXCHANGE_RSP: 0x64,
  ERROR: 0x7f,
  GET_DIGESTS: 0x81,
  GET_CERTIFICATE: 0x82,
  CHALLENGE: 0x83,
  GET_VERSION: 0x84,
  GET_MEASUREMENTS: 0xe0,
  KEY_EXCHANGE: 0xe4,
} as const;

/** The VCA messages (A): GET_VERSION .. ALGORITHMS. */
export const VCA_NAMES = [
  "GET_VERSION",
  "VERSION",
  "GET_CAPABILITIES",
  "CAPABILITIES",
  "NEGOTIATE_ALGORITHMS",
  "ALGORITHMS",
];

/** A = the VCA messages of the (single) connection in a capture, concatenated. */
export function vcaTranscript(messages: readonly MessageFrame[]): Buffer {
  return Buffer.concat(
    messages.filter((m) => m.spdmSession === 0 && VCA_NAMES.includes(m.name)).map((m) => m.plain),
  );
}

/**
 * Certificate chains per slot as GET_CERTIFICATE returned them, reassembled from CERTIFICATE
 * portions (a request at offset 0 starts a new chain); the last complete chain per slot wins.
 */
export function certChains(messages: readonly MessageFrame[]): Map<number, Buffer> {
  const chains = new Map<number, Buffer>();
  const partial = new Map<number, Buffer[]>();
  for (const m of messages) {
    const slot = m.plain[2]! & 0xf;
    if (m.name === "GET_CERTIFICATE" && m.plain.readUInt16LE(4) === 0) partial.set(slot, []);
    if (m.name !== "CERTIFICATE") continue;
    const portion = m.plain.readUInt16LE(4);
    const remainder = m.plain.readUInt16LE(6);
    const parts = partial.get(slot) ?? [];
    parts.push(m.plain.subarray(8, 8 + portion));
    partial.set(slot, parts);
    if (remainder === 0) chains.set(slot, Buffer.concat(parts));
  }
  return chains;
}

/**
 * Where the signature starts in a KEY_EXCHANGE_RSP: header 4, RspSessionID 2, MutAuth 1, SlotID 1,
 * RandomData 32, ExchangeData, MeasurementSummaryHash (present unless KEY_EXCHANGE Param1 = 0),
 * u16 OpaqueDataLength and OpaqueData. ResponderVerifyData, if any, follows the signature.
 */
export function keyExchangeRspSignatureAt(n: Negotiated, keyExchange: Buffer, rsp: Buffer): number {
  const off = 40 + DHE[n.dhe].exchangeSize + (keyExchange[2] !== 0 ? HASH[n.hash].size : 0);
  return off + 2 + rsp.readUInt16LE(off);
}
