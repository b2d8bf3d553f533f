/**
 * The device's CXL IDE_KM responder (src/device/cxl-ide-km.ts): QUERY_RESP from the description,
 * GET_KEY, KEY_PROG, K_SET_GO and K_SET_STOP for both directions as DMTF's requester runs them, the
 * KP_ACK status and SPDM ERROR cases, keys kept out of the log; then the same through a real SPDM
 * session to a device on a socket, where a bad message does not end the session.
 */
import { describe, expect, it } from "vitest";
import {
  CXL_DEFAULT_IV,
  CXL_SUB_STREAM,
  CxlDirection,
  type CxlIdeKmMessage,
  CxlIvMode,
  CxlKeyMode,
  type CxlKeyTarget,
  CxlKpAckStatus,
  decodeCxlIdeKm,
  encodeCxlIdeKm,
} from "../../protocol/cxl-ide-km.js";
import { DecodeError } from "../../protocol/errors.js";
import { SpdmErrorCode } from "../../protocol/spdm/index.js";
import { CxlIdeKmEngine } from "../../src/device/cxl-ide-km.js";
import { parseDescription } from "../../src/device/description.js";
import { startDevice } from "../../src/device/device.js";
import { SpdmError } from "../../src/spdm/responder-context.js";
import { hex } from "../support/codec.js";
import { logLines } from "../support/log-lines.js";
import { withVdmSession } from "../support/vdm-session.js";

const RID = 0x0108; // bus 1, device 1, function 0
const target = (o: Partial<CxlKeyTarget> = {}): CxlKeyTarget => ({
  streamId: 0,
  direction: CxlDirection.RX,
  mode: 0,
  subStream: CXL_SUB_STREAM,
  portIndex: 0,
  ...o,
});
const RX = target();
const TX = target({ direction: CxlDirection.TX });
const keyProg = (o: Partial<CxlKeyTarget> = {}, key = Buffer.alloc(32, 0x5a)) =>
  encodeCxlIdeKm({ object: "KEY_PROG", ...target(o), key, iv: CXL_DEFAULT_IV });

function setup(cxlIde: object = {}) {
  const lines = logLines();
  const desc = parseDescription({ functions: [{ cxl: { ide: cxlIde } }] });
  const engine = new CxlIdeKmEngine(RID, desc.functions[0]!.cxl!.ide!, lines.log);
  const ask = (m: CxlIdeKmMessage | Buffer) =>
    decodeCxlIdeKm(engine.handle(Buffer.isBuffer(m) ? m : encodeCxlIdeKm(m)));
  return { lines, engine, ask };
}

function expectInvalidRequest(f: () => unknown) {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SpdmError);
    expect((e as SpdmError).errorCode).toBe(SpdmErrorCode.InvalidRequest);
    return;
  }
  expect.fail("no error");
}

/** DMTF's requester's order (spdm-emu 85436d53): GET_KEY, KEY_PROG RX with it, KEY_PROG TX, K_SET_GO RX and TX. */
function dmtfSetup(ask: ReturnType<typeof setup>["ask"]) {
  const got = ask({ object: "GET_KEY", ...RX });
  if (got.object !== "GET_KEY_ACK") throw new Error(got.object);
  const rx = target({ mode: CxlIvMode.DEFAULT });
  expect(ask(encodeCxlIdeKm({ object: "KEY_PROG", ...rx, key: got.key, iv: got.iv }))).toEqual({
    object: "KP_ACK",
    ...rx,
    status: CxlKpAckStatus.SUCCESS,
  });
  expect(ask(keyProg(TX))).toEqual({ object: "KP_ACK", ...TX, status: CxlKpAckStatus.SUCCESS });
  for (const t of [RX, TX])
    expect(ask({ object: "K_SET_GO", ...t })).toEqual({ object: "K_GOSTOP_ACK", ...t });
  return got;
}

