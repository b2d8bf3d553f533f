/**
 * What `npm run fuzz` sends: fast-check arbitraries over valid messages (a corpus recorded from a
 * real requester run) and their mutations — bit flips, truncations, insertions, length fields that
 * lie — wrapped in DOE objects and socket frames that may themselves be mutated, and HTTP requests.
 * Also the rules a well-behaved endpoint follows for a byte stream (`expectedAnswers`), the oracle's
 * measure of "every input gets an answer or a clean close".
 */
import fc from "fast-check";
import { CONTROL_MAX_PAYLOAD, ControlCommand } from "../protocol/control.js";
import { DoeType, encodeDiscoveryRequest, encodeDoeObject, PCI_SIG_VENDOR_ID } from "../protocol/doe.js";
import {
  DEFAULT_MAX_FRAME_PAYLOAD,
  encodeFrame,
  FRAME_HEADER_BYTES,
  SocketCommand,
  TransportType,
} from "../protocol/socket.js";
import { SpdmRequestCode } from "../protocol/spdm/codes.js";

/** Valid messages recorded from a real requester run against the device. */
export interface Corpus {
  /** Plain SPDM requests, in the order sent (the first three are VCA). */
  plain: Buffer[];
  /** SPDM messages sent inside a session (vendor-defined IDE-KM, TDISP, CXL ones among them). */
  inner: Buffer[];
}

/** One input on a byte-stream endpoint: the bytes, and where TCP writes split them. */
export interface StreamInput {
  bytes: Buffer;
  splits: number[];
}

const byte = fc.integer({ min: 0, max: 255 });
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "set"; at: number; value: number }
  | { op: "truncate"; at: number }
  | { op: "insert"; at: number; data: Buffer }
  | { op: "lie"; at: number; value: number; width: 2 | 4; le: boolean };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({
    op: fc.constant("set" as const),
    at: fc.nat(),
    value: fc.oneof(fc.constantFrom(0, 1, 0x7f, 0x80, 0xfe, 0xff), byte),
  }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("insert" as const), at: fc.nat(), data: bytes(64) }),
  fc.record({
    op: fc.constant("lie" as const),
    at: fc.nat(),
    value: fc.oneof(fc.constantFrom(0, 1, 0xffff, 0xffff_ffff, 0x8000_0000), u32),
    width: fc.constantFrom(2 as const, 4 as const),
    le: fc.boolean(),
  }),
);

function mutate(base: Buffer, mutations: readonly Mutation[]): Buffer {
  let b = Buffer.from(base);
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    switch (m.op) {
      case "flip":
        if (b.length) b[at]! ^= 1 << m.bit;
        break;
      case "set":
        if (b.length) b[at] = m.value;
        break;
      case "truncate":
        b = b.subarray(0, at);
        break;
      case "insert":
        b = Buffer.concat([b.subarray(0, at), m.data, b.subarray(at)]);
        break;
      case "lie": {
        if (b.length < m.width) break;
        const pos = Math.min(at, b.length - m.width);
        const v = m.width === 2 ? m.value & 0xffff : m.value;
        if (m.width === 2) m.le ? b.writeUInt16LE(v, pos) : b.writeUInt16BE(v, pos);
        else m.le ? b.writeUInt32LE(v, pos) : b.writeUInt32BE(v, pos);
      }
    }
  }
  return b;
}

/** `base` mutated 0–4 times; a third of the values are left valid. */
export const mutated = (base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> =>
  fc
    .tuple(base, fc.oneof(fc.constant([]), fc.array(mutation, { minLength: 1, maxLength: 4 })))
    .map(([b, ms]) => mutate(b, ms));

const REQUEST_CODES = Object.values(SpdmRequestCode);

/** An SPDM request of any code (every request code, and any byte), with any version and body. */
const generatedSpdm: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.oneof(fc.constantFrom(0x10, 0x11, 0x12, 0x13), byte),
    fc.oneof(fc.constantFrom(...REQUEST_CODES), byte),
    byte,
    byte,
    bytes(96),
  )
  .map(([v, code, p1, p2, rest]) => Buffer.concat([Buffer.from([v, code, p1, p2]), rest]));

