/**
 * Public-key mode (PUB_KEY_ID_CAP, slot 0xFF), our requester against our responder in process: the
 * responder (`spdm.publicKey`) advertises PUB_KEY_ID_CAP instead of CERT_CAP and signs for slot
 * 0xFF with slot 0's key; the requester, given that public key, skips the certificates. What differs
 * from a chain slot on the wire and in the transcripts: CHALLENGE_AUTH Param1 0xF and an empty slot
 * mask, CertChainHash = Hash(SPKI), MEASUREMENTS SlotIDParam 0xF, TH with Hash(SPKI) for Hash(CT),
 * and with the requester's public key provisioned, ReqSlotIDParam 0xF, FINISH Param2 0xFF and
 * Hash(requester SPKI) in TH.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeSpdm } from "../../protocol/spdm/codec.js";
import {
  MeasurementSummaryHashType,
  RequesterCapability as Req,
  ResponderCapability as Rsp,
  SpdmCode,
  SpdmErrorCode,
} from "../../protocol/spdm/codes.js";
import { encodeCertChain } from "../../src/crypto/cert-chain.js";
import { hash, publicKeyDer } from "../../src/crypto/suites.js";
import { authenticate } from "../../src/requester/connection.js";
import { PUBLIC_KEY_SLOT, slotOfParam } from "../../src/spdm/public-key.js";
import { SpdmRequester, type SpdmTransport } from "../../src/spdm/requester.js";
import type { SpdmRequesterOptions } from "../../src/spdm/requester-options.js";
import { openSession } from "../../src/spdm/requester-session.js";
import { SpdmResponder } from "../../src/spdm/responder.js";
import { responderConfig, type SpdmSettings, spdmSettingsSchema } from "../../src/spdm/responder-settings.js";
import { CertificateSlots } from "../../src/spdm/responder-slots.js";
import { sessionTranscriptPrefix } from "../../src/spdm/transcript.js";
import { loggedTransport } from "../support/wire-log.js";

const DIR = mkdtempSync(join(tmpdir(), "doe-emu-public-key-"));
const BASE = spdmSettingsSchema.parse({});
const SLOTS = CertificateSlots.fromSettings(BASE.slots);
/** The responder's public key: slot 0's, ECDSA P-384 (the default negotiation). */
let responderKey: KeyObject;
const requesterKeys = generateKeyPairSync("ec", { namedCurve: "P-384" });
const requesterKeyFile = join(DIR, "end_requester.key.pub.der");
writeFileSync(requesterKeyFile, publicKeyDer(requesterKeys.publicKey));

beforeAll(async () => {
  responderKey = createPublicKey((await SLOTS.forAsym("ECDSA_P384")).get(0)!.privateKey);
});

const settings = (extra: object = {}): SpdmSettings =>
  spdmSettingsSchema.parse({ ...BASE, publicKey: {}, ...extra });

/** Our requester against a public-key-mode responder; every plain request and response is kept. */
function connect(opts: SpdmRequesterOptions = {}, s: SpdmSettings = settings()) {
  const responder = new SpdmResponder(responderConfig(s), SLOTS);
  const { transport, wire } = loggedTransport(responder);
  const r = new SpdmRequester(transport, {
    responderPublicKey: responderKey,
    measurementMode: "ALL",
    ...opts,
  });
  const find = (code: number) => wire.filter((m) => m[1] === code);
  return { r, responder, find };
}

