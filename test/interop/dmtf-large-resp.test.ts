/**
 * SPDM 1.4 LARGE_RESP_CAP against DMTF's tools (set SPDM_EMU_BIN to spdm-emu's build/bin).
 * spdm_requester_emu (which advertises LARGE_RESP by default, and then reads every chain in the
 * LargeCertChain form) against our device whose slot 0 holds a chain larger than 64 KiB (a padded
 * leaf): exit 0 with its sessions, so the chain was fetched, verified and signed over; the same
 * with the device's LARGE_RESP_CAP turned off fails at GET_CERTIFICATE (our DataTooLarge).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { writeChainFiles } from "../../src/crypto/cert-files.js";
import { generateCertChain } from "../../src/crypto/certgen.js";
import { spawnDevice } from "../../src/fixture/spawn-device.js";
import { SPDM_EMU_BIN } from "../../src/fixture/spdm-emu-responder.js";
import { DEFAULT_CAPABILITIES } from "../../src/spdm/responder-settings.js";
import { runTool } from "../support/dmtf-tool.js";

const dir = mkdtempSync(join(tmpdir(), "doe-emu-large-resp-"));
let slot0: string[];

beforeAll(async () => {
  const files = writeChainFiles(
    dir,
    "large",
    await generateCertChain({ asym: "ECDSA_P384", padding: 70_000 }),
  );
  slot0 = ["--cert-chain", files.certchainDer, "--private-key", files.keyPem];
});

async function requesterAgainstDevice(deviceArgs: string[], requesterArgs: string[]) {
  const device = await spawnDevice({ args: [...slot0, ...deviceArgs] });
  try {
    const port = String(device.mailboxes[0]!.endpoint.port);
    return await runTool("spdm_requester_emu", ["--trans", "PCI_DOE", "--port", port, ...requesterArgs]);
  } finally {
    await device.stop();
  }
}

describe.skipIf(!SPDM_EMU_BIN)(
  "LARGE_RESP_CAP with DMTF's tools: a certificate chain larger than 64 KiB",
  () => {
    it("spdm_requester_emu (SPDM 1.4, its defaults) reads it in the LargeCertChain form and opens its sessions: exit 0", async () => {
      const { code, output } = await requesterAgainstDevice(
        [],
        ["--exe_session", "KEY_EX,PSK,KEY_UPDATE,HEARTBEAT,MEAS,DIGEST,CERT"],
      );
      expect(output).not.toMatch(/fail|error/i);
      expect(code, output).toBe(0);
    }, 60_000);

    it("our device without LARGE_RESP: spdm_requester_emu cannot read the chain", async () => {
      const config = join(dir, "no-large-resp.json");
      const capabilities = DEFAULT_CAPABILITIES.filter((c) => c !== "LARGE_RESP");
      writeFileSync(config, JSON.stringify({ spdm: { capabilities } }));
      const { code } = await requesterAgainstDevice(["--config", config], []);
      expect(code).not.toBe(0);
    }, 60_000);
  },
);
