import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CapId, ExtCapId, Header, Msix, MsixFlags, PciExp, Sriov, SriovCtrl } from "../../protocol/pci.js";
import { decodePciSigVdm } from "../../protocol/pcisig-vdm.js";
import { decodeSpdm, type VendorDefinedRequest } from "../../protocol/spdm/index.js";
import {
  decodeDeviceInterfaceReport,
  decodeTdisp,
  encodeTdisp,
  InterfaceInfo,
  LockInterfaceFlag,
  MmioRangeAttribute,
  TdiState,
  TdispErrorCode,
  type TdispMessage,
  type TdispMessageOf,
} from "../../protocol/tdisp.js";
import { type DeviceDescription, parseDescription } from "../../src/device/description.js";
import {
  LOCK_FLAGS_SUPPORTED,
  TDI_TRANSITIONS,
  type TdiStateName,
  TdispEngine,
  type TdispRequestContext,
} from "../../src/device/tdisp.js";
import { silentLogger } from "../../src/log.js";
import { findCap, findExtCap, modelOf } from "../support/model.js";
import type { TdispBody } from "../support/tdisp.js";
import { readDecoded } from "../vectors.js";

const PF = 0x0100;
const FN1 = 0x0101;
const VF0 = 0x0108;
const NONCE = Buffer.alloc(32, 0x5a);
const OFFSET = 0xd000_0000n;
const CTX: TdispRequestContext = { via: PF, sessionId: 0xffff_fffe };

const description = (extra: object = {}): DeviceDescription =>
  parseDescription({
    functions: [
      {
        bars: [
          { index: 0, size: "0x10000", prefetchable: true },
          { index: 2, type: "mem32", size: "0x4000" },
        ],
        msix: { tableSize: 8, table: { bar: 2, offset: 0x1000 }, pba: { bar: 2, offset: 0x3000 } },
        sriov: { totalVfs: 2, firstVfOffset: 8, vfBars: [{ index: 0, size: "0x2000" }] },
      },
      { function: 1, bars: [] },
    ],
    tdisp: { functionIdAliases: { "0xBEEF": "01:00.0" } },
    ...extra,
  });

function setup(desc = description()) {
  const model = modelOf(desc);
  const tdisp = new TdispEngine(model, silentLogger, (n) => NONCE.subarray(0, n));
  const ask = (m: TdispBody, functionId = PF, ctx = CTX, version = 0x10) =>
    decodeTdisp(tdisp.handle(encodeTdisp({ version, functionId, ...m } as TdispMessage), ctx));
  const expectError = (reply: TdispMessage, code: keyof typeof TdispErrorCode, data = 0) =>
    expect(reply).toMatchObject({ code: "TDISP_ERROR", errorCode: TdispErrorCode[code], errorData: data });
  const lock = (functionId = PF, mmioReportingOffset = OFFSET) =>
    ask(
      {
        code: "LOCK_INTERFACE_REQUEST",
        flags: LOCK_FLAGS_SUPPORTED,
        defaultStreamId: 0,
        mmioReportingOffset,
        bindP2pAddressMask: 0n,
      },
      functionId,
    );
  const state = (functionId = PF) =>
    (ask({ code: "GET_DEVICE_INTERFACE_STATE" }, functionId) as TdispMessageOf<"DEVICE_INTERFACE_STATE">)
      .tdiState;
  /** The whole report, fetched `portion` bytes at a time as DMTF's requester does. */
  const report = (portion = 0x40, functionId = PF) => {
    const parts: Buffer[] = [];
    for (let offset = 0, remainder = 1; remainder > 0; ) {
      const r = ask({ code: "GET_DEVICE_INTERFACE_REPORT", offset, length: portion }, functionId);
      const m = r as TdispMessageOf<"DEVICE_INTERFACE_REPORT">;
      expect(m.code).toBe("DEVICE_INTERFACE_REPORT");
      expect(m.portion.length).toBeLessThanOrEqual(portion);
      parts.push(m.portion);
      offset += m.portion.length;
      remainder = m.remainderLength;
    }
    return decodeDeviceInterfaceReport(Buffer.concat(parts));
  };
  /** Host programming: BAR0 at 0x8_0000_0000, BAR2 at 0xfe00_0000. */
  const assignBars = () => {
    model.configWrite(PF, Header.BAR0, 4, 0);
    model.configWrite(PF, Header.BAR0 + 4, 4, 0x8);
    model.configWrite(PF, Header.BAR0 + 8, 4, 0xfe00_0000);
  };
  return { model, tdisp, ask, expectError, lock, state, report, assignBars };
}

