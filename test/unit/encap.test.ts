/**
 * Encapsulated requests, our requester against our responder in process: mutual authentication of
 * KEY_EXCHANGE sessions through encapsulation (W_ENCAP, DIGESTS; handshake in the clear and under
 * the handshake keys), basic mutual authentication after CHALLENGE (BASIC), the responder-initiated
 * KEY_UPDATE, the responder's GET_ENDPOINT_INFO (OOB_ENCAP_ENDPOINT_INFO; signed both ways, in and
 * out of a session), and the state machine's refusals: a requester chain from an untrusted root,
 * FINISH before the flow ended, GET_ENCAPSULATED_REQUEST with nothing pending, a RequestID that is
 * not ours, an ENDPOINT_INFO signed by another key.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeSpdm, encodeSpdm } from "../../protocol/spdm/codec.js";
import { RequesterCapability as Req, ResponderCapability as Rsp } from "../../protocol/spdm/codes.js";
import { writeChainFiles } from "../../src/crypto/cert-files.js";
import { type GeneratedCertChain, generateCertChain } from "../../src/crypto/certgen.js";
import { authenticate } from "../../src/requester/connection.js";
import { SpdmRequester, type SpdmTransport } from "../../src/spdm/requester.js";
import { encapsulatedFlow, requesterSigner } from "../../src/spdm/requester-encap.js";
import { REQUESTER_DEFAULTS, type SpdmRequesterOptions } from "../../src/spdm/requester-options.js";
import { heartbeat, openSession, responderKeyUpdate } from "../../src/spdm/requester-session.js";
import { SpdmResponder } from "../../src/spdm/responder.js";
import { responderConfig, spdmSettingsSchema } from "../../src/spdm/responder-settings.js";
import { CertificateSlots } from "../../src/spdm/responder-slots.js";

const DIR = mkdtempSync(join(tmpdir(), "doe-emu-encap-"));
const BASE = spdmSettingsSchema.parse({});
const SLOTS = CertificateSlots.fromSettings(BASE.slots);
let requester: GeneratedCertChain;
let root: string;
let foreignRoot: string;

beforeAll(async () => {
  requester = await generateCertChain({ asym: "ECDSA_P384", role: "requester" });
  root = writeChainFiles(DIR, "requester", requester).rootDer;
  foreignRoot = writeChainFiles(DIR, "foreign", await generateCertChain({ asym: "ECDSA_P384" })).rootDer;
});

function connect(mutualAuth: object, opts: SpdmRequesterOptions = {}, capabilities?: string[]) {
  const s = spdmSettingsSchema.parse({
    mutualAuth: { trustRoot: root, ...mutualAuth },
    ...(capabilities && { capabilities }),
  });
  const responder = new SpdmResponder(responderConfig(s), SLOTS);
  const transport: SpdmTransport = {
    send: (q) => responder.handle(q),
    sendSecured: async (q) => (await responder.handleSecured(q)) ?? Buffer.alloc(0),
    requestEncapKeyUpdate: async (id) => void responder.requestKeyUpdate(id),
    requestEncapEndpointInfo: async () => void responder.requestEndpointInfo(),
  };
  const identity = { requesterCertChain: requester.certsDer, requesterKey: requester.privateKey };
  return { responder, r: new SpdmRequester(transport, { ...identity, measurementMode: "ALL", ...opts }) };
}

const noClear = REQUESTER_DEFAULTS.capabilities & ~Req.HANDSHAKE_IN_THE_CLEAR_CAP;
const FETCH = ["GET_DIGESTS", "GET_CERTIFICATE"];

describe("encapsulated mutual authentication, our requester -> our responder", () => {
  it.each([
    ["W_ENCAP", "in the clear", {}],
    ["W_ENCAP", "under the handshake keys", { capabilities: noClear }],
    ["DIGESTS", "in the clear", {}],
    ["DIGESTS", "under the handshake keys", { capabilities: noClear }],
    ["W_ENCAP", "at SPDM 1.1", { versions: [0x11] }],
  ])("%s (%s): the chain is fetched and verified, FINISH signed by its leaf", async (mode, _h, opts) => {
    const { responder, r } = connect({ mode }, opts);
    await authenticate(r);
    expect(r.connection.responderFlags & Rsp.ENCAP_CAP).toBe(Rsp.ENCAP_CAP);
    expect(r.connection.requesterFlags & Req.ENCAP_CAP).toBe(Req.ENCAP_CAP);
    const opened = await openSession(r, { kind: "KEY_EX" });
    expect(opened.mutualAuth?.encapsulated?.slice(0, 2)).toEqual(FETCH);
    expect(opened.session.state).toBe("established");
    await heartbeat(r, opened.session);
    expect(responder.sessionCount).toBe(1);
  });

  it("BASIC: CHALLENGE_AUTH asks for it; the responder fetches our chain and CHALLENGEs us", async () => {
    const { r } = connect({ mode: "NO", basic: "BASIC" });
    await authenticate(r);
    expect(r.basicMutualAuth?.requests.at(-1)).toBe("CHALLENGE");
    expect(r.basicMutualAuth?.requests.slice(0, 2)).toEqual(FETCH);
  });

  it("a requester chain from an untrusted root: the flow fails, the session ends", async () => {
    const { responder, r } = connect({ mode: "W_ENCAP", trustRoot: foreignRoot });
    await authenticate(r);
    await expect(openSession(r, { kind: "KEY_EX" })).rejects.toThrow(/ERROR InvalidRequest/);
    expect(responder.sessionCount).toBe(0);
  });

  it("the state machine refuses what is out of order", async () => {
    const { responder, r } = connect({ mode: "W_ENCAP" }, { versions: [0x13] });
    await authenticate(r);
    const ask = async (m: Parameters<typeof encodeSpdm>[0]) =>
      decodeSpdm(await responder.handle(encodeSpdm(m)));
    // Nothing armed yet.
    expect(await ask({ code: "GET_ENCAPSULATED_REQUEST", version: 0x13 })).toMatchObject({
      code: "ERROR",
      errorCode: 0x45, // NoPendingRequests
    });
    expect(
      await ask({
        code: "DELIVER_ENCAPSULATED_RESPONSE",
        version: 0x13,
        requestId: 1,
        encapsulatedResponse: Buffer.alloc(4),
      }),
    ).toMatchObject({ code: "ERROR", errorCode: 0x04 }); // UnexpectedRequest
  });
});

describe("responder-initiated KEY_UPDATE", () => {
  it("OOB request, then UpdateKey and VerifyNewKey through encapsulation; the session goes on under the new key", async () => {
    const caps = [...BASE.capabilities, "ENCAP"];
    const { responder, r } = connect({ mode: "NO", basic: "NO" }, {}, caps);
    await authenticate(r);
    const opened = await openSession(r, { kind: "KEY_EX" });
    const before = opened.session.trafficState("response")!.key;
    await responderKeyUpdate(r, opened.session);
    expect(opened.session.trafficState("response")!.key.equals(before)).toBe(false);
    expect(opened.session.keyUpdatePending).toBeUndefined();
    await heartbeat(r, opened.session);
    expect(responder.sessionCount).toBe(1);
  });

  it("without a session to update, the device says so and nothing is pending", async () => {
    const { responder } = connect({ mode: "NO", basic: "NO" }, {}, [...BASE.capabilities, "ENCAP"]);
    expect(responder.requestKeyUpdate(0x1234)).toBe(false);
  });
});

describe("the responder's GET_ENDPOINT_INFO through encapsulation", () => {
  const caps = [...BASE.capabilities, "EP_INFO_SIG"];
  const EP_INFO = { provisionSteps: ["EP_INFO" as const] };

  it("our EP_INFO step: OOB_ENCAP_ENDPOINT_INFO; the device fetches our chain first, then our signed ENDPOINT_INFO verifies", async () => {
    const { r } = connect({ mode: "W_ENCAP" }, EP_INFO, caps);
    const s = await authenticate(r);
    expect(r.connection.requesterFlags & Req.EP_INFO_CAP_SIG).toBe(Req.EP_INFO_CAP_SIG);
    const e = s.provisioning.endpointInfo;
    expect(e).toMatchObject({ bytes: 12, signed: true, encapsulated: { signed: true } });
    expect(e?.encapsulated?.requests.slice(0, 2)).toEqual(FETCH);
    expect(e?.encapsulated?.requests.at(-1)).toBe("GET_ENDPOINT_INFO");
  });

  it("a chain basic mutual authentication verified is not fetched again", async () => {
    const { r } = connect({ mode: "NO", basic: "BASIC" }, EP_INFO, caps);
    const s = await authenticate(r);
    expect(s.provisioning.endpointInfo?.encapsulated).toEqual({
      requests: ["GET_ENDPOINT_INFO"],
      signed: true,
    });
  });

  it("in a session: the flow goes where GET_ENCAPSULATED_REQUEST came; a wrong signature is refused, the session lives on", async () => {
    const { responder, r } = connect({ mode: "W_ENCAP" }, {}, caps);
    await authenticate(r);
    const { session } = await openSession(r, { kind: "KEY_EX" });
    const signer = requesterSigner(r.connection, "test");
    expect(responder.requestEndpointInfo()).toBe(true);
    const flow = await encapsulatedFlow(r, "GET_ENCAPSULATED_REQUEST", { session, signer });
    expect(flow).toMatchObject({ requests: ["GET_ENDPOINT_INFO"], endpointInfo: { signed: true } });
    const other = await generateCertChain({ asym: "ECDSA_P384", role: "requester" });
    expect(responder.requestEndpointInfo()).toBe(true);
    await expect(
      encapsulatedFlow(r, "GET_ENCAPSULATED_REQUEST", {
        session,
        signer: { ...signer, key: other.privateKey },
      }),
    ).rejects.toThrow(/ERROR InvalidRequest/);
    await heartbeat(r, session);
    expect(responder.sessionCount).toBe(1);
  });

  it("without ENCAP_CAP on the requester's side, the device says so", async () => {
    const { responder, r } = connect({ mode: "NO", basic: "NO" }, {}, [...caps, "ENCAP"]);
    await authenticate(r);
    expect(responder.requestEndpointInfo()).toBe(true);
    const plain = new SpdmRequester({ send: (q) => responder.handle(q) }, { measurementMode: "ALL" });
    await authenticate(plain);
    expect(responder.requestEndpointInfo()).toBe(false);
  });
});
