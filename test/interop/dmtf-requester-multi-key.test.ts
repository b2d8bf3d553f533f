/**
 * The requester's multi-key connection (MULTI_KEY_CONN_REQ, SPDM 1.3+) with DMTF's pair, both ways,
 * under mutual authentication through encapsulation (set SPDM_EMU_BIN to spdm-emu's build/bin).
 * - DMTF's spdm_requester_emu advertises MULTI_KEY_CAP_NEG by default and answers encapsulated
 *   GET_DIGESTS with its key pair (0xB0), model and usage: against our device with MULTI_KEY_NEG
 *   (so we select its multi-key connection) requiring W_ENCAP, DIGESTS or BASIC mutual
 *   authentication, its default --exe_conn / --exe_session must exit 0 with no failure printed:
 *   we parse its DIGESTS with those fields and put it (EncapD) into TH for FINISH as libspdm does.
 * - Our requester with MULTI_KEY_CAP_NEG against spdm_responder_emu, whose OtherParamsSupport has
 *   MULTI_KEY_CONN by default so it selects our multi-key connection: sessions under --mut_auth
 *   W_ENCAP and DIGESTS (our DIGESTS with the multi-key fields, EncapD in TH), and
 *   --basic_mut_auth BASIC.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DheNamedGroup, RequesterCapability as Req } from "../../protocol/spdm/codes.js";
import { spawnDevice } from "../../src/fixture/spawn-device.js";
import {
  exited,
  SPDM_EMU_BIN,
  sampleRequesterIdentity,
  startResponder,
  stopResponders,
} from "../../src/fixture/spdm-emu-responder.js";
import { runRequester, runSessionRequester } from "../../src/requester/run.js";
import { REQUESTER_DEFAULTS } from "../../src/spdm/requester-options.js";
import { DEFAULT_CAPABILITIES } from "../../src/spdm/responder-settings.js";
import { bin, runTool, slot0 } from "../support/dmtf-tool.js";

const SESSIONS = ["--exe_session", "KEY_EX,PSK,KEY_UPDATE,HEARTBEAT,MEAS,DIGEST,CERT"];
const MULTI_KEY = (REQUESTER_DEFAULTS.capabilities | Req.MULTI_KEY_CAP_NEG) >>> 0;

describe.skipIf(!SPDM_EMU_BIN)("the requester's multi-key connection with DMTF's pair", () => {
  afterEach(stopResponders);

  it.each([
    ["W_ENCAP", "NO"],
    ["DIGESTS", "NO"],
    ["NO", "BASIC"],
  ])(
    "spdm_requester_emu (MULTI_KEY_CAP_NEG) against our multi-key device, mode %s, basic %s",
    async (mode, basic) => {
      const dir = mkdtempSync(join(tmpdir(), "doe-emu-mk-interop-"));
      const file = join(dir, "device.json");
      const roots = { trustRoot: bin("rsa3072/ca.cert.der"), trustRoots: [bin("ecp384/ca.cert.der")] };
      const capabilities = [...DEFAULT_CAPABILITIES, "MULTI_KEY_NEG", "GET_KEY_PAIR_INFO"];
      writeFileSync(file, JSON.stringify({ spdm: { capabilities, mutualAuth: { mode, basic, ...roots } } }));
      const d = await spawnDevice({
        args: ["--config", file, ...slot0(), "--log-level", "debug"],
      });
      try {
        const port = String(d.mailboxes[0]!.endpoint.port);
        const { code, output } = await runTool("spdm_requester_emu", [
          "--trans",
          "PCI_DOE",
          "--port",
          port,
          ...SESSIONS,
        ]);
        expect(output).not.toMatch(/fail|error/i);
        expect(code, output).toBe(0);
      } finally {
        await d.stop();
      }
    },
  );

  const root = () => readFileSync(bin("ecp384/ca.cert.der"));

  it.each(["W_ENCAP", "DIGESTS"])(
    "our requester (MULTI_KEY_CAP_NEG) against spdm_responder_emu --mut_auth %s",
    async (mode) => {
      const rsp = await startResponder(["--mut_auth", mode, "--basic_mut_auth", "NO"]);
      const out = await runSessionRequester(
        { host: "127.0.0.1", port: rsp.port },
        {
          trustRoot: root(),
          measurementMode: "ALL",
          dheNamedGroup: DheNamedGroup.SECP_384_R1,
          capabilities: MULTI_KEY,
          ...sampleRequesterIdentity("rsa3072"),
          session: { kind: "KEY_EX" },
        },
      );
      expect(await exited(rsp.child), rsp.command).toBe(0);
      expect(out.session.mutualAuth?.encapsulated?.slice(0, 2)).toEqual(["GET_DIGESTS", "GET_CERTIFICATE"]);
    },
  );

  it("our requester (MULTI_KEY_CAP_NEG) against spdm_responder_emu --basic_mut_auth BASIC", async () => {
    const rsp = await startResponder(["--mut_auth", "NO", "--basic_mut_auth", "BASIC"]);
    const s = await runRequester(
      { host: "127.0.0.1", port: rsp.port },
      { trustRoot: root(), capabilities: MULTI_KEY, ...sampleRequesterIdentity("rsa3072") },
    );
    expect(s.challenge.basicMutualAuth?.at(-1)).toBe("CHALLENGE");
  });
});
