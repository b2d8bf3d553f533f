/**
 * The PCI-SIG vendor-defined payload (StandardID 3, VendorID 0x0001 or CXL's 0x1E98, Protocol ID),
 * and known answers: every PCI IDE-KM, TDISP and CXL IDE-KM message spdm-emu 85436d53 exchanged in
 * the spdm13_app recording decodes through SPDM, the carrier and its protocol codec, and encodes back
 * to the recorded bytes.
 */
import { describe, expect, it } from "vitest";
import {
  CXL_DEFAULT_IV,
  type CxlIdeKmMessage,
  type CxlIdeKmMessageOf,
  CxlIvMode,
  decodeCxlIdeKm,
  encodeCxlIdeKm,
} from "../../protocol/cxl-ide-km.js";
import { decodeIdeKm, encodeIdeKm, type IdeKmMessage } from "../../protocol/ide-km.js";
import { decodePciSigVdm, encodePciSigVdm } from "../../protocol/pcisig-vdm.js";
import { decodeSpdm, encodeSpdm, type VendorDefinedRequest } from "../../protocol/spdm/index.js";
import {
  decodeDeviceInterfaceReport,
  decodeTdisp,
  encodeDeviceInterfaceReport,
  encodeTdisp,
  MmioRangeAttribute,
  TdispCode,
  type TdispMessage,
} from "../../protocol/tdisp.js";
import { decodeError, hex } from "../support/codec.js";
import { type MessageFrame, readDecoded, type VdmLabel } from "../vectors.js";

const PCI_SIG = { standardId: 3, vendorId: hex("0100") };
const CXL = { standardId: 3, vendorId: hex("981e") };

describe("PCI-SIG vendor-defined payload", () => {
  it("splits off the Protocol ID, and puts it back", () => {
    const v = decodePciSigVdm({ ...PCI_SIG, payload: hex("01 1081") });
    expect(v).toEqual({ protocol: "TDISP", message: hex("1081") });
    expect(encodePciSigVdm(v)).toEqual({ ...PCI_SIG, payload: hex("01 1081") });
    expect(encodePciSigVdm({ protocol: "IDE_KM", message: hex("000001") }).payload).toEqual(hex("00 000001"));
  });

  it("CXL's VendorID 0x1E98 with Protocol ID 0 is CXL IDE-KM, not PCI IDE-KM", () => {
    const v = decodePciSigVdm({ ...CXL, payload: hex("00 000000") });
    expect(v).toEqual({ protocol: "CXL_IDE_KM", message: hex("000000") });
    expect(encodePciSigVdm(v)).toEqual({ ...CXL, payload: hex("00 000000") });
  });

  it.each([
    ["another registry", { ...PCI_SIG, standardId: 7, payload: hex("00") }, "vdm.standardId", 4],
    ["a 1-byte VendorID", { ...PCI_SIG, vendorId: hex("01"), payload: hex("00") }, "vdm.vendorId", 6],
    ["a Protocol ID CXL does not have", { ...CXL, payload: hex("02 00") }, "vdm.protocolId", 11],
    ["another VendorID", { ...PCI_SIG, vendorId: hex("8680"), payload: hex("00") }, "vdm.vendorId", 7],
    ["no Protocol ID", { ...PCI_SIG, payload: hex("") }, "vdm.protocolId", 11],
    ["an unknown Protocol ID", { ...PCI_SIG, payload: hex("02 00") }, "vdm.protocolId", 11],
  ])("rejects %s with a DecodeError naming the field", (_what, fields, field, offset) => {
    const e = decodeError(() => decodePciSigVdm(fields));
    expect([e.field, e.offset]).toEqual([field, offset]);
  });

  it("copies the message instead of aliasing the payload", () => {
    const payload = hex("00 000001");
    const v = decodePciSigVdm({ ...PCI_SIG, payload });
    payload.fill(0xee);
    expect(v.message).toEqual(hex("000001"));
  });
});

// ---- the recording ------------------------------------------------------------------------------

/** libspdm's names, as the recorder prints them, where ours (the specification's) differ. */
const OUR_NAME: Record<string, string> = {
  K_SET_GOSTOP_ACK: "K_GOSTOP_ACK",
  GET_VERSION: "GET_TDISP_VERSION",
  VERSION: "TDISP_VERSION",
  GET_CAPABILITIES: "GET_TDISP_CAPABILITIES",
  CAPABILITIES: "TDISP_CAPABILITIES",
  LOCK_INTERFACE_REQ: "LOCK_INTERFACE_REQUEST",
  LOCK_INTERFACE_RSP: "LOCK_INTERFACE_RESPONSE",
  START_INTERFACE_REQ: "START_INTERFACE_REQUEST",
  START_INTERFACE_RSP: "START_INTERFACE_RESPONSE",
  STOP_INTERFACE_REQ: "STOP_INTERFACE_REQUEST",
  STOP_INTERFACE_RSP: "STOP_INTERFACE_RESPONSE",
};

