import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeError } from "../../protocol/errors.js";
import {
  commandName,
  DEFAULT_MAX_FRAME_PAYLOAD,
  decodeFrame,
  encodeFrame,
  FrameDecoder,
  SocketCommand,
  type SocketFrame,
  TransportType,
  transportName,
} from "../../protocol/socket.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

// A GET_VERSION frame (NORMAL, PCI_DOE), written out by hand.
const GET_VERSION_FRAME = hex("00000001 00000002 0000000c 01000100 03000000 10840000");

describe("spdm-emu socket frame (mailbox wire)", () => {
  it("encodes a NORMAL/PCI_DOE frame", () => {
    const frame = {
      command: SocketCommand.NORMAL,
      transport: TransportType.PCI_DOE,
      payload: hex("01000100 03000000 10840000"),
    };
    expect(encodeFrame(frame)).toEqual(GET_VERSION_FRAME);
    expect(decodeFrame(GET_VERSION_FRAME)).toEqual(frame);
  });

  it("encodes the TEST handshake as DMTF's tools send it", () => {
    const frame = encodeFrame({
      command: SocketCommand.TEST,
      transport: TransportType.PCI_DOE,
      payload: Buffer.from("Client Hello!\0"),
    });
    expect(frame).toEqual(hex("0000dead 00000002 0000000e 436c69656e742048656c6c6f2100"));
  });

  it("names every command and transport", () => {
    expect(
      [0x0001, 0x0002, 0x0003, 0x0004, 0x8001, 0x8002, 0xfffd, 0xfffe, 0xffff, 0xdead].map(commandName),
    ).toEqual([
      "NORMAL",
      "STORAGE_IF_SEND",
      "STORAGE_IF_RECV",
      "STORAGE_ACK_STATUS",
      "OOB_ENCAP_KEY_UPDATE",
      "OOB_ENCAP_ENDPOINT_INFO",
      "CONTINUE",
      "SHUTDOWN",
      "UNKNOWN",
      "TEST",
    ]);
    expect([0, 1, 2, 3].map(transportName)).toEqual(["NONE", "MCTP", "PCI_DOE", "TCP"]);
    expect(commandName(0x1234)).toBe("0x1234");
  });

  it("rejects a frame whose size field disagrees with its bytes", () => {
    expect(() => decodeFrame(hex("00000001 00000002 00000004 0000"))).toThrow(DecodeError);
    expect(() => decodeFrame(hex("00000001 0000"))).toThrow(DecodeError);
  });
});

describe("FrameDecoder", () => {
  const frames: SocketFrame[] = [
    { command: SocketCommand.TEST, transport: 2, payload: Buffer.from("Client Hello!\0") },
    { command: SocketCommand.NORMAL, transport: 2, payload: hex("01000000 03000000 00000000") },
    { command: SocketCommand.SHUTDOWN, transport: 2, payload: Buffer.alloc(0) },
  ];
  const stream = Buffer.concat(frames.map(encodeFrame));

  it("reassembles frames split at every byte offset", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder();
      const got = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      expect(got).toEqual(frames);
      expect(d.pending).toBe(0);
    }
  });

  it("reassembles frames fed one byte at a time and all at once", () => {
    const d = new FrameDecoder();
    const got: SocketFrame[] = [];
    for (const b of stream) got.push(...d.push(Buffer.from([b])));
    expect(got).toEqual(frames);
    expect(new FrameDecoder().push(stream)).toEqual(frames);
  });

  it("round-trips random frames split at random points", () => {
    const frameArb = fc.record({
      command: fc.integer({ min: 0, max: 0xffffffff }),
      transport: fc.integer({ min: 0, max: 0xffffffff }),
      payload: fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)),
    });
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 5 }), fc.array(fc.nat(), { maxLength: 6 }), (fs, cuts) => {
        const bytes = Buffer.concat(fs.map(encodeFrame));
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const d = new FrameDecoder();
        const got: SocketFrame[] = [];
        let at = 0;
        for (const p of [...points, bytes.length]) {
          got.push(...d.push(bytes.subarray(at, p)));
          at = p;
        }
        expect(got).toEqual(fs);
      }),
    );
  });

  it("checks the payload bound from the header alone, before any payload arrives", () => {
    const d = new FrameDecoder();
    const header = hex(`00000001 00000002 ${(DEFAULT_MAX_FRAME_PAYLOAD + 1).toString(16).padStart(8, "0")}`);
    expect(() => d.push(header)).toThrow(DecodeError);
    expect(() => new FrameDecoder(16).push(hex("00000001 00000002 00000011"))).toThrow(
      /exceeds the bound of 16/,
    );
    expect(new FrameDecoder(16).push(hex("00000001 00000002 00000010"))).toEqual([]);
    // 0xFFFFFFFF must fail fast rather than try to buffer 4 GiB.
    expect(() => new FrameDecoder().push(hex("00000001 00000002 ffffffff"))).toThrow(DecodeError);
  });

  it("only ever throws DecodeError on random streams", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          new FrameDecoder(32).push(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
