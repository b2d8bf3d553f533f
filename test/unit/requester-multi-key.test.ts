/**
 * The requester's multi-key connection (MULTI_KEY_CONN_REQ, 1.3), our requester against our
 * responder in process: with MULTI_KEY_CAP in our requester's capabilities and a multi-key device,
 * ALGORITHMS selects it; the responder's encapsulated GET_DIGESTS gets our DIGESTS with KeyPairID,
 * certificate model and key usage, and that DIGESTS (EncapD) enters both sides' TH for FINISH
 * (W_ENCAP, DIGESTS); basic mutual authentication goes through too. Without the device being
 * multi-key, "negotiated" is not selected and "only" is.
 */

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { RequesterCapability as Req } from "../../protocol/spdm/codes.js";
import { writeChainFiles } from "../../src/crypto/cert-files.js";
import { generateCertChain } from "../../src/crypto/certgen.js";
import { authenticate } from "../../src/requester/connection.js";
import { SpdmRequester } from "../../src/spdm/requester.js";
import { REQUESTER_DEFAULTS } from "../../src/spdm/requester-options.js";
import { openSession } from "../../src/spdm/requester-session.js";
import { SpdmResponder } from "../../src/spdm/responder.js";
import {
  DEFAULT_CAPABILITIES,
  responderConfig,
  spdmSettingsSchema,
} from "../../src/spdm/responder-settings.js";
import { CertificateSlots } from "../../src/spdm/responder-slots.js";

const MULTI_KEY_DEVICE = [...DEFAULT_CAPABILITIES, "MULTI_KEY_NEG", "GET_KEY_PAIR_INFO"];

async function pair(mutualAuth: object, capabilities: readonly string[], requesterMultiKey: number) {
  const chain = await generateCertChain({ asym: "ECDSA_P384", role: "requester" });
  const { rootDer } = writeChainFiles(mkdtempSync(join(tmpdir(), "doe-emu-mk-")), "requester", chain);
  const s = spdmSettingsSchema.parse({ capabilities, mutualAuth: { trustRoot: rootDer, ...mutualAuth } });
  const responder = new SpdmResponder(responderConfig(s), CertificateSlots.fromSettings(s.slots));
  return new SpdmRequester(
    {
      send: (q) => responder.handle(q),
      sendSecured: async (q) => (await responder.handleSecured(q)) ?? Buffer.alloc(0),
    },
    {
      requesterCertChain: chain.certsDer,
      requesterKey: chain.privateKey,
      capabilities: (REQUESTER_DEFAULTS.capabilities | requesterMultiKey) >>> 0,
    },
  );
}

describe("the requester's multi-key connection", () => {
  it.each(["W_ENCAP", "DIGESTS"])(
    "%s: our DIGESTS with the multi-key fields enters TH for FINISH; the session is established",
    async (mode) => {
      const r = await pair({ mode }, MULTI_KEY_DEVICE, Req.MULTI_KEY_CAP_NEG);
      await authenticate(r);
      expect(r.ctx.multiKeyConnReq).toBe(true);
      const opened = await openSession(r, { kind: "KEY_EX" });
      expect(opened.mutualAuth?.encapsulated?.slice(0, 2)).toEqual(["GET_DIGESTS", "GET_CERTIFICATE"]);
      expect(opened.session.state).toBe("established");
    },
  );

  it("BASIC: the responder's encapsulated GET_DIGESTS / GET_CERTIFICATE / CHALLENGE", async () => {
    const r = await pair({ mode: "NO", basic: "BASIC" }, MULTI_KEY_DEVICE, Req.MULTI_KEY_CAP_NEG);
    await authenticate(r);
    expect(r.ctx.multiKeyConnReq).toBe(true);
    expect(r.basicMutualAuth?.requests.slice(0, 2)).toEqual(["GET_DIGESTS", "GET_CERTIFICATE"]);
    expect(r.basicMutualAuth?.requests.at(-1)).toBe("CHALLENGE");
  });

  it("a device that is not multi-key selects it for MULTI_KEY_CAP only, not for negotiated", async () => {
    const neg = await pair({ mode: "W_ENCAP" }, DEFAULT_CAPABILITIES, Req.MULTI_KEY_CAP_NEG);
    await authenticate(neg);
    expect(neg.ctx.multiKeyConnReq).toBe(false);
    expect((await openSession(neg, { kind: "KEY_EX" })).session.state).toBe("established");
    const only = await pair({ mode: "W_ENCAP" }, DEFAULT_CAPABILITIES, Req.MULTI_KEY_CAP_ONLY);
    await authenticate(only);
    expect(only.ctx.multiKeyConnReq).toBe(true);
    expect((await openSession(only, { kind: "KEY_EX" })).session.state).toBe("established");
  });
});