describe("CXL IDE_KM responder", () => {
  it("QUERY: Caps 0x71 and the CXL IDE Capability register by default, port 0, the function's routing ID", () => {
    const { ask } = setup();
    expect(ask({ object: "QUERY", portIndex: 0 })).toEqual({
      object: "QUERY_RESP",
      portIndex: 0,
      devFuncNum: 0x08,
      busNum: 0x01,
      segment: 0,
      maxPortIndex: 0,
      caps: 0x71,
      ideRegisters: [0x7, 0, 0, 0, 0, 0, 0, 0, 0],
    });
  });

  it("the description decides Caps, the modes and the port", () => {
    const { ask } = setup({
      keyGeneration: false,
      ivGeneration: false,
      kSetStop: false,
      modes: ["SKID"],
      portIndex: 3,
    });
    expect(ask({ object: "QUERY", portIndex: 3 })).toMatchObject({
      caps: 0x01,
      maxPortIndex: 3,
      ideRegisters: [0x3, 0, 0, 0, 0, 0, 0, 0, 0],
    });
    expect(setup({ ivGeneration: false }).ask({ object: "QUERY", portIndex: 0 })).toMatchObject({
      caps: 0x61,
    });
  });

  it("DMTF's flow: GET_KEY, KEY_PROG RX/TX, K_SET_GO RX/TX, K_SET_STOP RX/TX; fresh key and IV each GET_KEY", () => {
    const { ask, engine } = setup();
    const first = dmtfSetup(ask);
    expect([engine.modeOf(CxlDirection.RX), engine.modeOf(CxlDirection.TX)]).toEqual([
      CxlKeyMode.SKID,
      CxlKeyMode.SKID,
    ]);
    const second = ask({ object: "GET_KEY", ...RX });
    if (second.object !== "GET_KEY_ACK") throw new Error(second.object);
    expect(second.key).not.toEqual(first.key);
    expect(second.iv).not.toEqual(first.iv);
    for (const t of [RX, TX])
      expect(ask({ object: "K_SET_STOP", ...t })).toEqual({ object: "K_GOSTOP_ACK", ...t });
    expect([engine.modeOf(CxlDirection.RX), engine.modeOf(CxlDirection.TX)]).toEqual([undefined, undefined]);
    // K_SET_STOP forgot the keys: going again needs a new KEY_PROG.
    expectInvalidRequest(() => ask({ object: "K_SET_GO", ...RX }));
  });

  it("K_SET_GO in Containment mode; GET_KEY without KEY_GEN gives a zero key", () => {
    const { ask, engine } = setup({ keyGeneration: false });
    const got = ask({ object: "GET_KEY", ...RX });
    expect(got).toMatchObject({ object: "GET_KEY_ACK", key: Buffer.alloc(32) });
    ask(keyProg());
    const containment = target({ mode: CxlKeyMode.CONTAINMENT });
    expect(ask({ object: "K_SET_GO", ...containment })).toEqual({ object: "K_GOSTOP_ACK", ...containment });
    expect(engine.modeOf(CxlDirection.RX)).toBe(CxlKeyMode.CONTAINMENT);
  });

  it("KP_ACK INVALID: the wrong size, another port, a sub-stream other than CXL's; nothing is stored", () => {
    const { ask } = setup();
    const good = keyProg();
    for (const bad of [good.subarray(0, 50), Buffer.concat([good, Buffer.alloc(1)]), good.subarray(0, 7)])
      expect(ask(bad)).toEqual({ object: "KP_ACK", ...RX, status: CxlKpAckStatus.INVALID });
    expect(ask(keyProg({ portIndex: 1 }))).toMatchObject({ portIndex: 1, status: CxlKpAckStatus.INVALID });
    expect(ask(keyProg({ subStream: 0 }))).toMatchObject({ subStream: 0, status: CxlKpAckStatus.INVALID });
    expectInvalidRequest(() => ask({ object: "K_SET_GO", ...RX }));
  });

  it("ERROR InvalidRequest: another port or sub-stream, GET_KEY or K_SET_STOP unannounced, K_SET_GO unprogrammed or in a mode not supported", () => {
    const { ask } = setup();
    const cases: CxlIdeKmMessage[] = [
      { object: "QUERY", portIndex: 1 },
      { object: "GET_KEY", ...target({ portIndex: 1 }) },
      { object: "GET_KEY", ...target({ subStream: 0 }) },
      { object: "K_SET_GO", ...TX },
      { object: "K_SET_STOP", ...target({ portIndex: 2 }) },
    ];
    for (const m of cases) expectInvalidRequest(() => ask(m));
    const narrow = setup({ keyGeneration: false, ivGeneration: false, kSetStop: false, modes: ["SKID"] });
    narrow.ask(keyProg());
    expectInvalidRequest(() => narrow.ask({ object: "GET_KEY", ...RX }));
    expectInvalidRequest(() =>
      narrow.ask({ object: "K_SET_GO", ...target({ mode: CxlKeyMode.CONTAINMENT }) }),
    );
    narrow.ask({ object: "K_SET_GO", ...RX });
    expectInvalidRequest(() => narrow.ask({ object: "K_SET_STOP", ...RX }));
  });

  it("malformed messages, unknown Object IDs and responses sent as requests are DecodeErrors (ERROR InvalidRequest)", () => {
    const { engine } = setup();
    for (const bad of ["", "00", "000000ff", "09", "0a00000000800000", "02000000", "0400000000800000"])
      expect(() => engine.handle(hex(bad)), bad).toThrow(DecodeError);
    for (const m of [
      encodeCxlIdeKm({ object: "KP_ACK", ...RX, status: 0 }),
      encodeCxlIdeKm({ object: "K_GOSTOP_ACK", ...RX }),
      encodeCxlIdeKm({ object: "GET_KEY_ACK", ...RX, key: Buffer.alloc(32), iv: Buffer.alloc(12) }),
    ])
      expect(() => engine.handle(m)).toThrow(DecodeError);
  });

  it("keys never reach the log, neither the device's nor the host's", () => {
    const { ask, lines } = setup();
    const got = dmtfSetup(ask);
    const programmed = Buffer.alloc(32, 0x5a);
    const text = lines.written.join("");
    expect(text).toContain("CXL IDE-KM KEY_PROG");
    for (const k of [got.key, programmed]) {
      expect(text).not.toContain(k.toString("hex"));
      expect(text).not.toContain(k.toString("base64"));
    }
  });
});

