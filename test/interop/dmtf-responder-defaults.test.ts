/**
 * Our requester against DMTF's spdm_responder_emu with all its defaults (set SPDM_EMU_BIN to
 * spdm-emu's build/bin): `--trans PCI_DOE` and nothing else, so SPDM 1.4, `--mut_auth W_ENCAP`
 * (the session's requester chain fetched through encapsulation, FINISH signed),
 * `--basic_mut_auth BASIC` (the responder challenges us after our CHALLENGE) and an RSA-3072
 * ReqBaseAsym, answered from DMTF's sample rsa3072 requester chain and key. Every connection and
 * provisioning step (EP_INFO with its encapsulated part: OOB_ENCAP_ENDPOINT_INFO, then the
 * responder's GET_ENDPOINT_INFO, which our signed ENDPOINT_INFO must satisfy: it verifies it against
 * its sample requester chain), then a KEY_EXCHANGE session with every APP protocol; separately a
 * PSK session and the responder's own KEY_UPDATE. Also with `--ver 1.4` given explicitly.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  exited,
  SPDM_EMU_BIN,
  sampleRequesterIdentity,
  startResponder,
  stopResponders,
} from "../../src/fixture/spdm-emu-responder.js";
import { APP_PROTOCOLS } from "../../src/requester/app.js";
import { runSessionRequester } from "../../src/requester/run.js";
import type { SessionRequestOptions } from "../../src/spdm/requester-handshake.js";
import { PROVISION_STEPS } from "../../src/spdm/requester-provision.js";
import { expectEveryProvisionStep } from "../support/provisioned.js";

afterEach(stopResponders);

const IN_SESSION = [
  "GET_DIGESTS",
  "GET_CERTIFICATE",
  "GET_MEASUREMENTS",
  "KEY_UPDATE UpdateKey+VerifyNewKey",
  "KEY_UPDATE UpdateAllKeys+VerifyNewKey",
];
const FETCH_CHAIN = ["GET_DIGESTS", "GET_CERTIFICATE"];

/** One default responder (plus `extra`), every connection and provisioning step, then a session. */
async function run(extra: string[], session: SessionRequestOptions, app = false) {
  const rsp = await startResponder(extra, ["--trans", "PCI_DOE"]);
  const out = await runSessionRequester(
    { host: "127.0.0.1", port: rsp.port },
    {
      trustRoot: readFileSync(join(SPDM_EMU_BIN ?? "", "ecp384", "ca.cert.der")),
      ...sampleRequesterIdentity("rsa3072"),
      measurementMode: "ALL",
      provisionSteps: PROVISION_STEPS,
      session,
      app: app ? { protocols: [...APP_PROTOCOLS] } : undefined,
    },
  );
  expect(await exited(rsp.child), rsp.command).toBe(0);
  const c = out.connection;
  expect(c.version).toBe("1.4");
  expect(c.certificateChain?.trustAnchor).toBeDefined();
  expect(c.requesterCapabilities).toEqual(expect.arrayContaining(["MUT_AUTH_CAP", "ENCAP_CAP"]));
  // Basic mutual authentication: after our CHALLENGE, the responder's GET_DIGESTS, GET_CERTIFICATE, CHALLENGE.
  const basic = c.challenge?.basicMutualAuth ?? [];
  expect(basic.slice(0, 2)).toEqual(FETCH_CHAIN);
  expect(basic.at(-1)).toBe("CHALLENGE");
  expect(c.challenge?.summaryHashChecked).toBe(true);
  expect(c.measurements).toMatchObject({ mode: "ALL", signed: true });
  expectEveryProvisionStep(c.provisioning);
  expect(c.provisioning.endpointInfo?.encapsulated).toEqual({
    requests: ["GET_ENDPOINT_INFO"],
    signed: true,
  });
  expect(out.session.skipped).toEqual([]);
  return out.session;
}

describe.skipIf(!SPDM_EMU_BIN)("our requester against spdm_responder_emu with all its defaults", () => {
  it.each([
    ["its defaults", []],
    ["--ver 1.4", ["--ver", "1.4"]],
  ])(
    "%s: every connection step, then KEY_EX mutually authenticated through encapsulation with every APP protocol",
    async (_name, extra) => {
      const s = await run(extra, { kind: "KEY_EX" }, true);
      expect(s.mutualAuth).toMatchObject({ slot: 0, reqAsym: "RSAPSS_3072" });
      expect(s.mutualAuth?.encapsulated?.slice(0, 2)).toEqual(FETCH_CHAIN);
      expect(s.steps).toEqual([
        ...APP_PROTOCOLS.map((p) => `APP ${p}`),
        ...IN_SESSION,
        "HEARTBEAT",
        "END_SESSION",
      ]);
      expect(s.app?.tdisp?.states.at(-1)).toBe("CONFIG_UNLOCKED");
      expect(s.app?.cxlTsp?.secondarySessions).toHaveLength(1);
    },
    90_000,
  );

  it("every connection step, then a PSK session", async () => {
    const s = await run([], { kind: "PSK" });
    expect(s).toMatchObject({
      kind: "PSK",
      pskFinish: true,
      steps: [...IN_SESSION, "HEARTBEAT", "END_SESSION"],
    });
  }, 60_000);

  it("every connection step, then KEY_EX with the responder's KEY_UPDATE through encapsulation", async () => {
    const s = await run([], { kind: "KEY_EX", responderKeyUpdate: true });
    expect(s.mutualAuth?.encapsulated?.slice(0, 2)).toEqual(FETCH_CHAIN);
    expect(s.steps).toEqual([
      ...IN_SESSION,
      "KEY_UPDATE by the responder (encapsulated)",
      "HEARTBEAT",
      "END_SESSION",
    ]);
  }, 60_000);
});
