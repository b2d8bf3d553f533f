/**
 * DMTF's spdm_requester_emu against our device configured for mutual authentication through
 * encapsulated requests (set SPDM_EMU_BIN to spdm-emu's build/bin): `mutualAuth.mode W_ENCAP`
 * (KEY_EXCHANGE_RSP WITH_ENCAP_REQUEST: we fetch its sample requester chain with encapsulated
 * GET_DIGESTS / GET_CERTIFICATE, verify it against DMTF's sample roots, and its FINISH signature),
 * `DIGESTS`, and `basic BASIC` (CHALLENGE_AUTH BasicMutAuthReq: our encapsulated CHALLENGE). Then
 * `--key_upd RSP`: spdm_requester_emu sends OOB_ENCAP_KEY_UPDATE and fetches our KEY_UPDATE, directly
 * and through a host bouncer, which forwards the OOB command to the device.
 * Its default --exe_conn and --exe_session (minus what our CAPABILITIES do not advertise: MEL, CSR,
 * … and APP, which needs examples/dmtf-requester.json) must exit 0 with no failure printed. Both
 * ends offer 1.4 by default, so these run at 1.4.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { spawnDevice } from "../../src/fixture/spawn-device.js";
import { Bouncer } from "../../src/host/bouncer.js";
import { silentLogger } from "../../src/log.js";
import { spdmSettingsSchema } from "../../src/spdm/responder-settings.js";
import { bin, runTool, slot0 } from "../support/dmtf-tool.js";

const BIN = process.env["SPDM_EMU_BIN"];
const SESSIONS = ["--exe_session", "KEY_EX,PSK,KEY_UPDATE,HEARTBEAT,MEAS,DIGEST,CERT"];

describe.skipIf(!BIN)("DMTF spdm_requester_emu against our device's encapsulated requests", () => {
  const tmp = mkdtempSync(join(tmpdir(), "doe-emu-encap-interop-"));
  const device = (name: string, spdm: object) => {
    const file = join(tmp, `${name}.json`);
    writeFileSync(file, JSON.stringify({ spdm }));
    return [...slot0(), "--config", file];
  };
  // DMTF's requester signs with the sample chain of the ReqBaseAsym we select; either root is trusted.
  const roots = { trustRoot: bin("rsa3072/ca.cert.der"), trustRoots: [bin("ecp384/ca.cert.der")] };

  /** Runs spdm_requester_emu against the device, or through a bouncer in front of it (then returns the bouncer's stats). */
  async function run(deviceArgs: string[], requesterArgs: string[], bounce = false) {
    const d = await spawnDevice({ args: deviceArgs });
    const mailbox = d.mailboxes[0]!.endpoint;
    const bouncer = bounce
      ? await Bouncer.start({
          targets: { cma: mailbox, secured: mailbox },
          host: "127.0.0.1",
          timeoutMs: 10_000,
          log: silentLogger,
        })
      : undefined;
    try {
      const port = (bouncer?.address ?? mailbox).port;
      const { code, output } = await runTool("spdm_requester_emu", [
        "--trans",
        "PCI_DOE",
        "--port",
        String(port),
        ...requesterArgs,
      ]);
      expect(output).not.toMatch(/fail|error/i);
      expect(output).toContain("Client stopped");
      expect(code, output).toBe(0);
      return bouncer?.stats;
    } finally {
      await bouncer?.close();
      await d.stop();
    }
  }

  it.each([
    ["W_ENCAP", "NO"],
    ["DIGESTS", "NO"],
    ["NO", "BASIC"],
    ["W_ENCAP", "BASIC"],
  ])("mutualAuth mode %s, basic %s: --exe_conn and --exe_session defaults", async (mode, basic) => {
    const args = device(`${mode}-${basic}`, { mutualAuth: { mode, basic, ...roots } });
    await run(args, SESSIONS);
  });

  const keyUpdRsp = () => {
    const capabilities = [...spdmSettingsSchema.parse({}).capabilities, "ENCAP"];
    return device("key-upd-rsp", { capabilities, mutualAuth: { mode: "W_ENCAP", ...roots } });
  };

  it("--key_upd RSP: OOB_ENCAP_KEY_UPDATE, then our KEY_UPDATE through encapsulation", async () => {
    await run(keyUpdRsp(), ["--key_upd", "RSP", ...SESSIONS]);
  });

  it("--key_upd RSP through a host bouncer: the OOB command is forwarded to the device", async () => {
    const stats = await run(keyUpdRsp(), ["--key_upd", "RSP", ...SESSIONS], true);
    expect(stats).toMatchObject({ invalidRequest: 0, missingMailbox: 0, upstreamError: 0 });
    expect(stats!.outOfBand).toBeGreaterThan(0);
  });
});
