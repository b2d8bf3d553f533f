/**
 * CXL TSP messages (protocol/cxl-tsp.ts) and known answers: every CXL TSP message spdm-emu 85436d53
 * exchanged in the spdm13_app recording decodes through SPDM, the carrier (VendorID 0x1E98) and the
 * TSP codec, and encodes back to the recorded bytes; the secondary PSK session's keys follow from
 * the key material the primary session's SET_TARGET_CONFIGURATION carried.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeTsp,
  decodeTspConfigurationReport,
  encodeTsp,
  encodeTspConfigurationReport,
  IB_GRANULARITY_ENTRIES,
  MAX_SECONDARY_SESSIONS,
  SECONDARY_SESSION_KEY_BYTES,
  TSP_VERSION_1_0,
  TspCode,
  type TspMessage,
  type TspMessageOf,
} from "../../protocol/cxl-tsp.js";
import { decodePciSigVdm, encodePciSigVdm } from "../../protocol/pcisig-vdm.js";
import { decodeSpdm, encodeSpdm, type VendorDefinedRequest } from "../../protocol/spdm/index.js";
import { HASH, hash } from "../../src/crypto/suites.js";
import { deriveDataKeys, deriveHandshakeKeys } from "../../src/spdm/key-schedule.js";
import { decodeError, expectTruncationsRejected, hex } from "../support/codec.js";
import { type MessageFrame, readDecoded, readSecrets, secret, vcaTranscript } from "../vectors.js";

// ---- the recording ------------------------------------------------------------------------------

const capture = readDecoded("spdm13_app");
const vendorFields = (f: MessageFrame) => {
  const m = decodeSpdm(f.plain);
  if (m.code !== "VENDOR_DEFINED_REQUEST" && m.code !== "VENDOR_DEFINED_RESPONSE")
    throw new Error(`frame ${f.index} is ${m.code}`);
  return m;
};
const tspFrames = capture.messages.filter((m) => m.vdm?.family === "CXL" && m.vdm.protocol === "TSP");
const recorded = tspFrames.map((frame) => {
  const vdm = decodePciSigVdm(vendorFields(frame));
  return { frame, protocol: vdm.protocol, bytes: vdm.message, message: decodeTsp(vdm.message) };
});
const all = <N extends TspMessage["code"]>(name: N) =>
  recorded.filter((r) => r.message.code === name).map((r) => r.message as TspMessageOf<N>);

/** libspdm's response names, as the recorder prints them, where ours (the …_RSP spelling) differ. */
const OUR_NAME: Record<string, string> = {
  TARGET_TSP_VERSION: "GET_TARGET_TSP_VERSION_RSP",
  TARGET_CAPABILITIES: "GET_TARGET_CAPABILITIES_RSP",
  TARGET_CONFIGURATION: "GET_TARGET_CONFIGURATION_RSP",
  TARGET_CONFIGURATION_REPORT: "GET_TARGET_CONFIGURATION_REPORT_RSP",
};

/** Session 1 (PRIMARY), its secondary PSK session, and session 3 (OTHER: version and caps only). */
const EXPECTED_COUNTS = {
  GET_TARGET_TSP_VERSION: 3,
  GET_TARGET_TSP_VERSION_RSP: 3,
  GET_TARGET_CAPABILITIES: 3,
  GET_TARGET_CAPABILITIES_RSP: 3,
  SET_TARGET_CONFIGURATION: 1,
  SET_TARGET_CONFIGURATION_RSP: 1,
  GET_TARGET_CONFIGURATION: 4,
  GET_TARGET_CONFIGURATION_RSP: 4,
  GET_TARGET_CONFIGURATION_REPORT: 2,
  GET_TARGET_CONFIGURATION_REPORT_RSP: 2,
  LOCK_TARGET_CONFIGURATION: 1,
  LOCK_TARGET_CONFIGURATION_RSP: 1,
  SET_TARGET_TE_STATE: 4,
  SET_TARGET_TE_STATE_RSP: 4,
};

