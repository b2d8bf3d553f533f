/**
 * Our requester's APP step against DMTF's spdm_responder_emu (set SPDM_EMU_BIN to spdm-emu's
 * build/bin): in a KEY_EX session PCI IDE-KM (QUERY port 1, six keys programmed, started, stopped)
 * and the TDISP cycle on FunctionID 0xBEEF, once through runSessionRequester and once as the
 * `doe-emu requester` command, which must exit 0; CXL IDE-KM on spdm-emu's sample port (Caps 0x71,
 * GET_KEY, both directions started and stopped). spdm-emu reports its MMIO ranges without adding
 * MMIO_REPORTING_OFFSET (a known quirk of its sample device), so the ranges are compared with what
 * that sample has, not with the offset we sent. CXL TSP: configured, locked and used from the
 * primary and a secondary PSK session keyed by the key material we sent, against a fresh responder
 * each time (spdm-emu keeps its TSP lock for the life of the process).
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { cliPath } from "../../src/fixture/spawn-device.js";
import {
  exited,
  SPDM_EMU_BIN,
  startResponder,
  stopResponders,
} from "../../src/fixture/spdm-emu-responder.js";
import { runSessionRequester } from "../../src/requester/run.js";

afterEach(stopResponders);

describe.skipIf(!SPDM_EMU_BIN)("our requester's APP step against DMTF spdm_responder_emu", () => {
  it("IDE_KM,TDISP through runSessionRequester: the whole cycle, the sample device's report", async () => {
    const rsp = await startResponder();
    const out = await runSessionRequester(
      { host: "127.0.0.1", port: rsp.port },
      {
        trustRoot: readFileSync(join(SPDM_EMU_BIN ?? "", "ecp384", "ca.cert.der")),
        session: { kind: "KEY_EX" },
        app: { protocols: ["IDE_KM", "TDISP"] },
      },
    );
    expect(await exited(rsp.child), rsp.command).toBe(0);
    const app = out.session.app!;
    expect(app.ideKm?.keys).toHaveLength(6);
    const t = app.tdisp!;
    expect(t.states).toEqual(["CONFIG_UNLOCKED", "CONFIG_LOCKED", "RUN", "CONFIG_UNLOCKED"]);
    expect(t.reportPortions).toBe(2);
    expect(t.reportBytes).toBe(100);
    expect(t.report.mmioRanges.map((r) => [r.firstPage, r.numberOfPages, r.rangeId])).toEqual([
      [0x0n, 1, 1],
      [0x8000n, 4, 2],
      [0x10000n, 8, 3],
      [0x20000n, 8, 4],
    ]);
    expect(t.report.deviceSpecificInfo.toString("latin1")).toBe("tdisp_dev_emu\0\0\0");
  }, 60_000);

  it("CXL_IDE_KM through runSessionRequester: port 0 of MaxPortIndex 7, Caps 0x71, GET_KEY's IV {0,1,2} programmed with IV_DEFAULT", async () => {
    const rsp = await startResponder();
    const out = await runSessionRequester(
      { host: "127.0.0.1", port: rsp.port },
      {
        trustRoot: readFileSync(join(SPDM_EMU_BIN ?? "", "ecp384", "ca.cert.der")),
        session: { kind: "KEY_EX" },
        app: { protocols: ["CXL_IDE_KM"] },
      },
    );
    expect(await exited(rsp.child), rsp.command).toBe(0);
    expect(out.session.app?.cxlIdeKm).toEqual({
      portIndex: 0,
      maxPortIndex: 7,
      caps: 0x71,
      ideRegisters: Array(9).fill(0),
      getKey: true,
      keys: ["RX mode 1 sub-stream 8 stream 0 port 0", "TX mode 0 sub-stream 8 stream 0 port 0"],
      stopped: true,
    });
  }, 60_000);

  it("`doe-emu requester --session KEY_EX --app IDE_KM,TDISP` exits 0 and prints the report", async () => {
    const rsp = await startResponder();
    const args = ["requester", "--port", String(rsp.port), "--trust-root", "ecp384/ca.cert.der"];
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [cliPath(), ...args, "--session", "KEY_EX", "--app", "IDE_KM,TDISP"],
      { cwd: SPDM_EMU_BIN, timeout: 60_000 },
    );
    expect(await exited(rsp.child), rsp.command).toBe(0);
    expect(stdout).toContain("in session: APP IDE_KM, APP TDISP,");
    expect(stdout).toContain("states CONFIG_UNLOCKED > CONFIG_LOCKED > RUN > CONFIG_UNLOCKED");
    expect(stdout).toContain("MMIO range 4: 0x20000000, 8 pages, IS_MEM_ATTR_UPDATABLE");
  }, 60_000);

  it("CXL_TSP through runSessionRequester: PRIMARY, locked, one secondary PSK session", async () => {
    const rsp = await startResponder();
    const out = await runSessionRequester(
      { host: "127.0.0.1", port: rsp.port },
      {
        trustRoot: readFileSync(join(SPDM_EMU_BIN ?? "", "ecp384", "ca.cert.der")),
        session: { kind: "KEY_EX" },
        app: { protocols: ["CXL_TSP"] },
      },
    );
    expect(await exited(rsp.child), rsp.command).toBe(0);
    const t = out.session.app!.cxlTsp!;
    expect(t).toMatchObject({
      role: "PRIMARY",
      versions: [0x10],
      states: [0, 1],
      reportBytes: 0xdc,
      reportPortions: 1,
    });
    expect(t.secondarySessions).toEqual([{ sessionId: "0xfffefffe", states: [1, 1] }]);
  }, 60_000);

  it("`doe-emu requester --session KEY_EX --app CXL_TSP` exits 0", async () => {
    const rsp = await startResponder();
    const args = ["requester", "--port", String(rsp.port), "--trust-root", "ecp384/ca.cert.der"];
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [cliPath(), ...args, "--session", "KEY_EX", "--app", "CXL_TSP"],
      { cwd: SPDM_EMU_BIN, timeout: 60_000 },
    );
    expect(await exited(rsp.child), rsp.command).toBe(0);
    expect(stdout).toContain("CXL TSP PRIMARY: versions 0x10");
    expect(stdout).toContain("secondary PSK session 0xfffefffe: CurrentTSPState 1, 1");
  }, 60_000);
});
