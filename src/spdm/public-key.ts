/**
 * Public-key mode (DSP0274 PUB_KEY_ID_CAP), both roles: the peer's public key is provisioned out
 * of band instead of a certificate chain being read. SlotID 0xFF names that key in CHALLENGE,
 * KEY_EXCHANGE and FINISH, 0xF in the 4-bit slot fields (CHALLENGE_AUTH Param1, GET_MEASUREMENTS
 * SlotIDParam, KEY_EXCHANGE_RSP ReqSlotIDParam), and where a transcript holds the chain's hash
 * (CHALLENGE_AUTH CertChainHash, TH's Hash(CT) and Hash(requester CT)) it holds the hash of the
 * key's DER SubjectPublicKeyInfo: libspdm hashes the provisioned DER as given (spdm-emu's
 * `*.key.pub.der`), which is the SPKI node exports for the same key, byte for byte.
 */
import { RequesterCapability, ResponderCapability } from "../../protocol/spdm/codes.js";

/** The SlotID of the provisioned public key. */
export const PUBLIC_KEY_SLOT = 0xff;
/** The same in a 4-bit slot field. */
export const PUBLIC_KEY_SLOT_PARAM = 0xf;

/** A 4-bit slot field's value as a SlotID (0xF names the provisioned key). */
export const slotOfParam = (param: number): number =>
  (param & 0xf) === PUBLIC_KEY_SLOT_PARAM ? PUBLIC_KEY_SLOT : param & 0xf;

/**
 * Responder capabilities that need certificates, which spdm-emu's `--slot_id 0xFF` drops for
 * PUB_KEY_ID_CAP (libspdm's requester refuses CERT_CAP beside it, and multi-key and key-pair info
 * beside it).
 */
export const CERTIFICATE_CAPABILITIES =
  ResponderCapability.CERT_CAP |
  ResponderCapability.ALIAS_CERT_CAP |
  ResponderCapability.SET_CERT_CAP |
  ResponderCapability.CSR_CAP |
  ResponderCapability.CERT_INSTALL_RESET_CAP |
  ResponderCapability.MULTI_KEY_CAP_ONLY |
  ResponderCapability.MULTI_KEY_CAP_NEG |
  ResponderCapability.GET_KEY_PAIR_INFO_CAP |
  ResponderCapability.SET_KEY_PAIR_INFO_CAP |
  ResponderCapability.SET_KEY_PAIR_RESET_CAP;

/** What spdm-emu's `--req_slot_id 0xFF` drops from a requester's flags for PUB_KEY_ID_CAP. */
export const REQUESTER_CERTIFICATE_CAPABILITIES =
  RequesterCapability.CERT_CAP |
  RequesterCapability.MULTI_KEY_CAP_ONLY |
  RequesterCapability.MULTI_KEY_CAP_NEG;