type Recorded = { frame: MessageFrame & { vdm: VdmLabel } } & (
  | { protocol: "IDE_KM"; message: IdeKmMessage }
  | { protocol: "TDISP"; message: TdispMessage }
  | { protocol: "CXL_IDE_KM"; message: CxlIdeKmMessage }
);

const frames = readDecoded("spdm13_app").messages.filter((m): m is Recorded["frame"] => m.vdm !== undefined);
const vendorFields = (f: MessageFrame) => {
  const m = decodeSpdm(f.plain);
  if (m.code !== "VENDOR_DEFINED_REQUEST" && m.code !== "VENDOR_DEFINED_RESPONSE")
    throw new Error(`frame ${f.index} is ${m.code}`);
  return m;
};
const IDE_KM_REQUESTS = new Set(["QUERY", "KEY_PROG", "K_SET_GO", "K_SET_STOP", "GET_KEY"]);
const isRequest = (r: Recorded) =>
  r.protocol === "TDISP" ? (TdispCode[r.message.code] & 0x80) !== 0 : IDE_KM_REQUESTS.has(r.message.object);
/** Our name of the protocol the recorder labels, e.g. CXL IDE_KM → CXL_IDE_KM. */
const protocolOf = (v: VdmLabel) => (v.family === "CXL" ? `CXL_${v.protocol}` : v.protocol);
/** The protocols whose codecs exist; the recording's other vendor-defined messages are counted, not decoded. */
const DECODED = new Set(["IDE_KM", "TDISP", "CXL_IDE_KM"]);

/** The messages of DECODED protocols, decoded all the way down. */
const recorded: Recorded[] = frames
  .filter((f) => DECODED.has(protocolOf(f.vdm)))
  .map((frame) => {
    const vdm = decodePciSigVdm(vendorFields(frame));
    if (vdm.protocol === "IDE_KM")
      return { frame, protocol: vdm.protocol, message: decodeIdeKm(vdm.message) };
    if (vdm.protocol === "TDISP") return { frame, protocol: vdm.protocol, message: decodeTdisp(vdm.message) };
    if (vdm.protocol === "CXL_IDE_KM")
      return { frame, protocol: vdm.protocol, message: decodeCxlIdeKm(vdm.message) };
    throw new Error(`frame ${frame.index}: no codec for ${vdm.protocol}`);
  });
const nameOf = (r: Recorded) => (r.protocol === "TDISP" ? r.message.code : r.message.object);
const encode = (r: Recorded) => {
  switch (r.protocol) {
    case "IDE_KM":
      return encodeIdeKm(r.message);
    case "TDISP":
      return encodeTdisp(r.message);
    case "CXL_IDE_KM":
      return encodeCxlIdeKm(r.message);
  }
};
/** The recorded messages of one kind, in order, as plain records for field checks. */
const all = (protocol: Recorded["protocol"], name: string) =>
  recorded
    .filter((r) => r.protocol === protocol && nameOf(r) === name)
    .map((r) => r.message as unknown as Record<string, unknown>);

/** Two sessions (KEY_EX slot 0 and slot 4) each ran the same APP step; CXL TSP also ran in a third. */
const EXPECTED_COUNTS = {
  "IDE_KM QUERY": 2,
  "IDE_KM QUERY_RESP": 2,
  "IDE_KM KEY_PROG": 12,
  "IDE_KM KP_ACK": 12,
  "IDE_KM K_SET_GO": 12,
  "IDE_KM K_SET_STOP": 12,
  "IDE_KM K_GOSTOP_ACK": 24,
  "TDISP GET_TDISP_VERSION": 2,
  "TDISP TDISP_VERSION": 2,
  "TDISP GET_TDISP_CAPABILITIES": 2,
  "TDISP TDISP_CAPABILITIES": 2,
  "TDISP LOCK_INTERFACE_REQUEST": 2,
  "TDISP LOCK_INTERFACE_RESPONSE": 2,
  "TDISP GET_DEVICE_INTERFACE_REPORT": 4,
  "TDISP DEVICE_INTERFACE_REPORT": 4,
  "TDISP GET_DEVICE_INTERFACE_STATE": 8,
  "TDISP DEVICE_INTERFACE_STATE": 8,
  "TDISP START_INTERFACE_REQUEST": 2,
  "TDISP START_INTERFACE_RESPONSE": 2,
  "TDISP STOP_INTERFACE_REQUEST": 2,
  "TDISP STOP_INTERFACE_RESPONSE": 2,
  "CXL_IDE_KM QUERY": 2,
  "CXL_IDE_KM QUERY_RESP": 2,
  "CXL_IDE_KM GET_KEY": 2,
  "CXL_IDE_KM GET_KEY_ACK": 2,
  "CXL_IDE_KM KEY_PROG": 4,
  "CXL_IDE_KM KP_ACK": 4,
  "CXL_IDE_KM K_SET_GO": 4,
  "CXL_IDE_KM K_SET_STOP": 4,
  "CXL_IDE_KM K_GOSTOP_ACK": 8,
};
/** The recording's vendor-defined messages checked in their own test (cxl-tsp-codec.test.ts). */
const ELSEWHERE = { CXL_TSP: 36 };

