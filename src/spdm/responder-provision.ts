/**
 * The responder's provisioning and inventory requests, as libspdm 7199f344's responder answers them
 * (libspdm_rsp_measurement_extension_log.c, _csr.c, _set_certificate.c, _key_pair_info.c,
 * _set_key_pair_info_ack.c, _endpoint_info.c):
 * - GET_MEASUREMENT_EXTENSION_LOG: the description's MEL (DMTF format), a portion per request
 *   (without chunking at most what one transfer holds). The MEL stands on its own: no measurement
 *   block's digest is checked against it.
 * - GET_CSR: a PKCS#10 request signed by a key pair's key (KeyPairID of a 1.3 request), else by
 *   the key of the lowest slot serving the connection, subject "doe-emu device"; RequesterInfo and opaque data are accepted and not used. Without
 *   CERT_INSTALL_RESET_CAP every CSR is produced at once, and a CSRTrackingTag or Overwrite is an
 *   invalid request; with it, responder-install-reset.ts defers it.
 * - SET_CERTIFICATE: the chain must parse (negotiated hash), and its leaf's public key must be the
 *   key pair's (KeyPairID), else the slot's current key, else the lowest slot's. It then replaces the
 *   slot for every later connection, this one included; 1.3 Erase empties the slot. With
 *   CERT_INSTALL_RESET_CAP both wait for the device's reset (responder-install-reset.ts).
 * - GET/SET_KEY_PAIR_INFO: provisioning.ts's key pairs, with libspdm's checks on the request. With
 *   SET_KEY_PAIR_RESET_CAP (1.4) a change waits for the device's reset (responder-install-reset.ts).
 * - GET_ENDPOINT_INFO: the description's EPInfo; signed on request by the slot's key over
 *   A ‖ GET_ENDPOINT_INFO ‖ ENDPOINT_INFO without the signature (libspdm's IL1/IL2, in or out of a
 *   session).
 */
import { type KeyObject, randomBytes } from "node:crypto";
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import { NONCE_SIZE, ResponderCapability, SpdmRequestCode, SpdmVersion } from "../../protocol/spdm/codes.js";
import type { MessageOf } from "../../protocol/spdm/messages.js";
import {
  ENDPOINT_INFO_SIGNATURE_REQUESTED,
  ENDPOINT_INFO_SUBCODE_DEVICE_CLASS_IDENTIFIER,
  GetCsrAttribute,
  KeyPairAsymAlgo,
  KeyPairCapability,
  KeyPairOperation,
  SET_CERTIFICATE_ERASE,
} from "../../protocol/spdm/provision.js";
import { isOneHotOrZero } from "../bits.js";
import { decodeCertChain, encodeCertChain } from "../crypto/cert-chain.js";
import { createCsr } from "../crypto/csr.js";
import { ASYM, type AsymAlgo, hash, keyFits, publicKeyDer } from "../crypto/suites.js";
import { KEY_PAIR_USAGES, type KeyPair, type KeyPairChange } from "./provisioning.js";
import { check, EMPTY, fail, type ResponderContext } from "./responder-context.js";
import {
  csrAcrossReset,
  keyPairChangeAcrossReset,
  keyPairChangeDone,
  setCertificateAcrossReset,
} from "./responder-install-reset.js";

export type ProvisionContext = Pick<
  ResponderContext,
  "config" | "slots" | "connection" | "transcript" | "provisioning"
>;

const MEL_RESPONSE_HEADER = 12;
const CSR_SUBJECT = "doe-emu device";
const MAX_SLOT = 7;

/** KEY_PAIR_INFO's algorithm bit for an asym algorithm. */
export function keyPairAlgo(asym: AsymAlgo): number {
  const { size } = ASYM[asym];
  if (typeof size === "number") return KeyPairAsymAlgo[`RSA${size}` as "RSA2048"];
  return (
    { prime256v1: KeyPairAsymAlgo.ECC256, secp384r1: KeyPairAsymAlgo.ECC384 }[size] ?? KeyPairAsymAlgo.ECC521
  );
}

export function getMeasurementExtensionLog(
  c: Pick<ProvisionContext, "config" | "connection">,
  m: MessageOf<"GET_MEASUREMENT_EXTENSION_LOG">,
): Buffer {
  const { melSpec, measurementHash } = c.connection.negotiated;
  check(melSpec !== 0 && measurementHash !== 0, "UnexpectedRequest");
  const { mel } = c.config;
  check(m.offset < mel.length);
  const room = c.connection.chunking
    ? Number.POSITIVE_INFINITY
    : c.connection.sendLimit - MEL_RESPONSE_HEADER;
  const length = Math.min(m.length, room, mel.length - m.offset);
  return encodeSpdm({
    code: "MEASUREMENT_EXTENSION_LOG",
    version: m.version,
    remainderLength: mel.length - m.offset - length,
    mel: mel.subarray(m.offset, m.offset + length),
  });
}