/** A plain SPDM request: recorded ones mutated, or generated. */
export const spdmRequest = (corpus: Corpus) =>
  fc.oneof(mutated(fc.constantFrom(...corpus.plain)), generatedSpdm);

/** A message to send inside a session: recorded ones mutated (the vendor-defined ones too), or generated. */
export const innerMessage = (corpus: Corpus) =>
  fc.oneof(
    { weight: 3, arbitrary: mutated(fc.constantFrom(...corpus.inner)) },
    { weight: 1, arbitrary: generatedSpdm },
  );

/** A DOE object (header + payload, length field right) of a mailbox's protocols or any other. */
const doeObject = (corpus: Corpus): fc.Arbitrary<Buffer> =>
  fc.oneof(
    fc.tuple(fc.nat(300), byte).map(([index, version]) =>
      encodeDoeObject({
        vendorId: PCI_SIG_VENDOR_ID,
        type: DoeType.DISCOVERY,
        payload: encodeDiscoveryRequest({ index: index & 0xff, version }),
      }),
    ),
    spdmRequest(corpus).map((payload) =>
      encodeDoeObject({ vendorId: PCI_SIG_VENDOR_ID, type: DoeType.CMA_SPDM, payload: pad4(payload) }),
    ),
    fc
      .tuple(fc.integer({ min: 0, max: 0xffff }), byte, bytes(64))
      .map(([vendorId, type, payload]) => encodeDoeObject({ vendorId, type, payload: pad4(payload) })),
  );

const pad4 = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);

const MAILBOX_COMMANDS = Object.values(SocketCommand);

/** One socket frame: its command, transport and payload, any of them possibly wrong. */
const frame = (
  commands: readonly number[],
  transport: fc.Arbitrary<number>,
  payload: fc.Arbitrary<Buffer>,
): fc.Arbitrary<Buffer> =>
  fc
    .tuple(
      fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...commands) }, { weight: 1, arbitrary: u32 }),
      transport,
      payload,
    )
    .map(([command, transport, payload]) => encodeFrame({ command, transport, payload }));

/** 1–3 frames, the stream possibly mutated as a whole (framing lies), split across TCP writes. */
function stream(oneFrame: fc.Arbitrary<Buffer>): fc.Arbitrary<StreamInput> {
  const frames = fc.array(oneFrame, { minLength: 1, maxLength: 3 }).map((fs) => Buffer.concat(fs));
  const framed = fc.oneof({ weight: 6, arbitrary: frames }, { weight: 1, arbitrary: mutated(frames) });
  return fc
    .tuple(
      framed,
      fc.oneof(
        { weight: 4, arbitrary: fc.constant([]) },
        { weight: 1, arbitrary: fc.array(fc.nat(), { maxLength: 4 }) },
      ),
    )
    .map(([bytes, cuts]) => ({
      bytes,
      splits: [...new Set(cuts.map((c) => (bytes.length ? c % bytes.length : 0)))].sort((a, b) => a - b),
    }));
}

/** Mostly NORMAL frames carrying DOE objects (TEST among them), rarely SHUTDOWN/CONTINUE or junk. */
export const mailboxStream = (corpus: Corpus) =>
  stream(
    fc.oneof(
      {
        weight: 12,
        arbitrary: doeObject(corpus).map((p) =>
          encodeFrame({ command: SocketCommand.NORMAL, transport: TransportType.PCI_DOE, payload: p }),
        ),
      },
      {
        weight: 1,
        arbitrary: frame(
          MAILBOX_COMMANDS,
          fc.oneof(
            { weight: 8, arbitrary: fc.constant(TransportType.PCI_DOE as number) },
            { weight: 1, arbitrary: u32 },
          ),
          fc.oneof(doeObject(corpus), bytes(32)),
        ),
      },
    ),
  );