describe("CXL TSP messages of spdm13_app (spdm-emu 85436d53)", () => {
  it("all 36 are counted, each as the message the recorder names, in the right direction", () => {
    const counts: Record<string, number> = {};
    for (const r of recorded) counts[r.message.code] = (counts[r.message.code] ?? 0) + 1;
    expect(counts).toEqual(EXPECTED_COUNTS);
    expect(recorded).toHaveLength(36);
    for (const r of recorded) {
      expect(r.protocol).toBe("CXL_TSP");
      expect(r.message.version).toBe(TSP_VERSION_1_0);
      expect(r.message.code).toBe(OUR_NAME[r.frame.vdm!.name] ?? r.frame.vdm!.name);
      const request = (TspCode[r.message.code] & 0x80) !== 0;
      expect(r.frame.name).toBe(request ? "VENDOR_DEFINED_REQUEST" : "VENDOR_DEFINED_RESPONSE");
    }
  });

  it("each re-encodes to the recorded bytes, through the carrier and SPDM", () => {
    for (const r of recorded) {
      const message = encodeTsp(r.message);
      expect(message).toEqual(r.bytes);
      const spdm = vendorFields(r.frame);
      const fields = encodePciSigVdm({ protocol: "CXL_TSP", message });
      expect(encodeSpdm({ ...(spdm as VendorDefinedRequest), ...fields })).toEqual(r.frame.plain);
    }
  });

  it("each rejects every truncation and a trailing byte", () => {
    for (const r of recorded) {
      expectTruncationsRejected(r.bytes, decodeTsp, "tsp.");
      expect(decodeError(() => decodeTsp(Buffer.concat([r.bytes, hex("00")]))).field).toMatch(/trailing$/);
    }
  });

  it("has spdm-emu's capabilities, the requester's fixed configuration and one secondary session", () => {
    expect(all("GET_TARGET_CAPABILITIES_RSP")[0]).toMatchObject({
      memoryEncryptionFeaturesSupported: 0x1,
      memoryEncryptionAlgorithmsSupported: 0x2,
      numberOfRangeBasedKeys: 0,
      teStateChangeAndAccessControlFeaturesSupported: 0x16,
      supportedExplicitOobTeStateGranularity: 0,
      supportedExplicitIbTeStateGranularity: 0x1,
      configurationFeaturesSupported: 0x3,
      numberOfCkids: 0,
      numberOfSecondarySessions: 1,
    });
    const [set] = all("SET_TARGET_CONFIGURATION");
    expect(set).toMatchObject({
      memoryEncryptionFeaturesEnable: 0x1,
      memoryEncryptionAlgorithmSelect: 0x2,
      teStateChangeAndAccessControlFeaturesEnable: 0x16,
      configurationFeaturesEnable: 0x1,
      configurationValidityFlags: 0x1,
    });
    expect(set!.explicitIbTeStateGranularityEntries.map((e) => e.lengthIndex)).toEqual([
      0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    expect(set!.secondarySessionPskKeyMaterial.slice(1)).toEqual(Array(3).fill(Buffer.alloc(32)));
    expect(all("GET_TARGET_CONFIGURATION_RSP").map((m) => m.currentTspState)).toEqual([0, 1, 1, 1]);
    expect(all("SET_TARGET_TE_STATE").map((m) => [m.teState, m.memoryRanges])).toEqual(
      [1, 0, 1, 0].map((s) => [s, [{ startingAddress: 0x100000n, length: 0x10000n }]]),
    );
  });

  it("the configuration report: 220 bytes in one portion, ValidTSPReportFields 1, re-encodes", () => {
    for (const m of all("GET_TARGET_CONFIGURATION_REPORT_RSP")) {
      expect([m.portion.length, m.remainderLength]).toEqual([0xdc, 0]);
      const report = decodeTspConfigurationReport(m.portion);
      expect(report.validTspReportFields).toBe(1);
      expect(report.hdmDecoders).toHaveLength(0);
      expect(encodeTspConfigurationReport(report)).toEqual(m.portion);
    }
    expect(decodeError(() => decodeTspConfigurationReport(Buffer.alloc(0xdb))).field).toBe("tsp.report");
  });
});

describe("the secondary PSK session of spdm13_app", () => {
  const { messages, negotiated: n } = capture;
  const secrets = readSecrets("spdm13_app");
  const suite = { version: n.version, hash: n.hash, aead: n.aead };
  const nextMessage = (from: MessageFrame, name: string) =>
    messages.find((m) => m.index > from.index && m.name === name)!;
  const exchange = messages.find(
    (m) => m.name === "PSK_EXCHANGE" && decodeSpdm(m.plain).code === "PSK_EXCHANGE",
  )!;

  it("is keyed by SecondarySessionPSKKeyMaterial[i] under the hint SECONDARY_SESSION_<i>_PSK (NUL included)", () => {
    const m = decodeSpdm(exchange.plain);
    if (m.code !== "PSK_EXCHANGE") throw new Error("not PSK_EXCHANGE");
    expect(m.pskHint).toEqual(Buffer.from("SECONDARY_SESSION_0_PSK\0", "latin1"));
    const index = Number(/^SECONDARY_SESSION_(\d)_PSK\0$/.exec(m.pskHint.toString("latin1"))![1]);
    const psk = all("SET_TARGET_CONFIGURATION")[0]!.secondarySessionPskKeyMaterial[index]!;
    expect(psk).toEqual(secret(secrets, "session2.psk"));

    // Our key schedule, from that PSK and the recorded transcript alone.
    const H = HASH[n.hash].size;
    const rsp = nextMessage(exchange, "PSK_EXCHANGE_RSP");
    const fin = nextMessage(rsp, "PSK_FINISH");
    const finRsp = nextMessage(fin, "PSK_FINISH_RSP");
    const A = vcaTranscript(messages);
    const th1 = hash(n.hash, Buffer.concat([A, exchange.plain, rsp.plain.subarray(0, -H)]));
    const th2 = hash(n.hash, Buffer.concat([A, exchange.plain, rsp.plain, fin.plain, finRsp.plain]));
    const hs = deriveHandshakeKeys(suite, { psk }, th1);
    const data = deriveDataKeys(suite, hs.handshakeSecret, th2);
    const ours = {
      handshake_secret: hs.handshakeSecret,
      request_handshake_key: hs.request.key,
      response_handshake_key: hs.response.key,
      master_secret: data.masterSecret,
      request_data_key: data.request.key,
      request_data_iv: data.request.iv,
      response_data_key: data.response.key,
      response_data_iv: data.response.iv,
    };
    for (const [name, value] of Object.entries(ours))
      expect(value.toString("hex"), name).toBe(secret(secrets, `session2.${name}`).toString("hex"));
  });
});

// ---- round trips --------------------------------------------------------------------------------

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b));
const configuration = {
  version: u8,
  memoryEncryptionFeaturesEnable: u16,
  memoryEncryptionAlgorithmSelect: u32,
  teStateChangeAndAccessControlFeaturesEnable: u16,
  explicitOobTeStateGranularity: u32,
  configurationFeaturesEnable: u16,
  ckidBase: u32,
  numberOfCkids: u32,
  explicitIbTeStateGranularityEntries: fc.array(fc.record({ granularity: u64, lengthIndex: u8 }), {
    minLength: IB_GRANULARITY_ENTRIES,
    maxLength: IB_GRANULARITY_ENTRIES,
  }),
};
const arbitraryMessage: fc.Arbitrary<TspMessage> = fc.oneof(
  fc.record({ code: fc.constant("GET_TARGET_TSP_VERSION" as const), version: u8 }),
  fc.record({
    code: fc.constant("GET_TARGET_TSP_VERSION_RSP" as const),
    version: u8,
    versions: fc.array(u8, { maxLength: 255 }),
  }),
  fc.record({
    code: fc.constant("GET_TARGET_CAPABILITIES_RSP" as const),
    version: u8,
    memoryEncryptionFeaturesSupported: u16,
    memoryEncryptionAlgorithmsSupported: u32,
    numberOfRangeBasedKeys: u16,
    teStateChangeAndAccessControlFeaturesSupported: u16,
    supportedExplicitOobTeStateGranularity: u32,
    supportedExplicitIbTeStateGranularity: u32,
    configurationFeaturesSupported: u16,
    numberOfCkids: u32,
    numberOfSecondarySessions: u8,
  }),
  fc.record({
    code: fc.constant("SET_TARGET_CONFIGURATION" as const),
    ...configuration,
    configurationValidityFlags: u16,
    secondarySessionCkidType: u8,
    secondarySessionPskKeyMaterial: fc.array(bytes(SECONDARY_SESSION_KEY_BYTES), {
      minLength: MAX_SECONDARY_SESSIONS,
      maxLength: MAX_SECONDARY_SESSIONS,
    }),
  }),
  fc.record({
    code: fc.constant("GET_TARGET_CONFIGURATION_RSP" as const),
    ...configuration,
    currentTspState: u8,
  }),
  fc.record({
    code: fc.constant("GET_TARGET_CONFIGURATION_REPORT" as const),
    version: u8,
    offset: u16,
    length: u16,
  }),
  fc.record({
    code: fc.constant("GET_TARGET_CONFIGURATION_REPORT_RSP" as const),
    version: u8,
    portion: fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
    remainderLength: u16,
  }),
  fc.record({
    code: fc.constant("SET_TARGET_TE_STATE" as const),
    version: u8,
    teState: u8,
    memoryRanges: fc.array(fc.record({ startingAddress: u64, length: u64 }), { maxLength: 40 }),
  }),
  fc.record({
    code: fc.constant("SET_TARGET_CKID_RANDOM_KEY" as const),
    version: u8,
    ckid: u32,
    attributes: u8,
    validityFlags: u8,
    dataEncryptionKey: bytes(32),
    tweakKey: bytes(32),
  }),
  fc.record({
    code: fc.constant("SET_TARGET_RANGE_SPECIFIC_KEY" as const),
    version: u8,
    rangeId: u32,
    rangeStart: u64,
    rangeEnd: u64,
    validityFlags: u8,
    dataEncryptionKey: bytes(32),
    tweakKey: bytes(32),
  }),
  fc.record({ code: fc.constant("CLEAR_TARGET_RANGE_KEY" as const), version: u8, rangeId: u32 }),
  fc.record({ code: fc.constant("DELAYED_RSP" as const), version: u8, delayTime: u32 }),
  fc.record(
    {
      code: fc.constant("ERROR_RSP" as const),
      version: u8,
      errorCode: u32,
      errorData: u32,
      extendedErrorData: fc.uint8Array({ minLength: 1, maxLength: 20 }).map((b) => Buffer.from(b)),
    },
    { requiredKeys: ["code", "version", "errorCode", "errorData"] },
  ),
);