describe("TDISP engine", () => {
  it("runs DMTF's requester's cycle: version, capabilities, lock, report, start, stop", () => {
    const { ask, lock, state, report } = setup();
    const beef = 0xbeef;
    expect(ask({ code: "GET_TDISP_VERSION" }, beef)).toEqual({
      code: "TDISP_VERSION",
      version: 0x10,
      functionId: beef,
      versions: [0x10],
    });
    const caps = ask(
      { code: "GET_TDISP_CAPABILITIES", tsmCaps: 0 },
      beef,
    ) as TdispMessageOf<"TDISP_CAPABILITIES">;
    expect(caps.code).toBe("TDISP_CAPABILITIES");
    expect(caps.reqMsgsSupported[0]).toBe(0xfe); // 0x81–0x87
    expect(caps.reqMsgsSupported.subarray(1).every((b) => b === 0)).toBe(true);
    expect(caps.lockInterfaceFlagsSupported).toBe(0x0007);
    expect(state(beef)).toBe(TdiState.CONFIG_UNLOCKED);
    expect(lock(beef)).toEqual({
      code: "LOCK_INTERFACE_RESPONSE",
      version: 0x10,
      functionId: beef,
      startInterfaceNonce: NONCE,
    });
    expect(state(beef)).toBe(TdiState.CONFIG_LOCKED);
    expect(report(0x40, beef).mmioRanges.length).toBeGreaterThan(0);
    expect(ask({ code: "START_INTERFACE_REQUEST", startInterfaceNonce: NONCE }, beef)).toMatchObject({
      code: "START_INTERFACE_RESPONSE",
      functionId: beef,
    });
    expect(state(PF)).toBe(TdiState.RUN); // the alias and the routing ID name one TDI
    expect(ask({ code: "STOP_INTERFACE_REQUEST" }, beef).code).toBe("STOP_INTERFACE_RESPONSE");
    expect(state(beef)).toBe(TdiState.CONFIG_UNLOCKED);
  });

  it("reports the BARs as the host assigned them, plus MMIO_REPORTING_OFFSET, MSI-X pages apart", () => {
    const { model, lock, report, assignBars } = setup();
    assignBars();
    lock();
    const r = report(0x10);
    expect(r.interfaceInfo).toBe(InterfaceInfo.DMA_WITHOUT_PASID | InterfaceInfo.NO_FW_UPDATE);
    const msix = findCap(model, PF, CapId.MSIX)!;
    expect(r.msixMessageControl).toBe(model.configRead(PF, msix + Msix.FLAGS, 2));
    expect(r.msixMessageControl & MsixFlags.QSIZE).toBe(7);
    const page = (address: bigint) => (address + OFFSET) >> 12n;
    expect(r.mmioRanges).toEqual([
      { firstPage: page(0x8_0000_0000n), numberOfPages: 16, rangeAttributes: 0, rangeId: 0 },
      // BAR2, 4 pages: page 0 plain, page 1 the table, page 2 plain, page 3 the PBA.
      { firstPage: page(0xfe00_0000n), numberOfPages: 1, rangeAttributes: 0, rangeId: 2 },
      {
        firstPage: page(0xfe00_1000n),
        numberOfPages: 1,
        rangeAttributes: MmioRangeAttribute.MSIX_TABLE,
        rangeId: 2,
      },
      { firstPage: page(0xfe00_2000n), numberOfPages: 1, rangeAttributes: 0, rangeId: 2 },
      {
        firstPage: page(0xfe00_3000n),
        numberOfPages: 1,
        rangeAttributes: MmioRangeAttribute.MSIX_PBA,
        rangeId: 2,
      },
    ]);
    const bars = model.bars(PF);
    expect(bars.map((b) => b.address)).toEqual([0x8_0000_0000n, 0xfe00_0000n]);
    expect(r.deviceSpecificInfo.length).toBe(0);
  });

  it("leaves MSI-X out of a report whose lock did not ask for it, and reports a VF's slice of the VF BARs", () => {
    const { model, ask, report } = setup();
    const sriov = findExtCap(model, PF, ExtCapId.SRIOV)!;
    model.configWrite(PF, sriov + Sriov.NUM_VF, 2, 2);
    model.configWrite(PF, sriov + Sriov.CTRL, 2, SriovCtrl.VFE | SriovCtrl.MSE);
    model.configWrite(PF, sriov + Sriov.BAR0, 4, 0xc000_0000);
    const vf1 = VF0 + 1;
    const lockVf = ask(
      {
        code: "LOCK_INTERFACE_REQUEST",
        flags: 0,
        defaultStreamId: 0,
        mmioReportingOffset: 0n,
        bindP2pAddressMask: 0n,
      },
      vf1,
    );
    expect(lockVf.code).toBe("LOCK_INTERFACE_RESPONSE");
    const r = report(0x40, vf1);
    expect(r.msixMessageControl).toBe(0);
    expect(r.interfaceInfo).toBe(InterfaceInfo.DMA_WITHOUT_PASID);
    expect(r.mmioRanges).toEqual([{ firstPage: 0xc0002n, numberOfPages: 2, rangeAttributes: 0, rangeId: 0 }]);
  });

  it("answers every refusal with its TDISP error, and stays usable", () => {
    const { tdisp, ask, expectError, lock, state } = setup();
    expectError(ask({ code: "GET_TDISP_VERSION" }, PF, CTX, 0x11), "VersionMismatch");
    expectError(ask({ code: "GET_TDISP_VERSION" }, 0x0105), "InvalidInterface"); // no such function
    expectError(ask({ code: "GET_TDISP_VERSION" }, VF0), "InvalidInterface"); // not enabled
    expectError(ask({ code: "GET_TDISP_VERSION" }, 0x0101_0100), "InvalidInterface"); // segment 1
    expect(ask({ code: "GET_TDISP_VERSION" }, 0x0100_0100).code).toBe("TDISP_VERSION"); // segment 0, valid
    expectError(ask({ code: "BIND_P2P_STREAM_REQUEST", p2pStreamId: 1 }), "UnsupportedRequest", 0x88);
    expectError(ask({ code: "TDISP_VERSION", versions: [0x10] }), "UnsupportedRequest", 0x01);
    const version = encodeTdisp({ code: "GET_TDISP_VERSION", version: 0x10, functionId: PF });
    expectError(decodeTdisp(tdisp.handle(Buffer.concat([version, Buffer.of(0)]), CTX)), "InvalidRequest");
    expectError(decodeTdisp(tdisp.handle(version.subarray(0, 10), CTX)), "InvalidRequest");
    expectError(
      ask({ code: "GET_DEVICE_INTERFACE_REPORT", offset: 0, length: 0x40 }),
      "InvalidInterfaceState",
    );
    expectError(
      ask({ code: "START_INTERFACE_REQUEST", startInterfaceNonce: NONCE }),
      "InvalidInterfaceState",
    );
    expectError(ask({ code: "STOP_INTERFACE_REQUEST" }), "InvalidInterfaceState");
    expectError(
      ask({
        code: "LOCK_INTERFACE_REQUEST",
        flags: LockInterfaceFlag.BIND_P2P,
        defaultStreamId: 0,
        mmioReportingOffset: 0n,
        bindP2pAddressMask: 0n,
      }),
      "InvalidRequest",
    );
    expect(lock().code).toBe("LOCK_INTERFACE_RESPONSE");
    expectError(lock(), "InvalidInterfaceState");
    expectError(ask({ code: "GET_DEVICE_INTERFACE_REPORT", offset: 0, length: 0 }), "InvalidRequest");
    expectError(ask({ code: "GET_DEVICE_INTERFACE_REPORT", offset: 0x1000, length: 1 }), "InvalidRequest");
    expectError(
      ask({ code: "START_INTERFACE_REQUEST", startInterfaceNonce: Buffer.alloc(32) }),
      "InvalidNonce",
    );
    expect(state()).toBe(TdiState.CONFIG_LOCKED);
    expect(ask({ code: "START_INTERFACE_REQUEST", startInterfaceNonce: NONCE }).code).toBe(
      "START_INTERFACE_RESPONSE",
    );
    expectError(
      ask({ code: "START_INTERFACE_REQUEST", startInterfaceNonce: NONCE }),
      "InvalidInterfaceState",
    );
  });

  it("puts a locked or running TDI in ERROR on a config change, and FLR unlocks it", () => {
    const { model, tdisp, ask, lock, state, assignBars } = setup();
    assignBars();
    model.configWrite(PF, Header.BAR0, 4, 0x1000_0000); // unlocked: nothing happens
    expect(tdisp.state(PF)).toBe("CONFIG_UNLOCKED");
    lock();
    ask({ code: "START_INTERFACE_REQUEST", startInterfaceNonce: NONCE });
    expect(tdisp.state(PF)).toBe("RUN");
    model.configWrite(PF, Header.BAR0, 4, 0x2000_0000);
    expect(tdisp.state(PF)).toBe("ERROR");
    expect(state()).toBe(TdiState.ERROR);
    const exp = findCap(model, PF, CapId.EXP)!;
    expect(model.configRead(PF, exp + PciExp.DEVCTL, 2) & 0x8000).toBe(0);
    model.configWrite(PF, exp + PciExp.DEVCTL, 2, 0x8000); // Initiate FLR
    expect(tdisp.state(PF)).toBe("CONFIG_UNLOCKED");
    expect(model.configRead(PF, exp + PciExp.DEVCTL, 2) & 0x8000).toBe(0);
    lock();
    model.configWrite(PF, exp + PciExp.DEVCTL + 1, 1, 0x80); // FLR by a byte write
    expect(tdisp.state(PF)).toBe("CONFIG_UNLOCKED");
    lock();
    model.configWrite(PF, exp + PciExp.DEVCTL, 2, 0x2000); // other Device Control bits: no FLR
    expect(tdisp.state(PF)).toBe("CONFIG_LOCKED");
    expect(ask({ code: "STOP_INTERFACE_REQUEST" }).code).toBe("STOP_INTERFACE_RESPONSE");
  });

  it("puts a TDI in ERROR when the session it was locked in ends, not when another does", () => {
    const { tdisp, lock } = setup();
    lock();
    tdisp.sessionEnded(PF, 1);
    tdisp.sessionEnded(FN1, CTX.sessionId!);
    expect(tdisp.state(PF)).toBe("CONFIG_LOCKED");
    tdisp.sessionEnded(PF, CTX.sessionId!);
    expect(tdisp.state(PF)).toBe("ERROR");
  });

  it("gives TDIs by the host rules and serves at the TDEV functions only", () => {
    const { model, tdisp } = setup();
    // Function 1 has no SR-IOV: a TDEV of its own, with a TDI; VFs are TDIs of PF0's TDEV.
    expect(tdisp.servesAt(PF)).toBe(true);
    expect(tdisp.servesAt(FN1)).toBe(true);
    expect(tdisp.state(FN1)).toBe("CONFIG_UNLOCKED");
    expect(tdisp.servesAt(VF0)).toBe(false);
    expect(tdisp.state(VF0)).toBeUndefined();
    const sriov = findExtCap(model, PF, ExtCapId.SRIOV)!;
    model.configWrite(PF, sriov + Sriov.NUM_VF, 2, 1);
    model.configWrite(PF, sriov + Sriov.CTRL, 2, SriovCtrl.VFE);
    expect(tdisp.state(VF0)).toBe("CONFIG_UNLOCKED");
    const plain = setup(description({ functions: [{ teeIo: false }], tdisp: {} }));
    expect(plain.tdisp.state(PF)).toBeUndefined();
    plain.expectError(plain.ask({ code: "GET_TDISP_VERSION" }), "InvalidInterface");
  });

  it("moves by the one table: each event only from the states it lists", () => {
    const states = Object.keys(TdiState) as TdiStateName[];
    const locked = (s: TdiStateName) => s === "CONFIG_LOCKED" || s === "RUN";
    for (const s of states) {
      expect(TDI_TRANSITIONS.configChange[s]).toBe(locked(s) ? "ERROR" : undefined);
      expect(TDI_TRANSITIONS.sessionEnd[s]).toBe(locked(s) ? "ERROR" : undefined);
      expect(TDI_TRANSITIONS.flr[s]).toBe(s === "CONFIG_UNLOCKED" ? undefined : "CONFIG_UNLOCKED");
      expect(TDI_TRANSITIONS.GET_DEVICE_INTERFACE_STATE[s]).toBe(s);
    }
    expect(TDI_TRANSITIONS.LOCK_INTERFACE_REQUEST).toEqual({ CONFIG_UNLOCKED: "CONFIG_LOCKED" });
    expect(TDI_TRANSITIONS.START_INTERFACE_REQUEST).toEqual({ CONFIG_LOCKED: "RUN" });
  });

  it("validates FunctionID aliases, naming the field", () => {
    const bad = (aliases: object) => () =>
      parseDescription({ functions: [{}, { function: 1 }], tdisp: { functionIdAliases: aliases } });
    expect(bad({ BEEF: "01:00.0" })).toThrow(/tdisp\.functionIdAliases\.BEEF: must be a 0x-prefixed hex/);
    expect(bad({ "0xBEEF": "01:00" })).toThrow(/tdisp\.functionIdAliases\.0xBEEF: must be a routing ID/);
    expect(bad({ "0xBEEF": "01:00.5" })).toThrow(/0xBEEF: 01:00.5 is no function of this device/);
    expect(bad({ "0x0101": "01:00.0" })).toThrow(/0x0101 is the routing ID of function 1/);
  });
});