/** Well-framed NORMAL frames, each one CMA/SPDM object carrying one SPDM request. */
export const spdmStream = (corpus: Corpus) =>
  fc
    .array(spdmRequest(corpus), { minLength: 1, maxLength: 2 })
    .map((msgs) => ({ bytes: Buffer.concat(msgs.map(cmaFrame)), splits: [] }));

/** The NORMAL frame carrying `spdm` in a CMA/SPDM object. */
export const cmaFrame = (spdm: Buffer): Buffer =>
  encodeFrame({
    command: SocketCommand.NORMAL,
    transport: TransportType.PCI_DOE,
    payload: encodeDoeObject({ vendorId: PCI_SIG_VENDOR_ID, type: DoeType.CMA_SPDM, payload: pad4(spdm) }),
  });

/**
 * Control-wire requests of every opcode but FAULT_ADD (a valid rule makes the device misbehave on
 * purpose, an `exit` rule ends it): config reads and writes at any routing ID, offset and width.
 */
export const controlStream = (rids: readonly number[]) => {
  const commands = Object.values(ControlCommand).filter((c) => c !== ControlCommand.FAULT_ADD);
  const cfg = fc
    .tuple(
      fc.oneof(fc.constantFrom(...rids), fc.integer({ min: 0, max: 0xffff })),
      fc.integer({ min: 0, max: 0x1100 }),
      fc.constantFrom(1, 2, 4, 0, 3, 8),
      u32,
      fc.boolean(),
    )
    .map(([rid, offset, width, value, write]) => {
      const b = Buffer.alloc(write ? 9 : 5);
      b.writeUInt16LE(rid, 0);
      b.writeUInt16LE(offset & 0xffff, 2);
      b.writeUInt8(width, 4);
      if (write) b.writeUInt32LE(value, 5);
      return b;
    });
  return stream(frame(commands, u32, fc.oneof(mutated(cfg), bytes(48))));
};

/** What a well-behaved endpoint does with a byte stream, frame by frame. */
/** The endpoint a byte stream goes to: a device's mailbox, a host's bouncer, a control endpoint. */
export type Wire = "mailbox" | "bouncer" | "control";

/**
 * Socket commands answered with the connection left open, by a device's mailbox and a host's
 * bouncer alike (which forwards the OOB commands, or echoes them before any object); any other
 * closes it.
 */
const STAYS_OPEN: readonly number[] = [
  SocketCommand.NORMAL,
  SocketCommand.TEST,
  SocketCommand.OOB_ENCAP_ENDPOINT_INFO,
  SocketCommand.OOB_ENCAP_KEY_UPDATE,
];

export interface Expected {
  /** Frames it answers before anything else happens. */
  answers: number;
  /** It then closes the connection (bad framing, SHUTDOWN, an unknown command...). */
  closes: boolean;
  /** The stream ends inside a frame: the endpoint waits for the rest (we half-close instead). */
  partial: boolean;
}

/**
 * The rules of serveSpdmEmu (mailbox and bouncer) or of the control endpoint (one answer per frame)
 * applied to `bytes`, written here again from the wire format rather than imported.
 */
export function expectedAnswers(bytes: Buffer, wire: Wire): Expected {
  const max = wire === "control" ? CONTROL_MAX_PAYLOAD : DEFAULT_MAX_FRAME_PAYLOAD;
  let off = 0;
  let answers = 0;
  while (bytes.length - off >= FRAME_HEADER_BYTES) {
    const command = bytes.readUInt32BE(off);
    const transport = bytes.readUInt32BE(off + 4);
    const size = bytes.readUInt32BE(off + 8);
    if (size > max) return { answers, closes: true, partial: false };
    if (bytes.length - off - FRAME_HEADER_BYTES < size) return { answers, closes: false, partial: true };
    off += FRAME_HEADER_BYTES + size;
    if (wire === "control") {
      answers++;
      continue;
    }
    if (transport !== TransportType.PCI_DOE) return { answers, closes: true, partial: false };
    answers++;
    if (!STAYS_OPEN.includes(command)) return { answers, closes: true, partial: false };
  }
  return { answers, closes: false, partial: off < bytes.length };
}

