/**
 * The provisioning and inventory requests from the requester side, in the order spdm-emu's
 * requester does them (spdm-emu 85436d53 spdm_requester_emu.c and _session.c): MEL, EP_INFO,
 * GET_KEY_PAIR_INFO, SET_KEY_PAIR_INFO, GET_CSR, SET_CERT. A step runs only when the responder
 * advertises its capability (as spdm-emu's requester skips it otherwise) and the version has it.
 * - MEL: the whole log in portions; its DMTF header must account for its length.
 * - EP_INFO: signed when the responder offers that (EP_INFO_CAP_SIG) and we hold the slot's chain;
 *   the signature is checked over A ‖ GET_ENDPOINT_INFO ‖ ENDPOINT_INFO without it. Then, as
 *   spdm-emu's requester, OOB_ENCAP_ENDPOINT_INFO and the responder's encapsulated GET_ENDPOINT_INFO
 *   (which it may precede with GET_DIGESTS / GET_CERTIFICATE for our chain), answered signed
 *   (requester-encap.ts); only with ENCAP_CAP on both sides, which needs our chain and key.
 * - GET_KEY_PAIR_INFO / SET_KEY_PAIR_INFO: key pair 1; set as spdm-emu does it (drop the key pair's
 *   slot association, then erase it).
 * - GET_CSR: a PKCS#10 request whose own signature must verify (KeyPairID 1 and the device
 *   certificate model in a multi-key connection, as spdm-emu).
 * - SET_CERT: the chain given (else the slot's chain GET_CERTIFICATE verified, as spdm-emu sets
 *   its own sample chain back), for the given slot.
 * A responder with CERT_INSTALL_RESET_CAP may answer GET_CSR or SET_CERT with ERROR ResetRequired
 * (libspdm's LIBSPDM_STATUS_RESET_REQUIRED_PEER; at 1.3 and later only with that capability): the
 * summary says so, with GET_CSR's CSRTrackingTag, and the later steps are not run, as spdm-emu's
 * requester stops there. After the device's reset, GET_CSR with that tag (`csrTrackingTag`; before
 * 1.3, the same request again) retrieves the CSR. Likewise SET_KEY_PAIR_INFO from a responder with
 * SET_KEY_PAIR_RESET_CAP (at 1.4 and later only with it; libspdm accepts it from any 1.3 one).
 */
import { X509Certificate } from "node:crypto";
import { SpdmErrorCode } from "../../protocol/spdm/codes.js";
import {
  AlgType,
  CapabilityField,
  CertificateModel,
  MEL_HEADER_SIZE,
  NONCE_SIZE,
  RequesterCapability,
  ResponderCapability,
} from "../../protocol/spdm/index.js";
import {
  ENDPOINT_INFO_SIGNATURE_REQUESTED,
  ENDPOINT_INFO_SUBCODE_DEVICE_CLASS_IDENTIFIER,
  GetCsrAttribute,
  KeyPairOperation,
  SET_CERTIFICATE_MODEL_SHIFT,
} from "../../protocol/spdm/provision.js";
import { encodeCertChain } from "../crypto/cert-chain.js";
import { loadX509 } from "../crypto/x509.js";
import { expectResponse, fail, type Reply, type SpdmRequester, withoutSignature } from "./requester.js";
import { encapsulatedFlow, requesterSigner } from "./requester-encap.js";
import { both, selection } from "./requester-handshake.js";

export const PROVISION_STEPS = [
  "MEL",
  "EP_INFO",
  "GET_KEY_PAIR_INFO",
  "SET_KEY_PAIR_INFO",
  "GET_CSR",
  "SET_CERT",
] as const;
export type ProvisionStep = (typeof PROVISION_STEPS)[number];

/** The capability each step needs from the responder, and the first version with it. */
const STEP_NEEDS: Record<ProvisionStep, [number, number]> = {
  MEL: [ResponderCapability.MEL_CAP, 0x13],
  EP_INFO: [CapabilityField.EP_INFO_CAP, 0x13],
  GET_KEY_PAIR_INFO: [ResponderCapability.GET_KEY_PAIR_INFO_CAP, 0x13],
  SET_KEY_PAIR_INFO: [ResponderCapability.SET_KEY_PAIR_INFO_CAP, 0x13],
  GET_CSR: [ResponderCapability.CSR_CAP, 0x12],
  SET_CERT: [ResponderCapability.SET_CERT_CAP, 0x12],
};