describe("PCI IDE-KM, TDISP and CXL IDE-KM messages of spdm13_app (spdm-emu 85436d53)", () => {
  it("every vendor-defined message is counted: 76 IDE-KM, 44 TDISP and 32 CXL IDE-KM checked, 36 CXL TSP in cxl-tsp-codec.test.ts", () => {
    const counts: Record<string, number> = {};
    for (const r of recorded)
      counts[`${r.protocol} ${nameOf(r)}`] = (counts[`${r.protocol} ${nameOf(r)}`] ?? 0) + 1;
    expect(counts).toEqual(EXPECTED_COUNTS);
    const rest: Record<string, number> = {};
    for (const f of frames.filter((f) => !DECODED.has(protocolOf(f.vdm))))
      rest[protocolOf(f.vdm)] = (rest[protocolOf(f.vdm)] ?? 0) + 1;
    expect(rest).toEqual(ELSEWHERE);
    expect([recorded.length, frames.length]).toEqual([152, 188]);
    for (const f of frames.filter((f) => f.vdm.family === "CXL"))
      expect(vendorFields(f).vendorId).toEqual(hex("981e"));
  });

  it("each decodes as the message the recorder names, and in the right direction", () => {
    for (const r of recorded) {
      expect(r.protocol).toBe(protocolOf(r.frame.vdm));
      expect(nameOf(r)).toBe(OUR_NAME[r.frame.vdm.name] ?? r.frame.vdm.name);
      expect(r.frame.name).toBe(isRequest(r) ? "VENDOR_DEFINED_REQUEST" : "VENDOR_DEFINED_RESPONSE");
    }
  });

  it("each re-encodes to the recorded bytes, through the carrier and SPDM", () => {
    for (const r of recorded) {
      const message = encode(r);
      const spdm = vendorFields(r.frame);
      expect(message).toEqual(decodePciSigVdm(spdm).message);
      const fields = encodePciSigVdm({ protocol: r.protocol, message });
      expect(encodeSpdm({ ...(spdm as VendorDefinedRequest), ...fields })).toEqual(r.frame.plain);
    }
  });

  it("IDE-KM: port 1, the six keys in spdm-emu's order, IFV 0/1, 74 zero register DWs", () => {
    const [resp] = all("IDE_KM", "QUERY_RESP");
    expect(resp).toMatchObject({ portIndex: 1, maxPortIndex: 7, ideCapability: 0, linkStreams: [] });
    expect(resp!["trailingRegisters"]).toEqual(Array(72).fill(0));
    const progs = all("IDE_KM", "KEY_PROG").slice(0, 6);
    expect(progs.map((m) => [m["direction"], m["subStream"], m["keySet"], m["portIndex"]])).toEqual([
      [0, 0, 0, 1],
      [0, 1, 0, 1],
      [0, 2, 0, 1],
      [1, 0, 0, 1],
      [1, 1, 0, 1],
      [1, 2, 0, 1],
    ]);
    for (const m of progs) expect(m["ifv"]).toEqual(hex("00000000 01000000"));
    expect(all("IDE_KM", "KP_ACK").every((m) => m["status"] === 0)).toBe(true);
  });

  it("CXL IDE-KM: port 0, Caps 0x71, 9 zero registers; RX programmed with GET_KEY's key and IV (mode IV_DEFAULT), TX with the default IV", () => {
    const cxl = (name: string) =>
      recorded
        .filter((r) => r.protocol === "CXL_IDE_KM" && nameOf(r) === name)
        .map((r) => r.message as CxlIdeKmMessage);
    for (const resp of cxl("QUERY_RESP"))
      expect(resp).toEqual({
        object: "QUERY_RESP",
        portIndex: 0,
        devFuncNum: 0,
        busNum: 0,
        segment: 0,
        maxPortIndex: 7,
        caps: 0x71,
        ideRegisters: Array(9).fill(0),
      });
    const got = cxl("GET_KEY_ACK") as CxlIdeKmMessageOf<"GET_KEY_ACK">[];
    const progs = cxl("KEY_PROG") as CxlIdeKmMessageOf<"KEY_PROG">[];
    expect(got.map((m) => m.iv)).toEqual([
      hex("00000000 01000000 02000000"),
      hex("00000000 01000000 02000000"),
    ]);
    // Per session: RX (0x88) with GET_KEY's key and IV, then TX (0x82) with a fresh key.
    for (const [i, ack] of got.entries()) {
      const [rx, tx] = progs.slice(2 * i, 2 * i + 2);
      expect(rx).toMatchObject({
        direction: 0,
        mode: CxlIvMode.DEFAULT,
        subStream: 8,
        key: ack.key,
        iv: ack.iv,
      });
      expect(tx).toMatchObject({ direction: 1, mode: CxlIvMode.INITIAL, subStream: 8, iv: CXL_DEFAULT_IV });
    }
    expect(cxl("KP_ACK").every((m) => m.object === "KP_ACK" && m.status === 0)).toBe(true);
    expect(cxl("K_SET_GO").map((m) => (m as CxlIdeKmMessageOf<"K_SET_GO">).direction)).toEqual([0, 1, 0, 1]);
  });

  it("TDISP: FunctionID 0xBEEF, the TDI walks UNLOCKED → LOCKED → RUN → UNLOCKED, START echoes LOCK's nonce", () => {
    expect(recorded.every((r) => r.protocol !== "TDISP" || r.message.functionId === 0xbeef)).toBe(true);
    expect(all("TDISP", "DEVICE_INTERFACE_STATE").map((m) => m["tdiState"])).toEqual([
      0, 1, 2, 0, 0, 1, 2, 0,
    ]);
    const [lock] = all("TDISP", "LOCK_INTERFACE_REQUEST");
    expect(lock).toMatchObject({ flags: 0x7, mmioReportingOffset: 0xd000_0000n, bindP2pAddressMask: 0n });
    const nonces = (name: "LOCK_INTERFACE_RESPONSE" | "START_INTERFACE_REQUEST") =>
      all("TDISP", name).map((m) => m["startInterfaceNonce"]);
    expect(nonces("START_INTERFACE_REQUEST")).toEqual(nonces("LOCK_INTERFACE_RESPONSE"));
  });

  it("TDISP: the report, 0x40 + 0x24 bytes, decodes to spdm-emu's four ranges and re-encodes", () => {
    const portions = all("TDISP", "DEVICE_INTERFACE_REPORT");
    expect(portions.map((m) => [(m["portion"] as Buffer).length, m["remainderLength"]])).toEqual([
      [0x40, 0x24],
      [0x24, 0],
      [0x40, 0x24],
      [0x24, 0],
    ]);
    for (const session of [portions.slice(0, 2), portions.slice(2)]) {
      const bytes = Buffer.concat(session.map((m) => m["portion"] as Buffer));
      const report = decodeDeviceInterfaceReport(bytes);
      expect(report).toEqual({
        interfaceInfo: 0x3,
        msixMessageControl: 0,
        lnrControl: 0,
        tphControl: 0,
        mmioRanges: [
          {
            firstPage: 0x0n,
            numberOfPages: 1,
            rangeAttributes: MmioRangeAttribute.IS_NON_TEE_MEM,
            rangeId: 1,
          },
          {
            firstPage: 0x8000n,
            numberOfPages: 4,
            rangeAttributes: MmioRangeAttribute.IS_MEM_ATTR_UPDATABLE,
            rangeId: 2,
          },
          {
            firstPage: 0x10000n,
            numberOfPages: 8,
            rangeAttributes: MmioRangeAttribute.IS_MEM_ATTR_UPDATABLE,
            rangeId: 3,
          },
          {
            firstPage: 0x20000n,
            numberOfPages: 8,
            rangeAttributes: MmioRangeAttribute.IS_MEM_ATTR_UPDATABLE,
            rangeId: 4,
          },
        ],
        deviceSpecificInfo: Buffer.from("tdisp_dev_emu\0\0\0"),
      });
      expect(encodeDeviceInterfaceReport(report)).toEqual(bytes);
    }
  });
});