describe("CXL TSP codec", () => {
  it("round-trips any message, and every proper prefix is refused", () => {
    fc.assert(
      fc.property(arbitraryMessage, (m) => {
        const bytes = encodeTsp(m);
        expect(decodeTsp(bytes)).toEqual(m);
        if (m.code !== "ERROR_RSP") expect(() => decodeTsp(bytes.subarray(0, -1))).toThrow();
      }),
      { numRuns: 300 },
    );
  });

  it("has the exact sizes of CXL 3.1 §11.5", () => {
    const sizeOf = (m: TspMessage) => encodeTsp(m).length;
    const [caps] = all("GET_TARGET_CAPABILITIES_RSP");
    const [set] = all("SET_TARGET_CONFIGURATION");
    const [get] = all("GET_TARGET_CONFIGURATION_RSP");
    expect([sizeOf(caps!), sizeOf(set!), sizeOf(get!)]).toEqual([52, 352, 192]);
    expect(sizeOf({ code: "LOCK_TARGET_CONFIGURATION", version: 0x10 })).toBe(4);
    expect(sizeOf({ code: "ERROR_RSP", version: 0x10, errorCode: 1, errorData: 0 })).toBe(12);
    expect(
      sizeOf({
        code: "SET_TARGET_CKID_SPECIFIC_KEY",
        version: 0x10,
        ckid: 1,
        ckidType: 1,
        validityFlags: 3,
        dataEncryptionKey: Buffer.alloc(32),
        tweakKey: Buffer.alloc(32),
      }),
    ).toBe(80);
  });

  it("rejects an unknown opcode, and names the field", () => {
    const e = decodeError(() => decodeTsp(hex("10 90 0000")));
    expect([e.field, e.offset]).toEqual(["tsp.header.opcode", 1]);
  });

  it("refuses to encode key material of the wrong size", () => {
    const [set] = all("SET_TARGET_CONFIGURATION");
    expect(() =>
      encodeTsp({
        ...set!,
        secondarySessionPskKeyMaterial: [Buffer.alloc(31), ...set!.secondarySessionPskKeyMaterial.slice(1)],
      }),
    ).toThrow(RangeError);
  });
});