export interface ProvisionSummary {
  /** Steps asked for that the responder does not offer. */
  skipped: ProvisionStep[];
  mel?: { bytes: number; entries: number; portions: number };
  endpointInfo?: {
    bytes: number;
    signed: boolean;
    /** The responder's encapsulated requests after OOB_ENCAP_ENDPOINT_INFO, and whether we signed ours. */
    encapsulated?: { requests: string[]; signed: boolean };
  };
  keyPair?: { id: number; total: number; currentAsymAlgo: number; assocCertSlotMask: number };
  keyPairErased?: number;
  /** DER of the CSR. */
  csr?: Buffer;
  setCertificate?: { slot: number; certificates: number };
  /** ERROR ResetRequired: the step completes at the device's reset; GET_CSR's CSRTrackingTag (0: none). */
  resetRequired?: { step: ResetStep; tag: number };
}

/**
 * The steps a responder may answer ResetRequired, the capability that lets it, and the first
 * version that needs the capability for it (libspdm's requester; 1.2.0 did not define
 * CERT_INSTALL_RESET_CAP).
 */
const RESET_CAPABILITY = {
  GET_CSR: ["CERT_INSTALL_RESET_CAP", 0x13],
  SET_CERT: ["CERT_INSTALL_RESET_CAP", 0x13],
  SET_KEY_PAIR_INFO: ["SET_KEY_PAIR_RESET_CAP", 0x14],
} as const;
type ResetStep = keyof typeof RESET_CAPABILITY;

const MEL_RESPONSE_HEADER = 12;
/** spdm-emu's requester works with key pair 1. */
const KEY_PAIR_ID = 1;

export async function runProvisionSteps(r: SpdmRequester): Promise<ProvisionSummary> {
  const summary: ProvisionSummary = { skipped: [] };
  for (const step of PROVISION_STEPS.filter((s) => r.options.provisionSteps.includes(s))) {
    const [cap, since] = STEP_NEEDS[step];
    if ((r.rsp!.flags & cap) === 0 || r.version < since) {
      summary.skipped.push(step);
      continue;
    }
    try {
      if (step === "MEL") summary.mel = await getMel(r);
      else if (step === "EP_INFO") summary.endpointInfo = await getEndpointInfo(r);
      else if (step === "GET_KEY_PAIR_INFO") summary.keyPair = await getKeyPairInfo(r);
      else if (step === "SET_KEY_PAIR_INFO") summary.keyPairErased = await eraseKeyPair(r);
      else if (step === "GET_CSR") summary.csr = await getCsr(r);
      else summary.setCertificate = await setCertificate(r);
    } catch (e) {
      if (!(e instanceof ResetRequired)) throw e;
      summary.resetRequired = { step: e.step, tag: e.tag };
      break;
    }
  }
  return summary;
}

export async function getMel(r: SpdmRequester): Promise<NonNullable<ProvisionSummary["mel"]>> {
  const parts: Buffer[] = [];
  const portion = r.options.dataTransferSize - MEL_RESPONSE_HEADER;
  let total = 0;
  for (let remainder = 1; remainder > 0; ) {
    const reply = await r.exchange({
      code: "GET_MEASUREMENT_EXTENSION_LOG",
      version: r.version,
      offset: total,
      length: portion,
    });
    const m = expectResponse(reply, "MEASUREMENT_EXTENSION_LOG");
    if (m.mel.length === 0 && m.remainderLength > 0)
      fail("measurements", "MEL portion is empty, yet more remains");
    parts.push(m.mel);
    total += m.mel.length;
    remainder = m.remainderLength;
  }
  const mel = Buffer.concat(parts);
  if (mel.length < MEL_HEADER_SIZE) fail("measurements", `MEL of ${mel.length} bytes has no DMTF header`);
  const entries = mel.readUInt32LE(0);
  const entriesLength = mel.readUInt32LE(4);
  if (MEL_HEADER_SIZE + entriesLength !== mel.length)
    fail(
      "measurements",
      `MEL header says ${entriesLength} bytes of entries, ${mel.length - MEL_HEADER_SIZE} came`,
    );
  return { bytes: mel.length, entries, portions: parts.length };
}

