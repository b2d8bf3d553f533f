/**
 * CERT_INSTALL_RESET end to end, our requester against a device process: GET_CSR answered
 * ResetRequired with a CSRTrackingTag, the device reset, the CSR retrieved with that tag, a test CA
 * signs it, SET_CERTIFICATE answered ResetRequired (GET_DIGESTS too until the reset), the device
 * reset, and the new chain verifies against the CA. The reset is a restart with the same
 * `--state-dir`, or a Function Level Reset written with `doe-emu setpci` over the control wire.
 * SET_KEY_PAIR_RESET the same way: each SET_KEY_PAIR_INFO answered ResetRequired, made at the FLR.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generateCertChain } from "../../src/crypto/certgen.js";
import { issueFromCsr } from "../../src/crypto/csr.js";
import { packageRoot, type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import type { Endpoint } from "../../src/net/framed.js";
import { runRequester } from "../../src/requester/run.js";
import { testCa } from "../support/test-ca.js";

const CAPS = ["CERT", "CHAL", "MEAS_SIG", "CHUNK", "CSR", "SET_CERT", "CERT_INSTALL_RESET"];
const opts = { timeoutMs: 10_000, exeMode: "CONTINUE" as const };

/** Provisions slot 0 through the deferred flow; `reset` resets the device and says where it answers now. */
async function provisionAcrossResets(endpoint: Endpoint, reset: () => Promise<Endpoint>): Promise<void> {
  const ca = await testCa();
  const pending = await runRequester(endpoint, { ...opts, provisionSteps: ["GET_CSR"] });
  expect(pending.provisioning.resetRequired).toEqual({ step: "GET_CSR", tag: 1 });
  // Before the reset the tag is known but its CSR not made.
  const early = await runRequester(endpoint, { ...opts, provisionSteps: ["GET_CSR"], csrTrackingTag: 1 });
  expect(early.provisioning.resetRequired).toEqual({ step: "GET_CSR", tag: 1 });
  endpoint = await reset();
  const got = await runRequester(endpoint, { ...opts, provisionSteps: ["GET_CSR"], csrTrackingTag: 1 });
  const leaf = await issueFromCsr(ca, got.provisioning.csr!, "ECDSA_P384");
  const set = await runRequester(endpoint, {
    ...opts,
    provisionSteps: ["SET_CERT"],
    setCertificate: { slot: 0, certsDer: [ca.certDer, leaf] },
  });
  expect(set.provisioning.resetRequired).toEqual({ step: "SET_CERT", tag: 0 });
  await expect(runRequester(endpoint, opts)).rejects.toThrow(/GET_DIGESTS with ERROR ResetRequired/);
  endpoint = await reset();
  const after = await runRequester(endpoint, { ...opts, trustRoot: ca.certDer });
  expect(after.certificateChain).toMatchObject({ certificates: 2, leafSubject: "CN=doe-emu device" });
  expect(after.certificateChain.trustAnchor).toBe("CN=doe-emu test provisioning CA");
}

/**
 * A device with slot 0's chain and key in files: a generated slot gets a new key at each start, and
 * a CSR made before a restart must be for the key the device has after it.
 */
async function config() {
  const dir = mkdtempSync(join(tmpdir(), "doe-emu-reset-"));
  const chain = await generateCertChain({ asym: "ECDSA_P384" });
  writeFileSync(join(dir, "chain.der"), Buffer.concat(chain.certsDer));
  writeFileSync(join(dir, "key.pem"), chain.privateKey.export({ type: "pkcs8", format: "pem" }));
  const slots = [{ slot: 0, certChain: "chain.der", privateKey: "key.pem" }];
  const file = join(dir, "device.json");
  writeFileSync(file, JSON.stringify({ spdm: { capabilities: CAPS, slots } }));
  return { dir, file };
}

/** A Function Level Reset of the device's function 0, written with `doe-emu setpci` over the control wire. */
function flr(device: SpawnedDevice): void {
  const { host, port } = device.control;
  const cli = join(packageRoot(), "dist", "doe-emu.mjs");
  const args = ["setpci", "-s", "01:00.0", "CAP_EXP+8.w=8000:8000", "--control", `${host}:${port}`];
  const setpci = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
  expect(setpci.status, setpci.stderr).toBe(0);
}

describe("CERT_INSTALL_RESET: GET_CSR and SET_CERTIFICATE completed by the device's reset", () => {
  it("the reset is a restart with the same --state-dir", async () => {
    const { dir, file } = await config();
    const args = ["--config", file, "--state-dir", join(dir, "state"), "--on-shutdown", "close"];
    let device = await spawnDevice({ args });
    try {
      await provisionAcrossResets(device.mailboxes[0]!.endpoint, async () => {
        await device.stop();
        device = await spawnDevice({ args });
        return device.mailboxes[0]!.endpoint;
      });
    } finally {
      await device.stop();
    }
    expect(JSON.parse(readFileSync(join(dir, "state", "state.json"), "utf8")).pending).toBeUndefined();
  });

  it("the reset is a Function Level Reset (setpci over the control wire), no state directory needed", async () => {
    const { file } = await config();
    const device = await spawnDevice({ args: ["--config", file] });
    try {
      const endpoint = device.mailboxes[0]!.endpoint;
      await provisionAcrossResets(endpoint, async () => {
        flr(device);
        return endpoint;
      });
    } finally {
      await device.stop();
    }
  });
});

describe("SET_KEY_PAIR_RESET: SET_KEY_PAIR_INFO made at the device's reset", () => {
  it("a Function Level Reset makes the waiting change; the same change is then acknowledged", async () => {
    const dir = mkdtempSync(join(tmpdir(), "doe-emu-kpreset-"));
    const file = join(dir, "device.json");
    const capabilities = [
      "CERT",
      "CHAL",
      "MEAS_SIG",
      "GET_KEY_PAIR_INFO",
      "SET_KEY_PAIR_INFO",
      "SET_KEY_PAIR_RESET",
    ];
    writeFileSync(file, JSON.stringify({ spdm: { capabilities, slots: [{ slot: 0, generate: true }] } }));
    const device = await spawnDevice({ args: ["--config", file] });
    const steps = { ...opts, provisionSteps: ["GET_KEY_PAIR_INFO" as const, "SET_KEY_PAIR_INFO" as const] };
    try {
      const endpoint = device.mailboxes[0]!.endpoint;
      // Key pair 1 as GET_KEY_PAIR_INFO reports it before each run's SET_KEY_PAIR_INFO.
      const seen = [];
      for (let run = 0; run < 3; run++) {
        const s = await runRequester(endpoint, steps);
        expect(s.provisioning.resetRequired).toEqual({ step: "SET_KEY_PAIR_INFO", tag: 0 });
        seen.push(s.provisioning.keyPair);
        flr(device);
      }
      // Dissociated at the first FLR, erased at the second (its change acknowledged first).
      expect(seen.map((k) => k?.assocCertSlotMask)).toEqual([1, 0, 0]);
      expect(seen.map((k) => k?.currentAsymAlgo !== 0)).toEqual([true, true, false]);
    } finally {
      await device.stop();
    }
  });
});
