import { describe, expect, it } from "vitest";
import { DoeType, encodeDoeObject, PCI_SIG_VENDOR_ID } from "../../protocol/doe.js";
import { DescriptionError, parseDescription } from "../../src/device/description.js";
import { corrupt, doeSite } from "../../src/device/fault-injection.js";
import {
  FaultRuleError,
  FaultSet,
  type FaultSite,
  MAX_FAULT_RULES,
  parseFaultRule,
  seededRandom,
} from "../../src/device/faults.js";
import { silentLogger } from "../../src/log.js";

const rule = (r: Record<string, unknown>) => parseFaultRule(r);
const site = (s: Partial<FaultSite> = {}): FaultSite => ({ layer: "doe", rid: 0x100, mailbox: 0, ...s });
const refused = (r: Record<string, unknown>) => {
  try {
    parseFaultRule(r);
  } catch (e) {
    expect(e).toBeInstanceOf(FaultRuleError);
    return (e as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(r)}`);
};

describe("fault rules", () => {
  it("accepts each kind where it acts, with its defaults", () => {
    expect(rule({ kind: "delay", ms: 5 })).toEqual({ kind: "delay", ms: 5, seed: 1 });
    expect(rule({ kind: "not-ready", code: "GET_MEASUREMENTS" }).code).toBe("GET_MEASUREMENTS");
    expect(rule({ kind: "tdi-error", code: "START_INTERFACE_REQUEST", function: "01:00.0" }).kind).toBe(
      "tdi-error",
    );
    expect(rule({ kind: "corrupt", protocol: "SECURED_SPDM", part: "tag" }).part).toBe("tag");
  });

  it("refuses what cannot apply, naming the field", () => {
    expect(refused({ kind: "delay" })).toMatch(/^ms:/);
    expect(refused({ kind: "close", ms: 3 })).toMatch(/^ms:/);
    expect(refused({ kind: "spdm-error", protocol: "TDISP" })).toMatch(
      /^protocol: spdm-error applies to SPDM/,
    );
    expect(refused({ kind: "not-ready", code: "GET_VERSION" })).toMatch(/^code: not-ready needs code/);
    expect(refused({ kind: "drop", code: "GET_VERSION" })).toMatch(/^code:/);
    expect(refused({ kind: "drop", protocol: "SPDM", code: "NOPE" })).toMatch(/^code: NOPE/);
    expect(refused({ kind: "close", count: 1, probability: 0.5 })).toMatch(/^count:/);
    expect(refused({ kind: "corrupt", part: "tag" })).toMatch(/^part:/);
    expect(refused({ kind: "ide-km-fail", mailbox: 0 })).toMatch(/^mailbox:/);
    expect(refused({ kind: "explode" })).toMatch(/^kind:/);
    expect(refused({ kind: "close", function: "1:0.0" })).toMatch(/^function:/);
  });
});

describe("faults in a device description", () => {
  it("are checked with it, and armed from the start", () => {
    const d = parseDescription({ faults: [{ kind: "close", count: 1 }] });
    const set = new FaultSet(silentLogger, d.faults);
    expect(set.take(site())?.kind).toBe("close");
    expect(parseDescription({}).faults).toEqual([]);
    expect(() => parseDescription({ faults: [{ kind: "delay" }] })).toThrow(DescriptionError);
    expect(() => parseDescription({ faults: [{ kind: "delay" }] })).toThrow(/faults\[0\]\.ms: /);
  });
});

describe("FaultSet", () => {
  it("fires a counted rule for the next N matching objects only, counting each", () => {
    const set = new FaultSet(silentLogger, [
      rule({ kind: "drop", protocol: "SPDM", code: "GET_VERSION", count: 2 }),
    ]);
    expect(set.take(site({ protocol: "SPDM", code: "GET_CAPABILITIES" }))).toBeUndefined();
    expect(set.take(site({ protocol: "SECURED_SPDM" }))).toBeUndefined();
    expect(set.take(site({ layer: "spdm", protocol: "SPDM", code: "GET_VERSION" }))).toBeUndefined();
    expect(set.take(site({ protocol: "SPDM", code: "GET_VERSION" }))?.kind).toBe("drop");
    expect(set.take(site({ protocol: "SPDM", code: "GET_VERSION" }))?.injected).toBe(2);
    expect(set.take(site({ protocol: "SPDM", code: "GET_VERSION" }))).toBeUndefined();
    expect(set.armed).toBe(false);
    expect(set.list()).toEqual([expect.objectContaining({ id: 1, injected: 2 })]);
  });

  it("matches function and mailbox; the first rule that fires wins", () => {
    const set = new FaultSet(silentLogger);
    expect(set.add(rule({ kind: "close", function: "01:00.1" }))).toBe(1);
    expect(set.add(rule({ kind: "stall", mailbox: 1 }))).toBe(2);
    set.add(rule({ kind: "delay", ms: 1 }));
    expect(set.take(site({ rid: 0x101 }))?.kind).toBe("close");
    expect(set.take(site({ mailbox: 1 }))?.kind).toBe("stall");
    expect(set.take(site())?.kind).toBe("delay");
    expect(set.clear()).toBe(3);
    expect(set.take(site())).toBeUndefined();
  });

  it("fires by probability from its seed: the same seed, the same faults", () => {
    const run = () => {
      const set = new FaultSet(silentLogger, [rule({ kind: "drop", probability: 0.3, seed: 42 })]);
      return Array.from({ length: 1000 }, () => (set.take(site()) ? 1 : 0));
    };
    const a = run();
    expect(run()).toEqual(a);
    const fired = a.reduce((n: number, x) => n + x, 0);
    expect(fired).toBeGreaterThan(230);
    expect(fired).toBeLessThan(370);
    expect(seededRandom(1)()).not.toBe(seededRandom(2)());
  });

  it("holds at most MAX_FAULT_RULES rules", () => {
    const set = new FaultSet(silentLogger);
    for (let i = 0; i < MAX_FAULT_RULES; i++) set.add(rule({ kind: "close" }));
    expect(() => set.add(rule({ kind: "close" }))).toThrow(FaultRuleError);
  });
});

describe("fault sites and corruption", () => {
  const spdm = encodeDoeObject({
    vendorId: PCI_SIG_VENDOR_ID,
    type: DoeType.CMA_SPDM,
    payload: Buffer.from([0x12, 0xe0, 0, 0]),
  });
  it("reads protocol and SPDM request code from a DOE object", () => {
    expect(doeSite(spdm, 0x100, 0)).toEqual({
      layer: "doe",
      rid: 0x100,
      mailbox: 0,
      protocol: "SPDM",
      code: "GET_MEASUREMENTS",
    });
    expect(doeSite(Buffer.alloc(2), 0x100, 0).protocol).toBeUndefined();
  });

  it("flips the header's vendor ID, the SPDM code, or a record's last tag byte", () => {
    const header = corrupt(spdm, rule({ kind: "corrupt" }));
    expect(header[0]).toBe(spdm[0]! ^ 0xff);
    expect(header.subarray(1)).toEqual(spdm.subarray(1));
    const body = corrupt(spdm, rule({ kind: "corrupt", part: "body" }));
    expect(body[9]).toBe(0xe0 ^ 0xff);
    // Session ID, length 5 (ciphertext and tag), then 5 bytes and padding to a DW.
    const record = encodeDoeObject({
      vendorId: PCI_SIG_VENDOR_ID,
      type: DoeType.SECURED_CMA_SPDM,
      payload: Buffer.from("01000000 0500 0102030405 000000".replace(/ /g, ""), "hex"),
    });
    const tag = corrupt(record, rule({ kind: "corrupt", protocol: "SECURED_SPDM" }));
    expect(tag[8 + 6 + 4]).toBe(0x05 ^ 0xff);
    expect(tag.filter((b, i) => b !== record[i]).length).toBe(1);
  });
});
