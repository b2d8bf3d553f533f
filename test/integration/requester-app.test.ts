/**
 * Our requester's APP step (`--app IDE_KM,TDISP`, `--app CXL_IDE_KM`, `--app CXL_TSP`) against our
 * device process with examples/dmtf-requester.json: IDE-KM keys programmed, started and stopped, the
 * TDISP cycle on the TDI DMTF's FunctionID 0xBEEF names, its interface report's MMIO ranges exactly
 * the BARs the control wire programmed (plus DMTF's MMIO_REPORTING_OFFSET); a FunctionID naming no
 * function fails with TDISP_ERROR InvalidInterface; CXL IDE-KM with the device's generated RX key,
 * both directions started and stopped, the summary printed by `doe-emu requester`. CXL TSP:
 * configured, locked and used from the primary and a nested secondary PSK session, run after run on
 * one device process (each run a new SPDM connection, which starts the TSP state over); a second
 * session of the same connection is OTHER.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { secondarySessionPskHint } from "../../protocol/cxl-tsp.js";
import { Header, parseRoutingId } from "../../protocol/pci.js";
import { MmioRangeAttribute } from "../../protocol/tdisp.js";
import { cliPath, packageRoot, type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import { ControlClient } from "../../src/host/control-client.js";
import type { Endpoint } from "../../src/net/framed.js";
import { authenticate } from "../../src/requester/connection.js";
import { runSessionRequester, withRequester } from "../../src/requester/run.js";
import { runSession } from "../../src/requester/session.js";
import { SpdmRequesterError } from "../../src/spdm/requester.js";
import { MMIO_REPORTING_OFFSET } from "../../src/spdm/requester-tdisp.js";

const PF = 0x0100;
/** examples/dmtf-requester.json: BAR0 mem64 1 MiB, BAR2 mem32 16 KiB with the MSI-X table at 0 and PBA at 0x2000. */
const BARS = [
  { index: 0, address: 0x4000_0000n, size: 0x10_0000 },
  { index: 2, address: 0x5000_0000n, size: 0x4000 },
];

let device: SpawnedDevice;
let endpoint: Endpoint;

beforeAll(async () => {
  device = await spawnDevice({ args: ["--config", join(packageRoot(), "examples", "dmtf-requester.json")] });
  endpoint = device.mailboxes[0]!.endpoint;
  const control = await ControlClient.connect(device.control);
  try {
    await control.cfgWrite(PF, Header.BAR0, 4, 0x4000_0000);
    await control.cfgWrite(PF, Header.BAR0 + 4, 4, 0);
    await control.cfgWrite(PF, Header.BAR0 + 8, 4, 0x5000_0000);
  } finally {
    control.close();
  }
});
afterAll(() => device.stop());

// Generous: the device generates its certificate chain on the first NEGOTIATE_ALGORITHMS.
const common = { exeMode: "CONTINUE" as const, timeoutMs: 60_000, session: { kind: "KEY_EX" as const } };