/** The negotiated asym algorithm (the requests here are admitted only with CERT_CAP, so there is one). */
function negotiatedAsym(c: Pick<ProvisionContext, "connection">): AsymAlgo {
  const { asym } = c.connection.negotiated;
  check(asym !== undefined, "Unspecified");
  return asym;
}

/** A key pair's private key for `asym`: the generated one, else its slot's; undefined when it has none. */
async function keyOf(
  c: Pick<ProvisionContext, "slots">,
  kp: KeyPair,
  asym: AsymAlgo,
): Promise<KeyObject | undefined> {
  if (kp.erased) return undefined;
  if (kp.generated) return kp.generated.asym === asym ? kp.generated.key : undefined;
  return (await c.slots.forAsym(asym)).get(kp.slot)?.privateKey;
}

function keyPairFor(c: Pick<ProvisionContext, "provisioning">, id: number): KeyPair {
  const kp = c.provisioning.keyPair(id);
  check(kp !== undefined);
  return kp;
}

/** Without a KeyPairID (no multi-key connection): the key of the lowest slot serving this connection. */
function deviceKey(c: Pick<ProvisionContext, "connection">, slotId?: number): KeyObject | undefined {
  const { slots } = c.connection.negotiated;
  return (
    (slotId === undefined ? undefined : slots.get(slotId)?.privateKey) ??
    slots.values().next().value?.privateKey
  );
}

/** The device completes certificate installs across a reset (responder-install-reset.ts). */
const installReset = (c: Pick<ProvisionContext, "connection">) =>
  (c.connection.advertised & ResponderCapability.CERT_INSTALL_RESET_CAP) !== 0;

export async function getCsr(c: ProvisionContext, m: MessageOf<"GET_CSR">, request: Buffer): Promise<Buffer> {
  const asym = negotiatedAsym(c);
  const deferred = GetCsrAttribute.TRACKING_TAG_MASK | GetCsrAttribute.OVERWRITE;
  check(m.version < SpdmVersion.V1_3 || installReset(c) || (m.attributes & deferred) === 0);
  const make = async () => {
    const key =
      m.version >= SpdmVersion.V1_3 && m.keyPairId !== 0
        ? await keyOf(c, keyPairFor(c, m.keyPairId), asym)
        : deviceKey(c);
    check(key !== undefined, "OperationFailed");
    return createCsr(asym, key, CSR_SUBJECT);
  };
  const csr = installReset(c) ? await csrAcrossReset(c, m, request, make) : await make();
  return encodeSpdm({ code: "CSR", version: m.version, csr });
}

export async function setCertificate(c: ProvisionContext, m: MessageOf<"SET_CERTIFICATE">): Promise<Buffer> {
  const slotId = m.attributes & 0xf;
  check(slotId <= MAX_SLOT);
  const response = encodeSpdm({ code: "SET_CERTIFICATE_RSP", version: m.version, slotId });
  const { connection, provisioning } = c;
  if (m.version >= SpdmVersion.V1_3 && (m.attributes & SET_CERTIFICATE_ERASE) !== 0) {
    if (installReset(c)) setCertificateAcrossReset(c, slotId, null);
    provisioning.erase(slotId);
    connection.negotiated.slots.delete(slotId);
    return response;
  }
  const { hash: h } = connection.negotiated;
  const asym = negotiatedAsym(c);
  check(h !== undefined && m.certChain !== undefined);
  const { certsDer, certs } = decodeCertChain(h, m.certChain); // DecodeError: InvalidRequest
  const leafKey = certs.at(-1)!.publicKey;
  check(keyFits(asym, leafKey));
  const key =
    m.version >= SpdmVersion.V1_3 && m.keyPairId !== 0
      ? await keyOf(c, keyPairFor(c, m.keyPairId), asym)
      : deviceKey(c, slotId);
  // A chain for another key would make every signature of the slot fail at the requester.
  check(key !== undefined && publicKeyDer(key).equals(publicKeyDer(leafKey)));
  if (installReset(c)) setCertificateAcrossReset(c, slotId, { certsDer, privateKey: key });
  const chain = encodeCertChain(h, certsDer);
  provisioning.install(slotId, { certsDer, privateKey: key });
  connection.negotiated.slots.set(slotId, { chain, digest: hash(h, chain), privateKey: key });
  return response;
}

const KEY_PAIR_USAGE_CAPABILITIES = KEY_PAIR_USAGES;
const KEY_PAIR_CAPABILITIES =
  KeyPairCapability.GEN_KEY_CAP |
  KeyPairCapability.ERASABLE_CAP |
  KeyPairCapability.CERT_ASSOC_CAP |
  KeyPairCapability.KEY_USAGE_CAP;