describe("public-key mode, our requester -> our responder", () => {
  it("advertises PUB_KEY_ID_CAP for CERT_CAP, and answers CHALLENGE and MEASUREMENTS for slot 0xFF", async () => {
    const { r, find } = connect();
    const summary = await authenticate(r);
    const c = r.connection;
    expect(c.responderFlags & (Rsp.PUB_KEY_ID_CAP | Rsp.CERT_CAP)).toBe(Rsp.PUB_KEY_ID_CAP);
    expect(find(SpdmCode.GET_DIGESTS)).toHaveLength(0);
    expect(summary.slot).toBe(PUBLIC_KEY_SLOT);
    expect(summary.challenge?.summaryHashChecked).toBe(true);
    expect(summary.measurements).toMatchObject({ signed: true });
    const spki = publicKeyDer(responderKey);
    expect(summary.publicKeyDigest).toBe(hash("SHA_384", spki).toString("hex"));
    // CHALLENGE names 0xFF; CHALLENGE_AUTH says 0xF, no slot mask, and Hash(SPKI) as CertChainHash.
    const [challenge, auth] = [find(SpdmCode.CHALLENGE)[0]!, find(SpdmCode.CHALLENGE_AUTH)[0]!];
    expect(challenge[2]).toBe(0xff);
    const a = decodeSpdm(auth, { ...r.ctx, measurementSummaryHashType: MeasurementSummaryHashType.All });
    expect(a).toMatchObject({ attributes: 0x0f, slotMask: 0 });
    expect(a.code === "CHALLENGE_AUTH" && a.certChainHash).toEqual(hash("SHA_384", spki));
    const signed = find(SpdmCode.MEASUREMENTS).at(-1)!;
    expect(signed[3]! & 0xf).toBe(0xf);
  });

  it("opens a KEY_EXCHANGE session for slot 0xFF: TH holds Hash(SPKI) where a chain slot's holds Hash(CT)", async () => {
    const { r, find } = connect();
    await authenticate(r);
    const opened = await openSession(r, { kind: "KEY_EX" });
    expect(opened.session.state).toBe("established");
    expect(find(SpdmCode.KEY_EXCHANGE)[0]![3]).toBe(0xff);
    const vca = r.transcript.vca;
    const spki = publicKeyDer(responderKey);
    const suite = { hash: "SHA_384" as const };
    expect(sessionTranscriptPrefix(suite, { vca, certChain: spki })).toEqual(
      Buffer.concat([vca, hash("SHA_384", spki)]),
    );
    // Not the chain's: a signature over a slot-0 TH would not verify for slot 0xFF.
    const chain = encodeCertChain("SHA_384", (await SLOTS.forAsym("ECDSA_P384")).get(0)!.certsDer);
    expect(sessionTranscriptPrefix(suite, { vca, certChain: chain })).not.toEqual(
      sessionTranscriptPrefix(suite, { vca, certChain: spki }),
    );
  });

  it("mutual authentication with the requester's provisioned public key: ReqSlotIDParam 0xF, FINISH for 0xFF", async () => {
    const s = settings({ mutualAuth: { requesterPublicKey: requesterKeyFile } });
    const { r, find } = connect({ requesterPublicKey: true, requesterKey: requesterKeys.privateKey }, s);
    await authenticate(r);
    expect(r.sentCapabilities & (Req.PUB_KEY_ID_CAP | Req.CERT_CAP)).toBe(Req.PUB_KEY_ID_CAP);
    const opened = await openSession(r, { kind: "KEY_EX" });
    expect(opened).toMatchObject({ mutualAuth: { slot: PUBLIC_KEY_SLOT, reqAsym: "ECDSA_P384" } });
    expect(opened.session.state).toBe("established");
    const rsp = decodeSpdm(find(SpdmCode.KEY_EXCHANGE_RSP)[0]!, {
      ...r.ctx,
      measurementSummaryHashType: MeasurementSummaryHashType.All,
    });
    expect(rsp).toMatchObject({ mutAuthRequested: 1, reqSlotIdParam: 0x0f });
    const finish = find(SpdmCode.FINISH)[0]!;
    expect([finish[2], finish[3]]).toEqual([1, 0xff]);
  });

  it("basic mutual authentication with the provisioned key: the encapsulated CHALLENGE names slot 0xFF", async () => {
    const s = settings({ mutualAuth: { requesterPublicKey: requesterKeyFile, basic: "BASIC" } });
    const { r, find } = connect({ requesterPublicKey: true, requesterKey: requesterKeys.privateKey }, s);
    const summary = await authenticate(r);
    expect(summary.challenge?.basicMutualAuth).toEqual(["CHALLENGE"]);
    const auth = find(SpdmCode.CHALLENGE_AUTH)[0]!;
    expect(auth[2]).toBe(0x8f); // BasicMutAuthReq, slot 0xF
    // ENCAPSULATED_REQUEST carries CHALLENGE (0x83) for slot 0xFF, nothing fetched before it.
    const encap = find(SpdmCode.ENCAPSULATED_REQUEST)[0]!;
    expect([encap[5], encap[6]]).toEqual([SpdmCode.CHALLENGE, 0xff]);
  });

  it("refuses a FINISH signed by another key than the provisioned one (ERROR DecryptError)", async () => {
    const other = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const s = settings({ mutualAuth: { requesterPublicKey: requesterKeyFile } });
    const { r } = connect({ requesterPublicKey: true, requesterKey: other.privateKey }, s);
    await authenticate(r);
    await expect(openSession(r, { kind: "KEY_EX" })).rejects.toThrow(/DecryptError/);
  });

  it("a responder in chain mode answers CHALLENGE for slot 0xFF with InvalidRequest; the requester checks PUB_KEY_ID_CAP", async () => {
    const chainMode = spdmSettingsSchema.parse(BASE);
    const { r } = connect({}, chainMode);
    await expect(authenticate(r)).rejects.toThrow(/lacks PUB_KEY_ID_CAP/);
    const responder = new SpdmResponder(responderConfig(chainMode), SLOTS);
    const plain = new SpdmRequester({ send: (q) => responder.handle(q) }, {});
    await authenticate(plain);
    const reply = await plain.exchange({
      code: "CHALLENGE",
      version: plain.version,
      slotId: 0xff,
      measurementSummaryHashType: 0,
      nonce: Buffer.alloc(32),
      requesterContext: Buffer.alloc(8),
    });
    expect(reply.message).toMatchObject({ code: "ERROR", errorCode: SpdmErrorCode.InvalidRequest });
  });

  it("checks its settings and options", () => {
    expect(() => spdmSettingsSchema.parse({ slots: [{ slot: 1, generate: true }], publicKey: {} })).toThrow(
      /privateKey/,
    );
    expect(() =>
      spdmSettingsSchema.parse({ mutualAuth: { mode: "W_ENCAP", requesterPublicKey: "k", trustRoot: "r" } }),
    ).toThrow(/WO_ENCAP/);
    const t: SpdmTransport = { send: async () => Buffer.alloc(0) };
    expect(() => new SpdmRequester(t, { slotId: 0xff })).toThrow(/public key/);
    expect(() => new SpdmRequester(t, { requesterPublicKey: true })).toThrow(/requester key/);
    expect(slotOfParam(0xf)).toBe(PUBLIC_KEY_SLOT);
    expect(slotOfParam(3)).toBe(3);
  });
});