describe("the requester's APP step against our device", () => {
  it("IDE_KM,TDISP: six keys, the TDI locked, reported, started, stopped; the report's MMIO ranges are the BARs", async () => {
    const out = await runSessionRequester(endpoint, { ...common, app: { protocols: ["IDE_KM", "TDISP"] } });
    const s = out.session;
    expect(s.steps.slice(0, 2)).toEqual(["APP IDE_KM", "APP TDISP"]);
    expect(s.app?.ideKm?.keys).toHaveLength(6);
    const t = s.app!.tdisp!;
    expect(t.functionId).toBe(0xbeef);
    expect(t.states).toEqual(["CONFIG_UNLOCKED", "CONFIG_LOCKED", "RUN", "CONFIG_UNLOCKED"]);
    const ranges = t.report.mmioRanges;
    for (const bar of BARS) {
      const mine = ranges.filter((r) => r.rangeId === bar.index);
      expect(mine[0]!.firstPage).toBe((bar.address + MMIO_REPORTING_OFFSET) >> 12n);
      expect(mine.reduce((n, r) => n + r.numberOfPages, 0) * 4096).toBe(bar.size);
    }
    expect(ranges.map((r) => r.rangeId).sort()).toEqual([0, 2, 2, 2, 2]);
    const flags = ranges.map((r) => r.rangeAttributes);
    expect(flags).toContain(MmioRangeAttribute.MSIX_TABLE);
    expect(flags).toContain(MmioRangeAttribute.MSIX_PBA);
    expect(t.report.msixMessageControl & 0x7ff).toBe(15);
  }, 120_000);

  it("CXL_IDE_KM: Caps 0x71, GET_KEY, RX (IV_DEFAULT, as DMTF's) and TX programmed, started, stopped", async () => {
    const out = await runSessionRequester(endpoint, { ...common, app: { protocols: ["CXL_IDE_KM"] } });
    expect(out.session.steps[0]).toBe("APP CXL_IDE_KM");
    expect(out.session.app?.cxlIdeKm).toEqual({
      portIndex: 0,
      maxPortIndex: 0,
      caps: 0x71,
      ideRegisters: [0x7, 0, 0, 0, 0, 0, 0, 0, 0],
      getKey: true,
      keys: ["RX mode 1 sub-stream 8 stream 0 port 0", "TX mode 0 sub-stream 8 stream 0 port 0"],
      stopped: true,
    });
  }, 120_000);

  it("`doe-emu requester --app ALL` exits 0 and prints every protocol's summary", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        cliPath(),
        "requester",
        "--port",
        String(endpoint.port),
        "--exe_mode",
        "CONTINUE",
        "--session",
        "KEY_EX",
        "--app",
        "ALL",
      ],
      { timeout: 120_000 },
    );
    expect(stdout).toContain("in session: APP IDE_KM, APP TDISP, APP CXL_IDE_KM,");
    expect(stdout).toContain(
      "CXL IDE-KM port 0 (MaxPortIndex 0, Caps 0x71: version 1 IV_GEN|KEY_GEN|K_SET_STOP; CXL IDE Capability 0x7): GET_KEY, 2 keys programmed, started, stopped",
    );
  }, 120_000);

  it("a --tdi naming no function: TDISP_ERROR InvalidInterface, named with its step", async () => {
    const run = runSessionRequester(endpoint, {
      ...common,
      app: { protocols: ["TDISP"], functionId: parseRoutingId("02:00.0")! },
    });
    await expect(run).rejects.toThrow(SpdmRequesterError);
    await expect(run).rejects.toThrow(/^TDISP GET_TDISP_VERSION: TDISP_ERROR InvalidInterface/);
  }, 120_000);

  it("CXL_TSP twice on one device process: PRIMARY each time, with its secondary PSK session", async () => {
    for (let run = 0; run < 2; run++) {
      const out = await runSessionRequester(endpoint, { ...common, app: { protocols: ["CXL_TSP"] } });
      const t = out.session.app!.cxlTsp!;
      expect(t).toMatchObject({ role: "PRIMARY", versions: [0x10], states: [0, 1], reportBytes: 0xdc });
      expect(t.capabilities.numberOfSecondarySessions).toBe(1);
      expect(t.secondarySessions).toEqual([{ sessionId: "0xfffefffe", states: [1, 1] }]);
    }
  }, 120_000);

  it("ALL in DMTF's order; a second session of the same connection is OTHER: version and capabilities only", async () => {
    const [first, second] = await withRequester(endpoint, common, true, async (r) => {
      await authenticate(r);
      const app = { protocols: ["IDE_KM", "TDISP", "CXL_TSP"] as const };
      return [await runSession(r, common.session, app), await runSession(r, common.session, app)];
    });
    expect(first!.steps.slice(0, 3)).toEqual(["APP IDE_KM", "APP TDISP", "APP CXL_TSP"]);
    expect(first!.app!.cxlTsp!.role).toBe("PRIMARY");
    expect(second!.app!.cxlTsp).toMatchObject({ role: "OTHER", versions: [0x10] });
    expect(second!.app!.cxlTsp!.states).toBeUndefined();
  }, 120_000);

  it("a new connection knows no secondary-session hint: PSK_EXCHANGE with it gets ERROR InvalidRequest", async () => {
    await runSessionRequester(endpoint, { ...common, app: { protocols: ["CXL_TSP"] } });
    const run = runSessionRequester(endpoint, {
      ...common,
      session: { kind: "PSK", pskHint: secondarySessionPskHint(0), psk: Buffer.alloc(32) },
    });
    await expect(run).rejects.toThrow(/PSK_EXCHANGE.*InvalidRequest/);
  }, 120_000);
});
