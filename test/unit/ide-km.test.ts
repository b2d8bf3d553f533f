/**
 * The device's IDE_KM responder (src/device/ide-km.ts): QUERY_RESP from the live IDE capability,
 * KEY_PROG for every direction × sub-stream, K_SET_GO making the stream Secure once it is enabled,
 * K_SET_STOP, every KP_ACK status, the SPDM ERROR cases and keys kept out of the log; then the same
 * through a real SPDM session to a device on a socket.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DecodeError } from "../../protocol/errors.js";
import {
  decodeIdeKm,
  encodeIdeKm,
  IdeDirection,
  type IdeKmMessage,
  IdeSubStream,
  type KeyTarget,
  KpAckStatus,
} from "../../protocol/ide-km.js";
import { ExtCapId, Ide, IdeSel, IdeStreamCtl, IdeStreamState, IdeStreamSts } from "../../protocol/pci.js";
import { SpdmErrorCode } from "../../protocol/spdm/index.js";
import { parseDescription } from "../../src/device/description.js";
import { startDevice } from "../../src/device/device.js";
import { IdeKmEngine } from "../../src/device/ide-km.js";
import { SpdmError } from "../../src/spdm/responder-context.js";
import { logLines } from "../support/log-lines.js";
import { findExtCap, modelOf } from "../support/model.js";
import { withVdmSession } from "../support/vdm-session.js";

const RID = 0x100; // bus 1, device 0, function 0: the default description
const SUB_STREAMS = [IdeSubStream.PR, IdeSubStream.NPR, IdeSubStream.CPL];
/** The six slots in DMTF's requester's order: RX PR, NPR, CPL, then TX. */
const SLOTS = [IdeDirection.RX, IdeDirection.TX].flatMap((direction) =>
  SUB_STREAMS.map((subStream) => ({ direction, subStream })),
);
const target = (o: Partial<KeyTarget> = {}): KeyTarget => ({
  streamId: 0,
  keySet: 0,
  direction: 0,
  subStream: 0,
  portIndex: 1,
  ...o,
});
const keyProg = (o: Partial<KeyTarget> = {}) =>
  encodeIdeKm({
    object: "KEY_PROG",
    ...target(o),
    key: randomBytes(32),
    ifv: Buffer.from("0000000001000000", "hex"),
  });

function setup(description: unknown = {}) {
  const lines = logLines();
  const desc = parseDescription(description);
  const model = modelOf(desc);
  const engine = new IdeKmEngine(model, RID, desc.functions[0]!.ide!.portIndex, lines.log);
  const ask = (m: IdeKmMessage | Buffer) =>
    decodeIdeKm(engine.handle(Buffer.isBuffer(m) ? m : encodeIdeKm(m)));
  const cap = findExtCap(model, RID, ExtCapId.IDE)!;
  const stream = model.ideStreams(RID)[0]!;
  const control = cap + Ide.LINK_STREAM_0 + IdeSel.CTL;
  const status = () => model.configRead(RID, cap + Ide.LINK_STREAM_0 + IdeSel.STS, 4) & IdeStreamSts.STATE;
  return { lines, model, engine, ask, cap, stream, control, status };
}

function expectSpdmError(f: () => unknown, code: number) {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SpdmError);
    expect((e as SpdmError).errorCode).toBe(code);
    return;
  }
  expect.fail("no error");
}