/** The API's routes, with the TDEV/TDI/function BDFs and device IDs of the running topology. */
export function httpRequest(bdfs: readonly string[], devices: readonly string[]): fc.Arbitrary<StreamInput> {
  const bdf = fc.oneof(
    fc.constantFrom(...bdfs),
    fc.constantFrom("00:00.0", "ff:1f.7", "zz", "", "%00", "..%2f"),
  );
  const device = fc.oneof(fc.constantFrom(...devices), fc.string({ maxLength: 12 }));
  const path = fc.oneof(
    fc.constantFrom(
      "/v1/topology",
      "/v1/functions",
      "/openapi.json",
      "/",
      "/v1/events",
      "/v1/events?since=-1",
      "/v1",
    ),
    fc
      .tuple(fc.constantFrom("authenticate", "connect", "disconnect"), bdf)
      .map(([op, b]) => `/v1/tdevs/${b}/${op}`),
    fc.tuple(fc.constantFrom("", "/bind", "/unbind"), bdf).map(([op, b]) => `/v1/tdis/${b}${op}`),
    fc.tuple(bdf, fc.string({ maxLength: 20 })).map(([b, q]) => `/v1/functions/${b}/config?${encodeURI(q)}`),
    device.map((d) => `/v1/devices/${encodeURIComponent(d)}/faults`),
    // Not fc.webPath(): its first draw takes seconds.
    fc
      .array(fc.string({ maxLength: 8 }), { maxLength: 4 })
      .map((segments) => `/${segments.map(encodeURIComponent).join("/")}`),
  );
  const method = fc.oneof(
    fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"),
    fc.stringMatching(/^[A-Z]{1,8}$/),
  );
  const body = fc.oneof(
    fc.constant(""),
    fc.json({ maxDepth: 3 }),
    fc
      .record(
        {
          vm: fc.oneof(fc.string(), fc.integer()),
          offset: fc.integer({ min: -2, max: 5000 }),
          width: fc.constantFrom(1, 2, 3, 4),
          value: fc.integer(),
        },
        { requiredKeys: [] },
      )
      .map((o) => JSON.stringify(o)),
    bytes(64).map((b) => b.toString("latin1")),
  );
  const header = fc.oneof(
    fc.constantFrom(
      "Content-Type: application/json",
      "Content-Type: text/plain",
      "Transfer-Encoding: chunked",
      "Expect: 100-continue",
      "Accept: text/event-stream",
    ),
    fc
      .tuple(fc.stringMatching(/^[A-Za-z-]{1,16}$/), fc.string({ maxLength: 40 }))
      .map(([k, v]) => `${k}: ${v}`),
  );
  const request = fc
    .tuple(method, path, fc.array(header, { maxLength: 3 }), body)
    // A fault rule the host accepts would make the device misbehave on purpose (faults.test.ts covers that).
    .filter(([m, p]) => !(m === "POST" && p.endsWith("/faults")))
    .map(([m, p, hs, b]) => {
      const body = Buffer.from(b, "latin1");
      const head = [
        `${m} ${p} HTTP/1.1`,
        "Host: fuzz",
        ...hs,
        `Content-Length: ${body.length}`,
        "Connection: close",
      ];
      return Buffer.concat([Buffer.from(`${head.join("\r\n")}\r\n\r\n`, "latin1"), body]);
    });
  return stream(fc.oneof({ weight: 4, arbitrary: request }, { weight: 1, arbitrary: mutated(request) }));
}