describe("TDISP engine against DMTF's requester's recorded requests (spdm13_app, spdm-emu 85436d53)", () => {
  /** The TDISP requests of the first session's APP step, as recorded. */
  const requests = readDecoded("spdm13_app")
    .messages.filter((f) => f.vdm?.family === "PCI" && f.index < 78)
    .map((f) => decodeSpdm(f.plain))
    .filter((m): m is VendorDefinedRequest => m.code === "VENDOR_DEFINED_REQUEST")
    .map((m) => decodePciSigVdm(m))
    .filter((v) => v.protocol === "TDISP")
    .map((v) => v.message);
  /** Exact response sizes the requester checks (spdm-emu's pci_tdisp_requester_lib). */
  const SIZE: Record<string, number> = {
    TDISP_VERSION: 18,
    TDISP_CAPABILITIES: 44,
    DEVICE_INTERFACE_STATE: 17,
    LOCK_INTERFACE_RESPONSE: 48,
    START_INTERFACE_RESPONSE: 16,
    STOP_INTERFACE_RESPONSE: 16,
  };

  it("answers each as the requester checks: type, size, version, FunctionID 0xBEEF, the asserted states", () => {
    expect(requests.length).toBe(11);
    const start = requests.map(decodeTdisp).find((m) => m.code === "START_INTERFACE_REQUEST");
    const lockResponseNonce = (start as TdispMessageOf<"START_INTERFACE_REQUEST">).startInterfaceNonce;
    // The device draws the nonce the recorded START carries, so the recorded START matches it.
    const model = modelOf(
      parseDescription(
        JSON.parse(readFileSync(new URL("../../examples/dmtf-requester.json", import.meta.url), "utf8")),
      ),
    );
    const tdisp = new TdispEngine(model, silentLogger, () => Buffer.from(lockResponseNonce));
    const states: number[] = [];
    let reportRequests = 0;
    for (const request of requests) {
      const code = decodeTdisp(request).code;
      if (code === "GET_DEVICE_INTERFACE_REPORT") {
        if (reportRequests++ > 0) continue;
        // The requester's loop: 0x40 bytes at a time, then what remains, up to 0x1000 in all.
        let total = 0;
        for (let offset = 0, remainder = 1; remainder > 0; ) {
          const length = offset === 0 ? 0x40 : Math.min(remainder, 0x40);
          const get = encodeTdisp({ code, version: 0x10, functionId: 0xbeef, offset, length });
          const bytes = tdisp.handle(get, CTX);
          const m = decodeTdisp(bytes) as TdispMessageOf<"DEVICE_INTERFACE_REPORT">;
          expect(m.code).toBe("DEVICE_INTERFACE_REPORT");
          expect(m.portion.length).toBeLessThanOrEqual(length);
          expect(bytes.length).toBe(20 + m.portion.length);
          if (offset === 0) total = m.portion.length + m.remainderLength;
          expect(offset + m.portion.length + m.remainderLength).toBe(total);
          offset += m.portion.length;
          remainder = m.remainderLength;
        }
        expect(total).toBeLessThanOrEqual(0x1000);
        continue;
      }
      const bytes = tdisp.handle(request, CTX);
      const m = decodeTdisp(bytes);
      expect(m.code, `answer to ${code}`).not.toBe("TDISP_ERROR");
      expect([m.version, m.functionId, bytes.length]).toEqual([0x10, 0xbeef, SIZE[m.code]]);
      if (m.code === "DEVICE_INTERFACE_STATE") states.push(m.tdiState);
      if (m.code === "TDISP_VERSION") expect(m.versions).toEqual([0x10]);
    }
    expect(reportRequests).toBe(2);
    expect(states).toEqual([
      TdiState.CONFIG_UNLOCKED,
      TdiState.CONFIG_LOCKED,
      TdiState.RUN,
      TdiState.CONFIG_UNLOCKED,
    ]);
  });
});