describe("CXL IDE_KM through a secure session to a device on a socket", () => {
  it("DMTF's flow; a bad message is ERROR InvalidRequest and the session goes on; a device without CXL IDE: UnsupportedRequest", async () => {
    const lines = logLines("info");
    const description = parseDescription({ functions: [{ cxl: { ide: {} } }] });
    const device = await startDevice({ description, port: 0, log: lines.log });
    try {
      await withVdmSession(device, "CXL_IDE_KM", async ({ send, ask: askBytes }) => {
        const ask = async (m: CxlIdeKmMessage) => decodeCxlIdeKm(await askBytes(encodeCxlIdeKm(m)));
        expect(await ask({ object: "QUERY", portIndex: 0 })).toMatchObject({
          object: "QUERY_RESP",
          caps: 0x71,
        });
        expect(await send(hex("09"))).toMatchObject({
          code: "ERROR",
          errorCode: SpdmErrorCode.InvalidRequest,
        });
        expect(await send(encodeCxlIdeKm({ object: "K_SET_GO", ...TX }))).toMatchObject({
          code: "ERROR",
          errorCode: SpdmErrorCode.InvalidRequest,
        });
        const got = await ask({ object: "GET_KEY", ...RX });
        if (got.object !== "GET_KEY_ACK") throw new Error(got.object);
        expect(await ask({ object: "KEY_PROG", ...RX, key: got.key, iv: got.iv })).toMatchObject({
          status: 0,
        });
        expect(await ask({ object: "K_SET_GO", ...RX })).toEqual({ object: "K_GOSTOP_ACK", ...RX });
        expect(await ask({ object: "K_SET_STOP", ...RX })).toEqual({ object: "K_GOSTOP_ACK", ...RX });
      });
      // The same function without a CXL engine: the protocol is not served.
      const plain = await startDevice({ description: parseDescription({}), port: 0, log: lines.log });
      try {
        await withVdmSession(plain, "CXL_IDE_KM", async ({ send }) => {
          expect(await send(encodeCxlIdeKm({ object: "QUERY", portIndex: 0 }))).toMatchObject({
            code: "ERROR",
            errorCode: SpdmErrorCode.UnsupportedRequest,
          });
        });
      } finally {
        await plain.stop();
      }
    } finally {
      await device.stop();
    }
  });
});
