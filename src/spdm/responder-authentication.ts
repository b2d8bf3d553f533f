/**
 * The responder's identity (DSP0274 GET_DIGESTS, GET_CERTIFICATE, CHALLENGE): the certificate
 * chains of the slots serving the negotiated algorithms, and CHALLENGE_AUTH, which proves the key
 * of one of them over transcript M1; with basic mutual authentication configured, CHALLENGE_AUTH
 * asks the requester to be challenged in turn (responder-encap.ts).
 */
import { randomBytes } from "node:crypto";
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  CertificateModel,
  NONCE_SIZE,
  RequesterCapability,
  ResponderCapability,
  SpdmCode,
  SpdmVersion,
} from "../../protocol/spdm/codes.js";
import type { Challenge, GetCertificate, GetDigests } from "../../protocol/spdm/messages.js";
import { maskOf } from "../bits.js";
import { certificateAsk, certificatePortion, MAX_SMALL_CHAIN } from "./certificate-portion.js";
import { KEY_PAIR_USAGES } from "./provisioning.js";
import { PUBLIC_KEY_SLOT } from "./public-key.js";
import { check, EMPTY, type Exchange, fail, type ResponderContext } from "./responder-context.js";
import { checkNoPendingSlot } from "./responder-install-reset.js";
import { measurementSummary } from "./responder-measurements.js";

export type AuthenticationContext = Pick<
  ResponderContext,
  "config" | "slots" | "connection" | "transcript" | "encap" | "log" | "provisioning"
>;

/** CHALLENGE_AUTH Param1 bit 7: BasicMutAuthReq. */
const BASIC_MUT_AUTH_REQ = 0x80;

/** Every slot's certificate model on a multi-key connection: a device certificate, as spdm-emu's. */
const CERT_INFO = CertificateModel.DeviceCert;

export function getDigests(
  c: Pick<AuthenticationContext, "slots" | "connection" | "transcript" | "provisioning">,
  m: GetDigests,
  request: Buffer,
  x: Exchange,
): Buffer {
  const { slots, multiKeyConn } = c.connection.negotiated;
  checkNoPendingSlot(c);
  check(slots.size > 0, "Unspecified");
  // Multi-key: each slot's key pair (the one described with it) and that key pair's usage.
  const keyPairs = [...slots.keys()].map((s) => c.provisioning.keyPairs.find((k) => k.slot === s));
  const response = encodeSpdm({
    code: "DIGESTS",
    version: m.version,
    supportedSlotMask: m.version >= SpdmVersion.V1_3 ? c.slots.supportedMask : 0,
    provisionedSlotMask: maskOf([...slots.keys()].map((s) => 1 << s)),
    digests: [...slots.values()].map((s) => s.digest),
    ...(multiKeyConn && {
      keyPairIds: keyPairs.map((k) => k?.id ?? 0),
      certificateInfos: keyPairs.map(() => CERT_INFO),
      keyUsageMasks: keyPairs.map((k) => k?.usage ?? KEY_PAIR_USAGES),
    }),
  });
  // libspdm keeps in-session certificate traffic out of B (no CHALLENGE signs over it) and D.
  if (!x.session) {
    c.transcript.addCertificateExchange(request, response);
    c.transcript.noteDigests(response);
  }
  return response;
}

export function getCertificate(
  c: Pick<AuthenticationContext, "connection" | "transcript" | "provisioning">,
  m: GetCertificate,
  request: Buffer,
  x: Exchange,
): Buffer {
  const { connection } = c;
  const ask = certificateAsk(m);
  // LargeCertChain only from a responder advertising LARGE_RESP_CAP (as libspdm).
  if (ask.large && (connection.advertised & ResponderCapability.LARGE_RESP_CAP) === 0)
    fail("UnsupportedRequest", SpdmCode.GET_CERTIFICATE);
  checkNoPendingSlot(c, ask.slot);
  const slot = connection.negotiated.slots.get(ask.slot);
  check(slot !== undefined);
  const { chain } = slot;
  if (!ask.large && chain.length > MAX_SMALL_CHAIN) {
    // The 16-bit fields cannot carry it: 1.4 says how large it is (as libspdm); before 1.4 it cannot be read.
    if (m.version >= SpdmVersion.V1_4) fail("DataTooLarge", 0, { dataSize: chain.length });
    fail("Unspecified");
  }
  check(ask.offset < chain.length);
  // Without chunking a portion must fit one transfer; with it, CHUNK_GET carries any length.
  const room = connection.chunking ? Number.POSITIVE_INFINITY : connection.sendLimit - ask.header;
  const attributes = connection.negotiated.multiKeyConn ? CERT_INFO : 0;
  const response = certificatePortion(m.version, ask, chain, room, attributes);
  if (!x.session) c.transcript.addCertificateExchange(request, response);
  return response;
}

export function challenge(
  c: Pick<AuthenticationContext, "config" | "connection" | "transcript" | "encap" | "log">,
  m: Challenge,
  request: Buffer,
): Buffer {
  const { slots } = c.connection.negotiated;
  // Slot 0xFF only in public-key mode, where it is the one slot (a chain slot otherwise).
  const slot = slots.get(m.slotId);
  check(slot !== undefined);
  const publicKey = m.slotId === PUBLIC_KEY_SLOT;
  const basic = basicMutualAuth(c);
  const unsigned = encodeSpdm({
    code: "CHALLENGE_AUTH",
    version: m.version,
    attributes: (m.slotId & 0xf) | (basic ? BASIC_MUT_AUTH_REQ : 0),
    // The public key has no slot mask (libspdm sends 0); its "chain hash" is its SPKI's.
    slotMask: publicKey ? 0 : maskOf([...slots.keys()].map((s) => 1 << s)),
    certChainHash: slot.digest,
    nonce: randomBytes(NONCE_SIZE),
    measurementSummaryHash: measurementSummary(c, m.measurementSummaryHashType),
    opaqueData: EMPTY,
    requesterContext: m.requesterContext,
    signature: EMPTY,
  });
  const m1 = c.transcript.challenge(request, unsigned);
  const signature = c.connection.sign("CHALLENGE_AUTH", m.slotId, m1);
  c.transcript.markAuthenticated();
  if (basic) c.encap.arm(c, "basic-auth");
  return Buffer.concat([unsigned, signature]);
}

/**
 * Basic mutual authentication (CHALLENGE_AUTH BasicMutAuthReq, deprecated since 1.2 but still
 * libspdm's): configured, and the requester can be challenged (libspdm: CHAL_CAP, and CERT_CAP or
 * PUB_KEY_ID_CAP, and MUT_AUTH_CAP and ENCAP_CAP on both sides for the flow).
 */
function basicMutualAuth(c: Pick<AuthenticationContext, "config" | "connection">): boolean {
  const R = RequesterCapability;
  const S = ResponderCapability;
  const { connection } = c;
  return (
    c.config.encapAuth?.basic === true &&
    connection.both(R.MUT_AUTH_CAP, S.MUT_AUTH_CAP) &&
    connection.both(R.ENCAP_CAP, S.ENCAP_CAP) &&
    ((connection.peer?.flags ?? 0) & R.CHAL_CAP) !== 0 &&
    ((connection.peer?.flags ?? 0) & (R.CERT_CAP | R.PUB_KEY_ID_CAP)) !== 0
  );
}
