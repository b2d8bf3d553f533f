/**
 * DMTF's libspdm requester against our device process, over the spdm-emu socket with PCI_DOE.
 * spdm_requester_emu exits 0 only when VCA, DIGESTS, CERTIFICATE, CHALLENGE_AUTH and the signed
 * MEASUREMENTS all verified (it skips what our CAPABILITIES do not advertise: sessions, MEL, ...).
 * spdm_device_validator_sample runs DMTF's SPDM-Responder-Validator and logs pass/fail counts.
 *
 * Skipped unless SPDM_EMU_BIN names spdm-emu's build/bin (binaries and sample keys), e.g.
 *   SPDM_EMU_BIN=/work/peers/src/spdm-emu/build/bin npx vitest run test/interop/dmtf-requester.test.ts
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { spawnDevice } from "../../src/fixture/spawn-device.js";

const BIN = process.env["SPDM_EMU_BIN"];
const bin = (path: string) => join(BIN ?? "", path);
const slot0 = (dir: string) => [
  "--cert-chain",
  bin(`${dir}/bundle_responder.certchain.der`),
  "--private-key",
  bin(`${dir}/end_responder.key`),
];

/** Runs a DMTF tool to completion; `cwd` must hold its sample keys (it reads them relative to it). */
function runTool(
  tool: string,
  args: string[],
  cwd: string,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin(tool), args, { cwd });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Our device with `args`, the tool against its first mailbox; the device is stopped whatever happens. */
async function against(deviceArgs: string[], run: (port: number) => Promise<void>): Promise<void> {
  const device = await spawnDevice({ args: deviceArgs });
  try {
    await run(device.mailboxes[0]!.endpoint.port);
  } finally {
    await device.stop();
  }
}

describe.skipIf(!BIN)("DMTF spdm-emu tools against the doe-emu SPDM responder", () => {
  const tmp = mkdtempSync(join(tmpdir(), "doe-emu-interop-"));
  const smallTransfers = join(tmp, "small-transfers.json");
  writeFileSync(smallTransfers, JSON.stringify({ spdm: { dataTransferSize: 42 } }));

  it.each([
    ["SPDM 1.3 (requester defaults), DMTF's ECDSA P-384 chain", slot0("ecp384"), []],
    [
      "SPDM 1.2, ECDSA P-256, SHA-256, DMTF's P-256 chain",
      slot0("ecp256"),
      ["--ver", "1.2", "--asym", "ECDSA_P256", "--hash", "SHA_256"],
    ],
    // The requester's trust anchors are DMTF's roots: ours only gets LIBSPDM_STATUS_VERIF_NO_AUTHORITY,
    // a warning; the chain itself (signatures, leaf profile, RootHash) must pass.
    ["SPDM 1.3 (requester defaults), our generated chain", [], []],
    ["every message chunked (our DataTransferSize 42)", ["--config", smallTransfers], []],
    ["SPDM 1.0", slot0("ecp384"), ["--ver", "1.0"]],
    ["SPDM 1.1, RSASSA-3072, DMTF's RSA chain", slot0("rsa3072"), ["--ver", "1.1", "--asym", "RSASSA_3072"]],
  ])("spdm_requester_emu: %s", async (_title, deviceArgs, requesterArgs) => {
    await against(deviceArgs, async (port) => {
      const { code, output } = await runTool(
        "spdm_requester_emu",
        ["--trans", "PCI_DOE", "--port", String(port), ...requesterArgs],
        bin("."),
      );
      expect(output).not.toMatch(/fail|error/i);
      expect(output).toContain("Client stopped");
      expect(code, output).toBe(0);
    });
  });

  it("spdm_device_validator_sample: DMTF's responder conformance tests all pass", async () => {
    // It writes test.log into its working directory: a scratch one holding links to the keys.
    const cwd = mkdtempSync(join(tmp, "validator-"));
    for (const dir of ["ecp256", "ecp384", "ecp521", "rsa2048", "rsa3072", "rsa4096"])
      symlinkSync(bin(dir), join(cwd, dir));
    await against(slot0("ecp384"), async (port) => {
      const { code, output } = await runTool(
        "spdm_device_validator_sample",
        ["--trans", "PCI_DOE", "--port", String(port)],
        cwd,
      );
      expect(code, output).toBe(0);
    });
    const log = readFileSync(join(cwd, "test.log"), "utf8");
    const suite = /test suite \(spdm_responder_conformance_test\) - pass: (\d+), fail: (\d+)/.exec(log);
    expect(suite, log.slice(-2000)).not.toBeNull();
    expect(Number(suite![1])).toBeGreaterThan(800);
    expect(
      Number(suite![2]),
      log
        .split("\n")
        .filter((l) => l.includes("FAIL"))
        .join("\n"),
    ).toBe(0);
  }, 120_000);
});
