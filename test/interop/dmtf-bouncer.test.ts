/**
 * The bouncer is transparent: DMTF spdm_requester_emu completes the same flows through a TDEV's
 * bounce endpoint as directly against the device's mailbox (set SPDM_EMU_BIN to spdm-emu's build/bin).
 */
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { startTopology } from "../../src/fixture/topology.js";
import { formatEndpoint } from "../../src/net/framed.js";

const BIN = process.env["SPDM_EMU_BIN"];

/** Runs spdm_requester_emu with PCI_DOE against a port; resolves with its exit code and output. */
function requesterEmu(port: number, args: string[] = []): Promise<{ code: number | null; out: string }> {
  const child = spawn("./spdm_requester_emu", ["--trans", "PCI_DOE", "--port", String(port), ...args], {
    cwd: BIN,
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const timer = setTimeout(() => child.kill(), 30_000);
  return new Promise((resolve) =>
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out: out.replace(/^port - .*$/m, "") });
    }),
  );
}

/** The default flows minus --exe_session's APP step (TDISP and CXL are not implemented yet). */
const FLOWS = ["--exe_session", "KEY_EX,PSK,KEY_UPDATE,HEARTBEAT,MEAS,DIGEST,CERT"];

describe.skipIf(!BIN)("bouncer transparency with DMTF spdm_requester_emu", () => {
  it("completes the default requester flows, secure sessions included, through the bouncer as directly", async () => {
    const t = await startTopology({ devices: [{ name: "interop", bus: 1, description: {} }] });
    try {
      const bounced = await requesterEmu(t.tdevs[0]!.bounce.port, FLOWS);
      expect(bounced.code).toBe(0);
      const view = await t.topology();
      expect(view.tdevs[0]!.bounceStats).toMatchObject({
        invalidRequest: 0,
        missingMailbox: 0,
        upstreamError: 0,
      });
      expect(view.tdevs[0]!.bounceStats["forwarded"]).toBeGreaterThan(10);
      // Its SHUTDOWN ended only its own connection: the device is still there.
      expect(view.devices).toHaveLength(1);
      // Directly, last: there SHUTDOWN stops the device process.
      const mailbox = t.devices[0]!.mailboxes[0]!.endpoint;
      expect(formatEndpoint(mailbox)).toBe(view.tdevs[0]!.cmaMailbox);
      const direct = await requesterEmu(mailbox.port, FLOWS);
      expect(direct.code).toBe(0);
      expect(bounced.out).toBe(direct.out);
    } finally {
      await t.stop();
    }
  });
});