export async function getKeyPairInfo(
  c: ProvisionContext,
  m: MessageOf<"GET_KEY_PAIR_INFO">,
): Promise<Buffer> {
  const { keyPairs } = c.provisioning;
  check(m.keyPairId !== 0);
  const kp = keyPairFor(c, m.keyPairId);
  const asym = negotiatedAsym(c);
  const key = await keyOf(c, kp, asym);
  const algos = c.config.asym.filter((a) => c.slots.canServe(a)).map(keyPairAlgo);
  return encodeSpdm({
    code: "KEY_PAIR_INFO",
    version: m.version,
    totalKeyPairs: keyPairs.length,
    keyPairId: kp.id,
    // Without SET_KEY_PAIR_INFO nothing about a key pair can be changed (libspdm's requester checks it).
    capabilities:
      (c.connection.advertised & ResponderCapability.SET_KEY_PAIR_INFO_CAP) !== 0 ? KEY_PAIR_CAPABILITIES : 0,
    keyUsageCapabilities: KEY_PAIR_USAGE_CAPABILITIES,
    currentKeyUsage: kp.usage,
    asymAlgoCapabilities: algos.reduce((a, b) => a | b, 0),
    currentAsymAlgo: key ? keyPairAlgo(asym) : 0,
    assocCertSlotMask: kp.assocMask,
    publicKeyInfo: key ? publicKeyDer(key) : EMPTY,
    ...(m.version >= 0x14 && {
      pqcAsymAlgoCapabilities: Buffer.alloc(4),
      currentPqcAsymAlgo: Buffer.alloc(4),
    }),
  });
}

export async function setKeyPairInfo(
  c: ProvisionContext,
  m: MessageOf<"SET_KEY_PAIR_INFO">,
): Promise<Buffer> {
  check(m.keyPairId !== 0);
  const kp = keyPairFor(c, m.keyPairId);
  check(m.operation <= KeyPairOperation.Generate);
  const usage = m.desiredKeyUsage ?? 0;
  const algo = m.desiredAsymAlgo ?? 0;
  const assoc = m.desiredAssocCertSlotMask ?? 0;
  check((usage | KEY_PAIR_USAGE_CAPABILITIES) === KEY_PAIR_USAGE_CAPABILITIES);
  const asym = c.config.asym.find((a) => keyPairAlgo(a) === algo && c.slots.canServe(a));
  check(isOneHotOrZero(algo) && (algo === 0 || asym !== undefined));
  // Not SHAREABLE: a key pair is associated with one slot at most.
  check(isOneHotOrZero(assoc));
  const ack = encodeSpdm({ code: "SET_KEY_PAIR_INFO_ACK", version: m.version });
  const change: KeyPairChange = { id: kp.id, operation: m.operation, usage, algo, assocMask: assoc };
  // Only a 1.4 connection carries SET_KEY_PAIR_RESET_CAP (as libspdm asks for the reset).
  const acrossReset = (c.connection.advertised & ResponderCapability.SET_KEY_PAIR_RESET_CAP) !== 0;
  if (acrossReset && keyPairChangeDone(c, change)) return ack;
  if (m.operation !== KeyPairOperation.Change && kp.assocMask !== 0) fail("OperationFailed");
  const current = kp.generated?.asym ?? negotiatedAsym(c);
  // A key's algorithm is fixed once it exists.
  if (m.operation === KeyPairOperation.Change)
    check(algo === 0 || kp.erased || keyPairAlgo(current) === algo);
  if (m.operation === KeyPairOperation.Generate) change.asym = asym ?? current;
  if (acrossReset) keyPairChangeAcrossReset(c, change);
  c.provisioning.changeKeyPair(change);
  return ack;
}

export function getEndpointInfo(
  c: Pick<ProvisionContext, "config" | "connection" | "transcript">,
  m: MessageOf<"GET_ENDPOINT_INFO">,
  request: Buffer,
): Buffer {
  check(m.subCode === ENDPOINT_INFO_SUBCODE_DEVICE_CLASS_IDENTIFIER);
  const signed = (m.attributes & ENDPOINT_INFO_SIGNATURE_REQUESTED) !== 0;
  const { connection } = c;
  if (signed && (connection.advertised & ResponderCapability.EP_INFO_CAP_SIG) === 0)
    fail("UnsupportedRequest", SpdmRequestCode.GET_ENDPOINT_INFO);
  const slotId = signed ? m.slotId & 0xf : 0;
  if (signed) check(connection.negotiated.slots.has(slotId));
  const unsigned = encodeSpdm({
    code: "ENDPOINT_INFO",
    version: m.version,
    slotId,
    nonce: signed ? randomBytes(NONCE_SIZE) : undefined,
    epInfo: c.config.endpointInfo,
    signature: EMPTY,
  });
  if (!signed) return unsigned;
  const il = Buffer.concat([c.transcript.vca, request, unsigned]);
  return Buffer.concat([unsigned, connection.sign("ENDPOINT_INFO", slotId, il)]);
}