export async function getEndpointInfo(
  r: SpdmRequester,
): Promise<NonNullable<ProvisionSummary["endpointInfo"]>> {
  const slot = r.options.slotId;
  const chain = r.chains.get(slot);
  const signed = (r.rsp!.flags & ResponderCapability.EP_INFO_CAP_SIG) !== 0 && chain !== undefined;
  const reply = await r.exchange(
    {
      code: "GET_ENDPOINT_INFO",
      version: r.version,
      subCode: ENDPOINT_INFO_SUBCODE_DEVICE_CLASS_IDENTIFIER,
      slotId: signed ? slot : 0,
      attributes: signed ? ENDPOINT_INFO_SIGNATURE_REQUESTED : 0,
      nonce: signed ? r.random(NONCE_SIZE) : undefined,
    },
    { endpointInfoSignatureRequested: signed },
  );
  const m = expectResponse(reply, "ENDPOINT_INFO");
  if (signed) {
    const il = Buffer.concat([
      r.transcript.vca,
      reply.requestBytes,
      withoutSignature(reply.bytes, m.signature),
    ]);
    r.verifySignature("ENDPOINT_INFO", "IL", chain.leafKey, il, m.signature);
  }
  return { bytes: m.epInfo.length, signed, encapsulated: await encapsulatedEndpointInfo(r) };
}

/** The responder's GET_ENDPOINT_INFO through encapsulation, when both sides can (see the file comment). */
async function encapsulatedEndpointInfo(
  r: SpdmRequester,
): Promise<NonNullable<ProvisionSummary["endpointInfo"]>["encapsulated"]> {
  const c = r.connection;
  if (
    !both(c, RequesterCapability.ENCAP_CAP, ResponderCapability.ENCAP_CAP) ||
    (c.requesterFlags & CapabilityField.EP_INFO_CAP) === 0 ||
    !r.canRequestEncapEndpointInfo
  )
    return undefined;
  await r.requestEncapEndpointInfo();
  // No ReqBaseAsymAlg selected: nothing to sign with, so a signed request gets ERROR.
  const signer = selection(c, AlgType.REQ_BASE_ASYM_ALG)
    ? requesterSigner(c, "GET_ENDPOINT_INFO")
    : undefined;
  const flow = await encapsulatedFlow(r, "GET_ENCAPSULATED_REQUEST", { signer });
  if (flow.requests.at(-1) !== "GET_ENDPOINT_INFO" || !flow.endpointInfo)
    fail(
      "unexpected-response",
      `after OOB_ENCAP_ENDPOINT_INFO the responder sent ${flow.requests.join(", ") || "nothing"}, expected GET_ENDPOINT_INFO last`,
    );
  return { requests: flow.requests, signed: flow.endpointInfo.signed };
}

export async function getKeyPairInfo(r: SpdmRequester): Promise<NonNullable<ProvisionSummary["keyPair"]>> {
  const reply = await r.exchange({ code: "GET_KEY_PAIR_INFO", version: r.version, keyPairId: KEY_PAIR_ID });
  const m = expectResponse(reply, "KEY_PAIR_INFO");
  if (m.keyPairId !== KEY_PAIR_ID || m.totalKeyPairs < KEY_PAIR_ID)
    fail(
      "malformed",
      `KEY_PAIR_INFO is for key pair ${m.keyPairId} of ${m.totalKeyPairs}, we asked for ${KEY_PAIR_ID}`,
    );
  return {
    id: m.keyPairId,
    total: m.totalKeyPairs,
    currentAsymAlgo: m.currentAsymAlgo,
    assocCertSlotMask: m.assocCertSlotMask,
  };
}

/** spdm-emu's SET_KEY_PAIR_INFO: drop key pair 1's slot association, then erase it (stopping at ResetRequired). */
async function eraseKeyPair(r: SpdmRequester): Promise<number> {
  for (const operation of [KeyPairOperation.Change, KeyPairOperation.Erase]) {
    const change = operation === KeyPairOperation.Change;
    const reply = await r.exchange({
      code: "SET_KEY_PAIR_INFO",
      version: r.version,
      operation,
      keyPairId: KEY_PAIR_ID,
      // 1.4 adds the desired PQC algorithm (a 4-byte mask, as libspdm sends it); none here.
      ...(change && {
        desiredKeyUsage: 0,
        desiredAsymAlgo: 0,
        desiredAssocCertSlotMask: 0,
        desiredPqcAsymAlgo: r.version >= 0x14 ? Buffer.alloc(4) : undefined,
      }),
    });
    stopAtResetRequired(r, reply, "SET_KEY_PAIR_INFO");
    expectResponse(reply, "SET_KEY_PAIR_INFO_ACK");
  }
  return KEY_PAIR_ID;
}

