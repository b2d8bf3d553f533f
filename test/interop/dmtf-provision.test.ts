/**
 * The provisioning and inventory messages (MEL, GET_CSR, SET_CERTIFICATE, GET/SET_KEY_PAIR_INFO,
 * GET_ENDPOINT_INFO) against DMTF's pair, both ways, over the spdm-emu socket with PCI_DOE.
 * - DMTF's spdm_requester_emu against our device with those capabilities on, DMTF's sample slot
 *   0 chain and key (its SET_CERT installs its own sample chain into slot 0, whose leaf key must be
 *   the slot's), and mutual authentication through encapsulation (`mutualAuth.mode` W_ENCAP,
 *   DMTF's sample requester roots): after each EP_INFO it sends OOB_ENCAP_ENDPOINT_INFO and fetches
 *   our encapsulated GET_ENDPOINT_INFO, out of session and in it; out of session, before any
 *   session fetched its chain, we fetch it first (GET_DIGESTS, GET_CERTIFICATE), and its signed
 *   ENDPOINT_INFO must verify. Its default --exe_conn, and the explicit lists, with every
 *   provisioning step in --exe_session too. spdm_requester_emu's exit status says little (failures
 *   inside a session are only printed), so its output must be free of "ERROR" and "fail".
 * - Our requester against spdm_responder_emu with its defaults (mutual authentication off), doing
 *   the same steps (its defaults offer every one of them; SET_CERT puts its slot 0 chain back).
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
import { PROVISION_STEPS } from "../../src/spdm/requester-provision.js";
import { DEFAULT_CAPABILITIES } from "../../src/spdm/responder-settings.js";
import { bin, runTool, slot0 } from "../support/dmtf-tool.js";
import { expectEveryProvisionStep } from "../support/provisioned.js";

const PROVISION_CAPS = ["MEL", "CSR", "SET_CERT", "EP_INFO_SIG", "GET_KEY_PAIR_INFO", "SET_KEY_PAIR_INFO"];
const STEPS = "DIGEST,CERT,CHAL,MEAS,MEL,GET_CSR,SET_CERT,GET_KEY_PAIR_INFO,SET_KEY_PAIR_INFO,EP_INFO";
const SESSION_STEPS =
  "KEY_EX,MEAS,MEL,DIGEST,CERT,GET_CSR,SET_CERT,GET_KEY_PAIR_INFO,SET_KEY_PAIR_INFO,EP_INFO";
/** DMTF's requester signs with the sample chain of the ReqBaseAsym we select; either root is trusted. */
const MUTUAL_AUTH = {
  mode: "W_ENCAP",
  trustRoot: bin("rsa3072/ca.cert.der"),
  trustRoots: [bin("ecp384/ca.cert.der")],
};

const errors = (output: string) => output.split("\n").filter((l) => /error|fail/i.test(l));

describe.skipIf(!BIN)("provisioning messages with DMTF's pair", () => {
  afterEach(stopResponders);

  it.each([
    ["", [], []],
    // Its requester asks for MULTI_KEY_CONN by default: a multi-key connection at 1.3 and 1.4, where
    // GET_CSR and SET_CERT name key pair 1, which its SET_KEY_PAIR_INFO erases (libspdm's sample
    // ignores the KeyPairID and uses its device key; we refuse a key pair without a key).
    [" with MULTI_KEY_NEG", ["MULTI_KEY_NEG"], ["SET_KEY_PAIR_INFO"]],
  ])(
    "spdm_requester_emu --exe_conn/--exe_session with every provisioning step against our device%s",
    async (_name, multiKey, omit) => {
      const steps = (list: string) =>
        list
          .split(",")
          .filter((step) => !omit.includes(step))
          .join(",");
      const dir = mkdtempSync(join(tmpdir(), "doe-emu-provision-"));
      const config = join(dir, "device.json");
      const capabilities = [...DEFAULT_CAPABILITIES, ...PROVISION_CAPS, ...multiKey];
      // One slot: in the session DMTF's requester installs its sample responder chain into the second
      // provisioned slot, whose generated key is not that chain's, so we refuse it (DMTF's sample device
      // gives slots 0 and 1 one key and takes it).
      writeFileSync(
        config,
        JSON.stringify({
          spdm: { capabilities, slots: [{ slot: 0, generate: true }], mutualAuth: MUTUAL_AUTH },
        }),
      );
      const device = await spawnDevice({
        args: ["--config", config, "--on-shutdown", "close", ...slot0()],
      });
      try {
        const port = String(device.mailboxes[0]!.endpoint.port);
        const socket = ["--trans", "PCI_DOE", "--port", port];
        const base = [...socket, "--exe_conn", steps(STEPS)];
        for (const args of [
          // Its --exe_conn defaults are STEPS: run as they are unless a step is omitted.
          ...(omit.length ? [] : [[...socket, "--exe_session", SESSION_STEPS]]),
          [...base, "--exe_session", steps(SESSION_STEPS)],
          [...base, "--ver", "1.2", "--exe_session", "KEY_EX,GET_CSR,SET_CERT"],
          [...base, "--ver", "1.3", "--exe_session", "KEY_EX,DIGEST,CERT,GET_CSR,SET_CERT"],
        ]) {
          const { code, output } = await runTool("spdm_requester_emu", args);
          expect(code, output).toBe(0);
          expect(errors(output), output).toEqual([]);
        }
      } finally {
        await device.stop();
      }
    },
  );

  it("our requester does the same steps against spdm_responder_emu", async () => {
    const root = readFileSync(bin("ecp384/ca.cert.der"));
    const { port } = await startResponder();
    const s = await runRequester(
      { host: "127.0.0.1", port },
      { trustRoot: root, provisionSteps: PROVISION_STEPS },
    );
    expectEveryProvisionStep(s.provisioning);
  });
});
