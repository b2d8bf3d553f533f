/**
 * The device's CXL TSP engine (src/device/cxl-tsp.ts): DMTF's PRIMARY and SECONDARY flows, the
 * session-type and state rules of its one table, bad input answered with ERROR_RSP (never a throw),
 * the secondary PSKs handed to the SPDM connection, and the fresh start of a new connection.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeTsp,
  encodeTsp,
  secondarySessionPskHint,
  TspErrorCode,
  type TspMessage,
  type TspMessageOf,
} from "../../protocol/cxl-tsp.js";
import { CxlTspEngine, MAX_TE_STATE_RANGES, TSP_RULES } from "../../src/device/cxl-tsp.js";
import { parseDescription } from "../../src/device/description.js";
import { silentLogger } from "../../src/log.js";
import { DMTF_TE_RANGE, dmtfConfiguration } from "../../src/spdm/requester-cxl-tsp.js";
import type { VendorRequestContext } from "../../src/spdm/responder-vendor.js";

type Body = TspMessage extends infer M ? (M extends TspMessage ? Omit<M, "version"> : never) : never;

const PRIMARY = 0xffffffff;
const OTHER = 0xfffdfffd;
const SECONDARY = 0xfffefffe;
const KEY = Buffer.alloc(32, 0x5a);

function setup(cxlTsp: object = {}) {
  const d = parseDescription({ cxlTsp });
  const engine = new CxlTspEngine(d.cxlTsp!, silentLogger);
  const psks = new Map<string, Buffer>();
  const ctx = (sessionId: number | undefined, pskHint?: Buffer): VendorRequestContext => ({
    sessionId,
    pskHint,
    providePsks: (given) => {
      psks.clear();
      for (const [hint, psk] of given) psks.set(hint.toString("latin1"), psk);
    },
  });
  const send = (c: VendorRequestContext, m: Body | Buffer) =>
    decodeTsp(engine.handle(Buffer.isBuffer(m) ? m : encodeTsp({ version: 0x10, ...m } as TspMessage), c));
  const sessions = {
    primary: ctx(PRIMARY),
    other: ctx(OTHER),
    secondary: ctx(SECONDARY, secondarySessionPskHint(0)),
    none: ctx(undefined),
  };
  return { engine, psks, send, ...sessions };
}

const errorName = (m: TspMessage) =>
  m.code === "ERROR_RSP" ? Object.entries(TspErrorCode).find(([, v]) => v === m.errorCode)?.[0] : m.code;
const te = (teState: number, memoryRanges = [DMTF_TE_RANGE]) =>
  ({ code: "SET_TARGET_TE_STATE", teState, memoryRanges }) as const;
const GET = { code: "GET_TARGET_CONFIGURATION" } as const;
const LOCK = { code: "LOCK_TARGET_CONFIGURATION" } as const;

describe("CXL TSP engine", () => {
  it("DMTF's PRIMARY flow: configure, report, lock, TE state; key material offered as SECONDARY_SESSION_0_PSK", () => {
    const { send, primary, psks, engine } = setup();
    expect(send(primary, { code: "GET_TARGET_TSP_VERSION" })).toMatchObject({ versions: [0x10] });
    expect(send(primary, { code: "GET_TARGET_CAPABILITIES" })).toMatchObject({
      memoryEncryptionFeaturesSupported: 1,
      memoryEncryptionAlgorithmsSupported: 2,
      teStateChangeAndAccessControlFeaturesSupported: 0x16,
      supportedExplicitIbTeStateGranularity: 1,
      configurationFeaturesSupported: 3,
      numberOfSecondarySessions: 1,
    });
    expect(send(primary, dmtfConfiguration([KEY])).code).toBe("SET_TARGET_CONFIGURATION_RSP");
    expect([...psks]).toEqual([["SECONDARY_SESSION_0_PSK\0", KEY]]);
    // Reconfigured before the lock without secondary sessions: the key is withdrawn.
    expect(send(primary, dmtfConfiguration([])).code).toBe("SET_TARGET_CONFIGURATION_RSP");
    expect(psks.size).toBe(0);
    send(primary, dmtfConfiguration([KEY]));
    const before = send(primary, GET) as TspMessageOf<"GET_TARGET_CONFIGURATION_RSP">;
    expect(before).toMatchObject({ currentTspState: 0, memoryEncryptionAlgorithmSelect: 2 });
    const report = send(primary, { code: "GET_TARGET_CONFIGURATION_REPORT", offset: 0, length: 0x200 });
    expect(report).toMatchObject({ remainderLength: 0 });
    expect((report as TspMessageOf<"GET_TARGET_CONFIGURATION_REPORT_RSP">).portion).toHaveLength(0xdc);
    expect(send(primary, LOCK).code).toBe("LOCK_TARGET_CONFIGURATION_RSP");
    expect(engine.state).toBe("CONFIG_LOCKED");
    expect(send(primary, GET)).toMatchObject({ currentTspState: 1 });
    expect(send(primary, te(1)).code).toBe("SET_TARGET_TE_STATE_RSP");
    expect(send(primary, te(0)).code).toBe("SET_TARGET_TE_STATE_RSP");
  });

  it("session types: SECONDARY reads and changes TE state, OTHER only asks version and capabilities, none is refused", () => {
    const { send, primary, secondary, other, none } = setup();
    send(primary, { code: "GET_TARGET_TSP_VERSION" });
    send(primary, dmtfConfiguration([KEY]));
    send(primary, LOCK);
    expect(send(secondary, GET)).toMatchObject({ currentTspState: 1 });
    expect(send(secondary, te(1)).code).toBe("SET_TARGET_TE_STATE_RSP");
    for (const m of [dmtfConfiguration([KEY]), LOCK])
      expect(errorName(send(secondary, m))).toBe("NO_PRIVILEGE");
    expect(send(other, { code: "GET_TARGET_CAPABILITIES" }).code).toBe("GET_TARGET_CAPABILITIES_RSP");
    for (const m of [GET, te(1), LOCK]) expect(errorName(send(other, m))).toBe("NO_PRIVILEGE");
    expect(errorName(send(none, { code: "GET_TARGET_TSP_VERSION" }))).toBe("NO_PRIVILEGE");
    // Which types may send what is the table's.
    expect(TSP_RULES.SET_TARGET_CONFIGURATION.sessions).toEqual(["PRIMARY"]);
  });

  it("states: SET_TARGET_CONFIGURATION after LOCK, LOCK twice, TE state before LOCK", () => {
    const { send, primary } = setup();
    expect(errorName(send(primary, te(1)))).toBe("INVALID_SECURITY_STATE");
    send(primary, LOCK);
    expect(errorName(send(primary, dmtfConfiguration([KEY])))).toBe("INVALID_SECURITY_STATE");
    expect(errorName(send(primary, LOCK))).toBe("ALREADY_LOCKED");
  });

  it("TE-state ranges outside the memory, none, too many, or an unknown state: INVALID_REQUEST", () => {
    const { send, primary } = setup({ memorySize: 0x20_0000 });
    send(primary, LOCK);
    const at = (startingAddress: bigint, length: bigint) => ({ startingAddress, length });
    expect(send(primary, te(1, [at(0x1f_0000n, 0x1_0000n)])).code).toBe("SET_TARGET_TE_STATE_RSP");
    for (const ranges of [
      [at(0x1f_0000n, 0x1_0040n)],
      [at(0xffff_ffff_ffff_0000n, 0x1_0000n)],
      [at(0n, 0n)],
      [],
      Array(MAX_TE_STATE_RANGES + 1).fill(DMTF_TE_RANGE),
    ])
      expect(errorName(send(primary, te(1, ranges)))).toBe("INVALID_REQUEST");
    expect(errorName(send(primary, te(2)))).toBe("INVALID_REQUEST");
  });

  it("a configuration the capabilities do not allow: INVALID_REQUEST, nothing provisioned", () => {
    const { send, primary, psks } = setup();
    const base = dmtfConfiguration([KEY]);
    for (const bad of [
      { ...base, memoryEncryptionAlgorithmSelect: 1 },
      { ...base, memoryEncryptionAlgorithmSelect: 3 },
      { ...base, configurationValidityFlags: 0x3 },
      { ...base, configurationValidityFlags: 0x2 },
      { ...base, memoryEncryptionFeaturesEnable: 0x3 },
      { ...base, teStateChangeAndAccessControlFeaturesEnable: 0x1 },
    ])
      expect(errorName(send(primary, bad))).toBe("INVALID_REQUEST");
    expect(psks.size).toBe(0);
  });

  it("wrong sizes, an unknown or unserved opcode, another version: the TSP error, with the request's version", () => {
    const { send, primary } = setup();
    for (const m of [
      dmtfConfiguration([KEY]),
      GET,
      LOCK,
      te(1),
      { code: "GET_TARGET_TSP_VERSION" },
    ] as const) {
      const bytes = encodeTsp({ version: 0x10, ...m } as TspMessage);
      expect(errorName(send(primary, bytes.subarray(0, -1)))).toBe("INVALID_REQUEST");
      expect(errorName(send(primary, Buffer.concat([bytes, Buffer.alloc(1)])))).toBe("INVALID_REQUEST");
    }
    expect(errorName(send(primary, Buffer.from("10", "hex")))).toBe("INVALID_REQUEST");
    expect(errorName(send(primary, Buffer.from("10900000", "hex")))).toBe("UNSUPPORTED_REQUEST");
    expect(errorName(send(primary, Buffer.from("10890000 00000000", "hex")))).toBe("UNSUPPORTED_REQUEST");
    const v11 = send(primary, Buffer.from("11810000", "hex"));
    expect([errorName(v11), v11.version]).toEqual(["VERSION_MISMATCH", 0x11]);
  });

  it("a new SPDM connection starts unlocked, with a new PRIMARY session and no secondary keys", () => {
    const { send, primary, secondary, engine } = setup();
    send(primary, dmtfConfiguration([KEY]));
    send(primary, LOCK);
    engine.connectionReset();
    expect(engine.state).toBe("CONFIG_UNLOCKED");
    // Its hint names no key any more, and it is the first session to ask: PRIMARY.
    expect(send(secondary, GET)).toMatchObject({ code: "GET_TARGET_CONFIGURATION_RSP", currentTspState: 0 });
    expect(errorName(send(primary, GET))).toBe("NO_PRIVILEGE");
    expect(send(secondary, dmtfConfiguration([KEY])).code).toBe("SET_TARGET_CONFIGURATION_RSP");
  });

  it("never throws, whatever the bytes", () => {
    const { engine } = setup();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (bytes, inSession) => {
        const out = engine.handle(Buffer.from(bytes), {
          sessionId: inSession ? PRIMARY : undefined,
          providePsks: () => {},
        });
        expect(decodeTsp(out).version).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 500 },
    );
  });
});