describe("IDE_KM responder", () => {
  it("QUERY: QUERY_RESP with the capability's live registers, the port and the function's routing ID", () => {
    const { ask, model, cap, control } = setup();
    model.configWrite(RID, control, 4, 0x0500_0000); // Stream ID 5
    const r = ask({ object: "QUERY", portIndex: 1 });
    expect(r).toMatchObject({
      object: "QUERY_RESP",
      portIndex: 1,
      devFuncNum: 0,
      busNum: 1,
      segment: 0,
      maxPortIndex: 1,
      ideCapability: model.configRead(RID, cap + Ide.CAP, 4),
      ideControl: 0,
      linkStreams: [],
      trailingRegisters: [],
    });
    if (r.object !== "QUERY_RESP") throw new Error(r.object);
    expect(r.selectiveStreams).toHaveLength(1);
    expect(r.selectiveStreams[0]).toMatchObject({ capability: 1, control: 0x0500_0000, status: 0 });
    expect(r.selectiveStreams[0]!.addressAssociations).toHaveLength(1);
  });

  it("QUERY_RESP has a block for every link and selective stream the capability announces", () => {
    const { ask } = setup({
      functions: [{ ide: { linkStreams: 2, selectiveStreams: 3, addressBlocks: 2 } }],
    });
    const r = ask({ object: "QUERY", portIndex: 1 });
    if (r.object !== "QUERY_RESP") throw new Error(r.object);
    expect(r.linkStreams).toHaveLength(2);
    expect(r.selectiveStreams.map((s) => s.addressAssociations.length)).toEqual([2, 2, 2]);
    expect(r.trailingRegisters).toEqual([]);
  });

  it("answers the PortIndex the description gives, and only that one", () => {
    const { ask } = setup({ functions: [{ ide: { portIndex: 3 } }] });
    expect(ask({ object: "QUERY", portIndex: 3 })).toMatchObject({ portIndex: 3, maxPortIndex: 3 });
    expectSpdmError(() => ask({ object: "QUERY", portIndex: 1 }), SpdmErrorCode.InvalidRequest);
    expect(ask(keyProg({ portIndex: 1 }))).toMatchObject({ status: KpAckStatus.UNSUPPORTED_PORT_INDEX });
    expect(ask(keyProg({ portIndex: 3 }))).toMatchObject({ status: KpAckStatus.SUCCESS });
  });

  it("KEY_PROG and K_SET_GO for all six sub-streams make the stream Secure once enabled; K_SET_STOP ends it", () => {
    const { ask, model, stream, control, status } = setup();
    for (const [i, slot] of SLOTS.entries()) {
      expect(ask(keyProg(slot))).toEqual({ object: "KP_ACK", ...target(slot), status: KpAckStatus.SUCCESS });
      expect(ask({ object: "K_SET_GO", ...target(slot) })).toEqual({
        object: "K_GOSTOP_ACK",
        ...target(slot),
      });
      if (i < SLOTS.length - 1) {
        model.configWrite(RID, control, 4, IdeStreamCtl.ENABLE);
        expect(stream.state).toBe("insecure");
        model.configWrite(RID, control, 4, 0);
      }
    }
    expect(stream.state).toBe("insecure");
    model.configWrite(RID, control, 4, IdeStreamCtl.ENABLE);
    expect(stream.state).toBe("secure");
    expect(status()).toBe(IdeStreamState.SECURE);
    // Switching one slot to K1 keeps it Secure; stopping the old K0 there changes nothing.
    ask(keyProg({ keySet: 1 }));
    ask({ object: "K_SET_GO", ...target({ keySet: 1 }) });
    ask({ object: "K_SET_STOP", ...target() });
    expect(stream.state).toBe("secure");
    expect(ask({ object: "K_SET_STOP", ...target({ keySet: 1 }) })).toEqual({
      object: "K_GOSTOP_ACK",
      ...target({ keySet: 1 }),
    });
    expect(stream.state).toBe("insecure");
    expect(status()).toBe(IdeStreamState.INSECURE);
    // The stopped key set is forgotten: going again needs a new KEY_PROG.
    expectSpdmError(
      () => ask({ object: "K_SET_GO", ...target({ keySet: 1 }) }),
      SpdmErrorCode.InvalidRequest,
    );
    ask(keyProg());
    ask({ object: "K_SET_GO", ...target() });
    expect(stream.state).toBe("secure");
  });

  it("KP_ACK statuses: Incorrect Length, Unsupported Port Index, Unsupported Value", () => {
    const { ask } = setup();
    const good = keyProg();
    for (const bad of [good.subarray(0, 46), Buffer.concat([good, Buffer.alloc(1)]), good.subarray(0, 7)])
      expect(ask(bad)).toEqual({ object: "KP_ACK", ...target(), status: KpAckStatus.INCORRECT_LENGTH });
    expect(ask(keyProg({ portIndex: 0 }))).toMatchObject({
      portIndex: 0,
      status: KpAckStatus.UNSUPPORTED_PORT_INDEX,
    });
    expect(ask(keyProg({ streamId: 7 }))).toMatchObject({
      streamId: 7,
      status: KpAckStatus.UNSUPPORTED_VALUE,
    });
    expect(ask(keyProg({ subStream: 3 }))).toMatchObject({
      subStream: 3,
      status: KpAckStatus.UNSUPPORTED_VALUE,
    });
  });

  it("QUERY or K_SET for no port or stream here, or K_SET_GO of an unprogrammed key set: ERROR InvalidRequest", () => {
    const { ask } = setup();
    const cases: IdeKmMessage[] = [
      { object: "QUERY", portIndex: 2 },
      { object: "K_SET_GO", ...target() },
      { object: "K_SET_GO", ...target({ portIndex: 0 }) },
      { object: "K_SET_STOP", ...target({ streamId: 9 }) },
      { object: "K_SET_STOP", ...target({ subStream: 4 }) },
    ];
    for (const m of cases) expectSpdmError(() => ask(m), SpdmErrorCode.InvalidRequest);
  });

  it("malformed messages are DecodeErrors (the SPDM responder's InvalidRequest)", () => {
    const { engine } = setup();
    const kpAck = encodeIdeKm({ object: "KP_ACK", ...target(), status: 0 });
    for (const bad of ["", "00", "000001ff", "07", "02000000", "0400000000000100"].map((h) =>
      Buffer.from(h, "hex"),
    ))
      expect(() => engine.handle(bad), bad.toString("hex")).toThrow(DecodeError);
    expect(() => engine.handle(kpAck)).toThrow(DecodeError);
  });

  it("keys never reach the log", () => {
    const { ask, lines } = setup();
    const keys: Buffer[] = [];
    for (const slot of SLOTS) {
      const m = keyProg(slot);
      keys.push(m.subarray(7));
      ask(m);
      ask({ object: "K_SET_GO", ...target(slot) });
    }
    const text = lines.written.join("");
    expect(text).toContain("IDE-KM KEY_PROG");
    for (const k of keys) {
      expect(text).not.toContain(k.subarray(0, 32).toString("hex"));
      expect(text).not.toContain(k.subarray(0, 32).toString("base64"));
    }
  });
});

