/**
 * CERT_INSTALL_RESET_CAP with DMTF's pair, both ways, over the spdm-emu socket with PCI_DOE.
 * - spdm_requester_emu against our device with CSR, SET_CERT and CERT_INSTALL_RESET. libspdm's
 *   requester ends GET_CSR and SET_CERT answered ResetRequired with LIBSPDM_STATUS_RESET_REQUIRED_PEER
 *   (0x80010012), and spdm_requester_emu stops its run there (exit 1) and sends SHUTDOWN, which
 *   ends our device as it ends spdm_responder_emu; starting it again (same --state-dir) is the
 *   reset. Its GET_CSR always carries CSRTrackingTag 0, so from 1.3 on each run only queues another
 *   CSR (we retrieve the first with our requester's --csr-tag); at 1.2 the same request after the
 *   reset gets the CSR (exit 0). Its SET_CERT's chain (its sample slot 0 chain, the device's own
 *   here) is served after the reset.
 * - Our requester against spdm_responder_emu with CERT_INSTALL_RESET added to its default
 *   capabilities (--cap), run from a copy of SPDM_EMU_BIN: libspdm's sample device keeps pending
 *   requests in files cached_last_csr_N_request of its working directory, a tag free when its file
 *   is empty (and none when the files are missing: ERROR Busy), so the copy starts with the seven
 *   empty. It answers each new GET_CSR ResetRequired with the next tag, and a request with a
 *   tag with its one canned CSR (test_csr/cached.csr), without a reset in between (the sample does not
 *   model one); SET_CERTIFICATE gets ResetRequired.
 *
 * Skipped unless SPDM_EMU_BIN names spdm-emu's build/bin.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { spawnDevice } from "../../src/fixture/spawn-device.js";
import { SPDM_EMU_BIN as BIN, startResponder, stopResponders } from "../../src/fixture/spdm-emu-responder.js";
import { runRequester } from "../../src/requester/run.js";
import { DEFAULT_CAPABILITIES } from "../../src/spdm/responder-settings.js";
import { bin, emuCopy, responderCaps, runTool, slot0 } from "../support/dmtf-tool.js";

const RESET_REQUIRED_PEER = "80010012";

const RESPONDER_CAPS = responderCaps("CERT_INSTALL_RESET");

describe.skipIf(!BIN)("CERT_INSTALL_RESET with DMTF's pair", () => {
  afterEach(stopResponders);

  it("spdm_requester_emu's GET_CSR and SET_CERT against our device, completed by its restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "doe-emu-reset-"));
    const config = join(dir, "device.json");
    const capabilities = [...DEFAULT_CAPABILITIES, "CSR", "SET_CERT", "CERT_INSTALL_RESET"];
    writeFileSync(config, JSON.stringify({ spdm: { capabilities, slots: [{ slot: 0, generate: true }] } }));
    // DMTF's sample slot 0 chain and key: its SET_CERT installs that chain.
    const args = ["--config", config, "--state-dir", join(dir, "state"), ...slot0()];
    /** One spdm_requester_emu run against a freshly started device, which its SHUTDOWN ends. */
    const run = async (...extra: string[]) => {
      const device = await spawnDevice({ args });
      try {
        const port = String(device.mailboxes[0]!.endpoint.port);
        const { code, output } = await runTool("spdm_requester_emu", [
          ...["--trans", "PCI_DOE", "--port", port, "--exe_session", "KEY_EX"],
          ...extra,
        ]);
        expect(await device.exited, output).toBe(0);
        return { code, output };
      } finally {
        await device.stop();
      }
    };
    const pending = () => JSON.parse(readFileSync(join(dir, "state", "state.json"), "utf8")).pending;

    const first = await run("--exe_conn", "DIGEST,CERT,GET_CSR");
    expect(first.code, first.output).toBe(1);
    expect(first.output).toContain(`libspdm_get_csr - ${RESET_REQUIRED_PEER}`);
    expect(Object.keys(pending().csrs)).toEqual(["1"]);
    // Tag 1, made before the restart, is what our requester retrieves after it.
    const ours = await spawnDevice({ args: [...args, "--on-shutdown", "close"] });
    try {
      const s = await runRequester(ours.mailboxes[0]!.endpoint, {
        provisionSteps: ["GET_CSR"],
        csrTrackingTag: 1,
        exeMode: "CONTINUE",
      });
      expect(s.provisioning.csr!.length).toBeGreaterThan(100);
    } finally {
      await ours.stop();
    }

    for (const expected of [1, 0]) {
      const { code, output } = await run("--ver", "1.2", "--exe_conn", "DIGEST,CERT,GET_CSR");
      expect(code, output).toBe(expected);
      if (expected) expect(output).toContain(`libspdm_get_csr - ${RESET_REQUIRED_PEER}`);
    }
    const set = await run("--exe_conn", "DIGEST,CERT,SET_CERT");
    expect(set.code, set.output).toBe(1);
    expect(set.output).toContain(`libspdm_set_certificate - ${RESET_REQUIRED_PEER}`);
    expect(Object.keys(pending().slots)).toEqual(["0"]);
    const after = await run("--exe_conn", "DIGEST,CERT,CHAL,MEAS");
    expect(after.code, after.output).toBe(0);
    expect(pending()?.slots).toBeUndefined();
  });

  it("our requester against spdm_responder_emu --cap …,CERT_INSTALL_RESET", async () => {
    const dir = emuCopy();
    const trustRoot = readFileSync(bin("ecp384/ca.cert.der"));
    const run = async (opts: Parameters<typeof runRequester>[1]) => {
      const { port } = await startResponder(["--cap", RESPONDER_CAPS], undefined, dir);
      return runRequester({ host: "127.0.0.1", port }, { trustRoot, ...opts });
    };
    for (const tag of [1, 2]) {
      const s = await run({ provisionSteps: ["GET_CSR", "SET_CERT"] });
      expect(s.provisioning.resetRequired).toEqual({ step: "GET_CSR", tag });
      expect(s.provisioning.setCertificate).toBeUndefined();
    }
    const got = await run({ provisionSteps: ["GET_CSR"], csrTrackingTag: 1 });
    expect(got.provisioning.csr).toEqual(readFileSync(bin("test_csr/cached.csr")));
    const set = await run({ provisionSteps: ["SET_CERT"] });
    expect(set.provisioning.resetRequired).toEqual({ step: "SET_CERT", tag: 0 });
    // Before 1.3: no tag; the same request again gets the CSR.
    const v12 = { versions: [0x12], provisionSteps: ["GET_CSR" as const] };
    expect((await run(v12)).provisioning.resetRequired).toEqual({ step: "GET_CSR", tag: 0 });
    expect((await run(v12)).provisioning.csr).toEqual(readFileSync(bin("test_csr/cached.csr")));
  });
});
