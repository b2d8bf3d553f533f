/** The pcap codec (protocol/pcap.ts) and the per-connection capture writer (src/net/capture.ts). */
import { EventEmitter } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { encodeDoeObject } from "../../protocol/doe.js";
import { DecodeError } from "../../protocol/errors.js";
import { decodePcap, encodePcapHeader, encodePcapRecord, LinkType } from "../../protocol/pcap.js";
import { SocketCommand, type SocketFrame, TransportType } from "../../protocol/socket.js";
import { PcapCapture } from "../../src/net/capture.js";
import type { FramedConnection } from "../../src/net/framed.js";
import { logLines } from "../support/log-lines.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const GET_VERSION = encodeDoeObject({ vendorId: 1, type: 1, payload: hex("10840000") });

describe("pcap codec", () => {
  it("writes spdm-emu's global header for PCI_DOE byte for byte", () => {
    expect(encodePcapHeader({ snaplen: 65536, linkType: LinkType.PCI_DOE })).toEqual(
      hex("d4c3b2a1 0200 0400 00000000 00000000 00000100 24010000"),
    );
  });

  it("writes a record: seconds, microseconds, incl_len, orig_len, the DOE object", () => {
    const rec = encodePcapRecord({ timeUs: 1796285314_000123, data: GET_VERSION, origLen: 12 });
    expect(rec).toEqual(hex("8223116b 7b000000 0c000000 0c000000 01000100 03000000 10840000"));
  });

  it("reads back what it writes, and stops before a record cut short", () => {
    const records = [
      { timeUs: 1_000_000, data: GET_VERSION, origLen: 12 },
      { timeUs: 1_000_007, data: GET_VERSION.subarray(0, 8), origLen: 12 },
    ];
    const file = Buffer.concat([
      encodePcapHeader({ snaplen: 8, linkType: LinkType.PCI_DOE }),
      ...records.map(encodePcapRecord),
    ]);
    expect(decodePcap(file)).toEqual({ header: { snaplen: 8, linkType: 292 }, records, trailingBytes: 0 });
    const cut = decodePcap(file.subarray(0, file.length - 3));
    expect(cut.records).toEqual(records.slice(0, 1));
    expect(cut.trailingBytes).toBe(16 + 8 - 3);
  });

  it("reads big-endian and nanosecond files", () => {
    const be = Buffer.concat([
      hex("a1b23c4d 0002 0004 00000000 00000000 00010000 00000124"),
      hex("00000001 000003e8 00000004 00000004 aabbccdd"),
    ]);
    expect(decodePcap(be).records).toEqual([{ timeUs: 1_000_001, data: hex("aabbccdd"), origLen: 4 }]);
  });

  it("refuses what is not a pcap file", () => {
    expect(() => decodePcap(Buffer.alloc(10))).toThrow(DecodeError);
    expect(() => decodePcap(Buffer.alloc(24))).toThrow(/not a pcap magic/);
  });
});

/** Just what PcapCapture.attach uses of a connection. */
function fakeConnection(): FramedConnection {
  return Object.assign(new EventEmitter(), { tap: undefined }) as unknown as FramedConnection;
}
const normal = (payload: Buffer): SocketFrame => ({
  command: SocketCommand.NORMAL,
  transport: TransportType.PCI_DOE,
  payload,
});

describe("PcapCapture", () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("writes one file per connection with every DOE object, nothing else, with rising timestamps", () => {
    dir = mkdtempSync(join(tmpdir(), "pcap-"));
    const { log } = logLines();
    const capture = new PcapCapture({ dir, process: "device", log });
    const [a, b] = [fakeConnection(), fakeConnection()];
    capture.attach(a, "01:00.0-mb0");
    capture.attach(b, "01:00.0-mb0");
    a.tap!({ command: SocketCommand.TEST, transport: TransportType.PCI_DOE, payload: hex("00") });
    a.tap!(normal(GET_VERSION));
    a.tap!(normal(Buffer.alloc(0)));
    a.tap!(normal(GET_VERSION));
    a.emit("close");
    expect(a.tap).toBeUndefined();
    const names = readdirSync(dir).sort();
    expect(names).toEqual([
      `device-${process.pid}-01-00.0-mb0-c1.pcap`,
      `device-${process.pid}-01-00.0-mb0-c2.pcap`,
    ]);
    const file = decodePcap(readFileSync(join(dir, names[0]!)));
    expect(file.header).toEqual({ snaplen: 65536, linkType: 292 });
    expect(file.records.map((r) => r.data)).toEqual([GET_VERSION, GET_VERSION]);
    expect(file.records[1]!.timeUs).toBeGreaterThanOrEqual(file.records[0]!.timeUs);
    expect(file.records[0]!.timeUs / 1000).toBeCloseTo(Date.now(), -4);
    expect(decodePcap(readFileSync(join(dir, names[1]!))).records).toEqual([]);
  });

  it("truncates an object longer than the snaplen, keeps its length and says so", () => {
    dir = mkdtempSync(join(tmpdir(), "pcap-"));
    const lines = logLines();
    const capture = new PcapCapture({ dir, process: "host", snaplen: 16, log: lines.log });
    const conn = fakeConnection();
    capture.attach(conn, "bounce");
    conn.tap!(normal(Buffer.alloc(40, 1)));
    conn.emit("close"); // a record without its partner is written when the connection closes
    const [rec] = decodePcap(readFileSync(join(dir, readdirSync(dir)[0]!))).records;
    expect(rec).toMatchObject({ data: Buffer.alloc(16, 1), origLen: 40 });
    expect(lines.written.join("")).toMatch(/longer than the pcap snaplen/);
  });

  it("stops capturing after the first failed write, with one log line", () => {
    dir = mkdtempSync(join(tmpdir(), "pcap-"));
    const lines = logLines();
    const capture = new PcapCapture({ dir, process: "device", log: lines.log });
    rmSync(dir, { recursive: true });
    capture.attach(fakeConnection(), "mb0");
    capture.attach(fakeConnection(), "mb1");
    expect(capture.stopped).toBe(true);
    expect(lines.written.filter((l) => l.includes("capturing stopped"))).toHaveLength(1);
  });
});