describe("IDE_KM through a secure session to a device on a socket", () => {
  it("QUERY, KEY_PROG + K_SET_GO ×6, K_SET_STOP ×6; a malformed message is ERROR InvalidRequest and the session goes on", async () => {
    const lines = logLines("info");
    const device = await startDevice({ description: parseDescription({}), port: 0, log: lines.log });
    try {
      const stream = device.model.ideStreams(RID)[0]!;
      await withVdmSession(device, "IDE_KM", async ({ send, ask: askBytes }) => {
        const ask = async (m: IdeKmMessage | Buffer) =>
          decodeIdeKm(await askBytes(Buffer.isBuffer(m) ? m : encodeIdeKm(m)));
        expect(await ask({ object: "QUERY", portIndex: 1 })).toMatchObject({
          object: "QUERY_RESP",
          portIndex: 1,
        });
        for (const slot of SLOTS) {
          expect(await ask(keyProg(slot))).toMatchObject({ object: "KP_ACK", status: 0, ...slot });
          expect(await ask({ object: "K_SET_GO", ...target(slot) })).toMatchObject({
            object: "K_GOSTOP_ACK",
          });
        }
        device.model.configWrite(
          RID,
          findExtCap(device.model, RID, ExtCapId.IDE)! + Ide.LINK_STREAM_0 + IdeSel.CTL,
          4,
          IdeStreamCtl.ENABLE,
        );
        expect(stream.state).toBe("secure");
        expect(await send(Buffer.from("0000", "hex"))).toMatchObject({
          code: "ERROR",
          errorCode: SpdmErrorCode.InvalidRequest,
        });
        for (const slot of SLOTS)
          expect(await ask({ object: "K_SET_STOP", ...target(slot) })).toMatchObject({
            object: "K_GOSTOP_ACK",
          });
        expect(stream.state).toBe("insecure");
      });
    } finally {
      await device.stop();
    }
  });
});