/** KeyPairID and certificate model for GET_CSR / SET_CERTIFICATE: set only in a multi-key connection. */
const multiKey = (r: SpdmRequester) => (r.ctx.multiKeyConn ? KEY_PAIR_ID : 0);

/** ERROR ResetRequired to `step`, which ends the steps; `tag` is its ErrorData (GET_CSR's CSRTrackingTag). */
class ResetRequired extends Error {
  constructor(
    readonly step: ResetStep,
    readonly tag: number,
  ) {
    super(`${step}: ResetRequired`);
  }
}

/** Throws ResetRequired when `reply` is that ERROR (and the responder may send it). */
function stopAtResetRequired(r: SpdmRequester, reply: Reply, step: ResetStep): void {
  const m = reply.message;
  if (m.code !== "ERROR" || m.errorCode !== SpdmErrorCode.ResetRequired) return;
  const [cap, since] = RESET_CAPABILITY[step];
  if (r.version >= since && (r.rsp!.flags & ResponderCapability[cap]) === 0)
    fail("error-response", `responder answered ResetRequired without ${cap}`);
  throw new ResetRequired(step, step === "GET_CSR" ? m.errorData : 0);
}

/** The CSR; ResetRequired carries the CSRTrackingTag of one the device completes at its reset. */
export async function getCsr(r: SpdmRequester): Promise<Buffer> {
  const keyPairId = multiKey(r);
  // A tag exists from 1.3 on; before, the same request again retrieves the CSR after the reset.
  const tag = r.version >= 0x13 ? (r.options.csrTrackingTag ?? 0) : 0;
  const reply = await r.exchange({
    code: "GET_CSR",
    version: r.version,
    keyPairId,
    attributes: (keyPairId ? CertificateModel.DeviceCert : 0) | (tag << GetCsrAttribute.TRACKING_TAG_SHIFT),
    requesterInfo: Buffer.alloc(0),
    opaqueData: Buffer.alloc(0),
  });
  stopAtResetRequired(r, reply, "GET_CSR");
  const { csr } = expectResponse(reply, "CSR");
  const x509 = await loadX509();
  let ok = false;
  try {
    ok = await new x509.Pkcs10CertificateRequest(csr).verify();
  } catch (e) {
    fail("certificate", `CSR is not a PKCS#10 request: ${(e as Error).message}`);
  }
  if (!ok) fail("certificate", "CSR's signature does not verify with its own public key");
  return csr;
}

export async function setCertificate(
  r: SpdmRequester,
): Promise<NonNullable<ProvisionSummary["setCertificate"]>> {
  const given = r.options.setCertificate;
  const slot = given?.slot ?? r.options.slotId;
  const certsDer = given?.certsDer ?? r.chains.get(slot)?.chain.certsDer;
  if (!certsDer)
    fail("certificate", `SET_CERT: no chain for slot ${slot} (give one, or fetch the slot's with CERT)`);
  for (const der of certsDer) new X509Certificate(der); // throws on a certificate that does not parse
  const keyPairId = multiKey(r);
  const reply = await r.exchange({
    code: "SET_CERTIFICATE",
    version: r.version,
    attributes: slot | (keyPairId ? CertificateModel.DeviceCert << SET_CERTIFICATE_MODEL_SHIFT : 0),
    keyPairId,
    certChain: encodeCertChain(r.suite!.hash, certsDer),
  });
  stopAtResetRequired(r, reply, "SET_CERT");
  const m = expectResponse(reply, "SET_CERTIFICATE_RSP");
  if ((m.slotId & 0xf) !== slot)
    fail("malformed", `SET_CERTIFICATE_RSP is for slot ${m.slotId}, we set slot ${slot}`);
  return { slot, certificates: certsDer.length };
}
