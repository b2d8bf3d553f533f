/**
 * Our requester answering DMTF spdm_responder_emu's encapsulated requests (set SPDM_EMU_BIN to
 * spdm-emu's build/bin): mutual authentication of KEY_EXCHANGE sessions through encapsulation
 * (`--mut_auth W_ENCAP`: GET_ENCAPSULATED_REQUEST, then the responder's GET_DIGESTS and
 * GET_CERTIFICATE; `--mut_auth DIGESTS`: the same starting with the GET_DIGESTS KEY_EXCHANGE_RSP
 * implies), basic mutual authentication after CHALLENGE (`--basic_mut_auth BASIC`: the responder's
 * GET_DIGESTS, GET_CERTIFICATE and CHALLENGE, which we answer with a signed CHALLENGE_AUTH), and a
 * KEY_UPDATE the responder sends in the session (after the OOB_ENCAP_KEY_UPDATE socket command).
 * We answer from DMTF's sample requester chain and key; DMTF's responder verifies the chain against
 * its sample root and our signatures. Both ends offer 1.4 by default, so these run at 1.4.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RequesterCapability as Cap, DheNamedGroup } from "../../protocol/spdm/codes.js";
import {
  exited,
  SPDM_EMU_BIN,
  sampleRequesterIdentity,
  startResponder,
  stopResponders,
} from "../../src/fixture/spdm-emu-responder.js";
import { type RunRequesterOptions, runRequester, runSessionRequester } from "../../src/requester/run.js";
import { REQUESTER_DEFAULTS } from "../../src/spdm/requester-options.js";

afterEach(stopResponders);

const root = () => readFileSync(join(SPDM_EMU_BIN ?? "", "ecp384", "ca.cert.der"));
const identity = sampleRequesterIdentity;
const noClear = REQUESTER_DEFAULTS.capabilities & ~Cap.HANDSHAKE_IN_THE_CLEAR_CAP;
const FETCH_CHAIN = ["GET_DIGESTS", "GET_CERTIFICATE"];

describe.skipIf(!SPDM_EMU_BIN)(
  "our requester answers DMTF spdm_responder_emu's encapsulated requests",
  () => {
    async function session(mode: string, opts: RunRequesterOptions = {}, extra: string[] = []) {
      const rsp = await startResponder(["--mut_auth", mode, "--basic_mut_auth", "NO", ...extra]);
      const out = await runSessionRequester(
        { host: "127.0.0.1", port: rsp.port },
        {
          trustRoot: root(),
          measurementMode: "ALL",
          dheNamedGroup: DheNamedGroup.SECP_384_R1,
          ...identity("rsa3072"),
          ...opts,
          session: { kind: "KEY_EX" },
        },
      );
      expect(await exited(rsp.child), rsp.command).toBe(0);
      return out.session;
    }

    it.each([
      ["W_ENCAP", "in the clear", REQUESTER_DEFAULTS.capabilities],
      ["W_ENCAP", "encrypted", noClear],
      ["DIGESTS", "in the clear", REQUESTER_DEFAULTS.capabilities],
      ["DIGESTS", "encrypted", noClear],
    ] as const)(
      "--mut_auth %s, handshake %s: our chain fetched, FINISH signed",
      async (mode, handshake, caps) => {
        const s = await session(mode, { capabilities: caps });
        expect(s.handshake).toBe(handshake);
        expect(s.mutualAuth).toMatchObject({ slot: 0, reqAsym: "RSAPSS_3072" });
        expect(s.mutualAuth?.encapsulated?.slice(0, 2)).toEqual(FETCH_CHAIN);
        expect(s.mutualAuth?.encapsulated?.slice(2).every((r) => r === "GET_CERTIFICATE")).toBe(true);
      },
    );

    it("--mut_auth W_ENCAP with DMTF's ECDSA P-384 requester chain (--req_asym ECDSA_P384)", async () => {
      const s = await session("W_ENCAP", identity("ecp384"), ["--req_asym", "ECDSA_P384"]);
      expect(s.mutualAuth).toMatchObject({ reqAsym: "ECDSA_P384" });
    });

    it("--basic_mut_auth BASIC: after CHALLENGE the responder challenges us; our CHALLENGE_AUTH verifies", async () => {
      const rsp = await startResponder(["--mut_auth", "NO", "--basic_mut_auth", "BASIC"]);
      const out = await runRequester(
        { host: "127.0.0.1", port: rsp.port },
        { trustRoot: root(), measurementMode: "ALL", ...identity("rsa3072") },
      );
      const requests = out.challenge.basicMutualAuth ?? [];
      expect(requests.slice(0, 2)).toEqual(FETCH_CHAIN);
      expect(requests.at(-1)).toBe("CHALLENGE");
      expect(await exited(rsp.child), rsp.command).toBe(0);
    });
  },
);

describe.skipIf(!SPDM_EMU_BIN)("a KEY_UPDATE DMTF spdm_responder_emu sends through encapsulation", () => {
  it.each([
    ["in the clear", REQUESTER_DEFAULTS.capabilities],
    ["encrypted", noClear],
  ] as const)(
    "OOB_ENCAP_KEY_UPDATE, then its UpdateKey and VerifyNewKey (handshake %s)",
    async (_h, caps) => {
      const rsp = await startResponder(["--mut_auth", "NO", "--basic_mut_auth", "NO"]);
      const out = await runSessionRequester(
        { host: "127.0.0.1", port: rsp.port },
        {
          trustRoot: root(),
          measurementMode: "ALL",
          capabilities: caps | Cap.ENCAP_CAP,
          session: { kind: "KEY_EX", responderKeyUpdate: true },
        },
      );
      // The steps after it ran under the responder's new key.
      expect(out.session.steps.slice(-3)).toEqual([
        "KEY_UPDATE by the responder (encapsulated)",
        "HEARTBEAT",
        "END_SESSION",
      ]);
      expect(await exited(rsp.child), rsp.command).toBe(0);
    },
  );
});
