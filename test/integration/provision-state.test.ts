/**
 * Certificate provisioning end to end, between our requester and a device process: GET_CSR, a test
 * CA signs it, SET_CERTIFICATE installs the chain in slot 0, and after a restart with the same
 * `--state-dir` GET_CERTIFICATE and CHALLENGE verify against that CA. A state directory whose file
 * does not parse stops the device with an error naming it.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { issueFromCsr } from "../../src/crypto/csr.js";
import { packageRoot, spawnDevice } from "../../src/fixture/spawn-device.js";
import { runRequester } from "../../src/requester/run.js";
import { testCa } from "../support/test-ca.js";

const CAPS = ["CERT", "CHAL", "MEAS_SIG", "CHUNK", "CSR", "SET_CERT"];

describe("GET_CSR → CA → SET_CERTIFICATE → restart with --state-dir", () => {
  it("the installed chain is the device's identity after a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "doe-emu-state-"));
    const config = join(dir, "device.json");
    writeFileSync(config, JSON.stringify({ spdm: { capabilities: CAPS } }));
    const stateDir = join(dir, "state");
    const args = ["--config", config, "--state-dir", stateDir, "--on-shutdown", "close"];
    const opts = { timeoutMs: 10_000, exeMode: "CONTINUE" as const };
    const ca = await testCa();

    const first = await spawnDevice({ args });
    try {
      const endpoint = first.mailboxes[0]!.endpoint;
      const before = await runRequester(endpoint, { ...opts, provisionSteps: ["GET_CSR"] });
      const csr = before.provisioning.csr!;
      const leaf = await issueFromCsr(ca, csr, "ECDSA_P384");
      const set = await runRequester(endpoint, {
        ...opts,
        provisionSteps: ["SET_CERT"],
        setCertificate: { slot: 0, certsDer: [ca.certDer, leaf] },
      });
      expect(set.provisioning.setCertificate).toEqual({ slot: 0, certificates: 2 });
      // The same process serves the new chain at once.
      const now = await runRequester(endpoint, { ...opts, trustRoot: ca.certDer });
      expect(now.certificateChain.leafSubject).toBe("CN=doe-emu device");
    } finally {
      await first.stop();
    }
    expect(JSON.parse(readFileSync(join(stateDir, "state.json"), "utf8")).slots["0"].certs).toHaveLength(2);

    const second = await spawnDevice({ args });
    try {
      const after = await runRequester(second.mailboxes[0]!.endpoint, { ...opts, trustRoot: ca.certDer });
      expect(after.certificateChain).toMatchObject({ certificates: 2, leafSubject: "CN=doe-emu device" });
      expect(after.certificateChain.trustAnchor).toBe("CN=doe-emu test provisioning CA");
      expect(after.challenge.measurementSummaryHashType).toBe("All");
    } finally {
      await second.stop();
    }

    writeFileSync(join(stateDir, "state.json"), "{ not json");
    const cli = join(packageRoot(), "dist", "doe-emu.mjs");
    const corrupt = spawnSync(process.execPath, [cli, "device", ...args, "--port", "0"], {
      encoding: "utf8",
    });
    expect(corrupt.status).not.toBe(0);
    expect(corrupt.stderr).toMatch(/state directory .*: state\.json is corrupt/);
  });
});
