/**
 * spdm-emu's vocabulary (spdm-emu 85436d53 spdm_emu_common/spdm_emu.c): the names its command lines
 * give SPDM versions, capability flags and algorithms, with their codes. `doe-emu requester` flags
 * and the `spdm` section of a device description use these tables, and src/crypto/suites.ts keys
 * its algorithms by the same names, so each algorithm has one spelling everywhere.
 */
import {
  AeadCipherSuite,
  BaseAsymAlgo,
  BaseHashAlgo,
  DheNamedGroup,
  KeyScheduleAlgo,
  MeasurementHashAlgo,
  MeasurementSpecification,
  OtherParams,
  RequesterCapability as Req,
  ResponderCapability as Rsp,
  SpdmVersion,
} from "../../protocol/spdm/codes.js";

export type Names = Readonly<Record<string, number>>;

export const VERSION_NAMES = {
  "1.0": SpdmVersion.V1_0,
  "1.1": SpdmVersion.V1_1,
  "1.2": SpdmVersion.V1_2,
  "1.3": SpdmVersion.V1_3,
  "1.4": SpdmVersion.V1_4,
} as const;

/** Requester capability flags (`--cap` of spdm_requester_emu), without _CAP. */
export const REQUESTER_CAPABILITY_NAMES = {
  CERT: Req.CERT_CAP,
  CHAL: Req.CHAL_CAP,
  ENCRYPT: Req.ENCRYPT_CAP,
  MAC: Req.MAC_CAP,
  MUT_AUTH: Req.MUT_AUTH_CAP,
  KEY_EX: Req.KEY_EX_CAP,
  PSK: Req.PSK_CAP,
  ENCAP: Req.ENCAP_CAP,
  HBEAT: Req.HBEAT_CAP,
  KEY_UPD: Req.KEY_UPD_CAP,
  HANDSHAKE_IN_CLEAR: Req.HANDSHAKE_IN_THE_CLEAR_CAP,
  PUB_KEY_ID: Req.PUB_KEY_ID_CAP,
  CHUNK: Req.CHUNK_CAP,
  EP_INFO_NO_SIG: Req.EP_INFO_CAP_NO_SIG,
  EP_INFO_SIG: Req.EP_INFO_CAP_SIG,
  EVENT: Req.EVENT_CAP,
  MULTI_KEY_ONLY: Req.MULTI_KEY_CAP_ONLY,
  MULTI_KEY_NEG: Req.MULTI_KEY_CAP_NEG,
  LARGE_RESP: Req.LARGE_RESP_CAP,
} as const;

/** Responder capability flags (`--cap` of spdm_responder_emu) that our responder implements. */
export const RESPONDER_CAPABILITY_NAMES = {
  CERT: Rsp.CERT_CAP,
  CHAL: Rsp.CHAL_CAP,
  MEAS_NO_SIG: Rsp.MEAS_CAP_NO_SIG,
  MEAS_SIG: Rsp.MEAS_CAP_SIG,
  MEAS_FRESH: Rsp.MEAS_FRESH_CAP,
  CHUNK: Rsp.CHUNK_CAP,
  // Secure sessions (1.1+): records are always encrypted and MACed, so ENCRYPT and MAC go together.
  ENCRYPT: Rsp.ENCRYPT_CAP,
  MAC: Rsp.MAC_CAP,
  KEY_EX: Rsp.KEY_EX_CAP,
  /** PSK_CAP 01b: no responder context, so no PSK_FINISH. */
  PSK: Rsp.PSK_CAP_RESPONDER,
  /** PSK_CAP 10b: a responder context, and PSK_FINISH. */
  PSK_WITH_CONTEXT: Rsp.PSK_CAP_RESPONDER_WITH_CONTEXT,
  HBEAT: Rsp.HBEAT_CAP,
  KEY_UPD: Rsp.KEY_UPD_CAP,
  HANDSHAKE_IN_CLEAR: Rsp.HANDSHAKE_IN_THE_CLEAR_CAP,
  SET_CERT: Rsp.SET_CERT_CAP,
  CSR: Rsp.CSR_CAP,
  /** GET_CSR and SET_CERTIFICATE complete across the device's reset (responder-install-reset.ts). */
  CERT_INSTALL_RESET: Rsp.CERT_INSTALL_RESET_CAP,
  EP_INFO_NO_SIG: Rsp.EP_INFO_CAP_NO_SIG,
  EP_INFO_SIG: Rsp.EP_INFO_CAP_SIG,
  MEL: Rsp.MEL_CAP,
  GET_KEY_PAIR_INFO: Rsp.GET_KEY_PAIR_INFO_CAP,
  SET_KEY_PAIR_INFO: Rsp.SET_KEY_PAIR_INFO_CAP,
  /** SET_KEY_PAIR_INFO completes across the device's reset (1.4; responder-install-reset.ts). */
  SET_KEY_PAIR_RESET: Rsp.SET_KEY_PAIR_RESET_CAP,
  /** Encapsulated requests (1.1+): the responder-initiated KEY_UPDATE; mutual-auth modes add it themselves. */
  ENCAP: Rsp.ENCAP_CAP,
  /** Multi-key connections (1.3): always, or when the requester asks with MULTI_KEY_CONN. */
  MULTI_KEY_ONLY: Rsp.MULTI_KEY_CAP_ONLY,
  MULTI_KEY_NEG: Rsp.MULTI_KEY_CAP_NEG,
  /** 1.4 large forms: GET_CERTIFICATE/CERTIFICATE LargeCertChain, VENDOR_DEFINED LargeReq/LargeResp. */
  LARGE_RESP: Rsp.LARGE_RESP_CAP,
} as const;

// Algorithms: the codes' own names are spdm-emu's, except for the three renamed here.
export const HASH_NAMES = BaseHashAlgo;
export const ASYM_NAMES = BaseAsymAlgo;
export const DHE_NAMES = DheNamedGroup;
const { RAW_BIT_STREAM_ONLY, ...MEASUREMENT_HASHES } = MeasurementHashAlgo;
export const MEASUREMENT_HASH_NAMES = { RAW_BIT: RAW_BIT_STREAM_ONLY, ...MEASUREMENT_HASHES } as const;
const { SM4_GCM, ...AEADS } = AeadCipherSuite;
export const AEAD_NAMES = { ...AEADS, SM4_128_GCM: SM4_GCM } as const;
export const KEY_SCHEDULE_NAMES = { HMAC_HASH: KeyScheduleAlgo.SPDM } as const;
export const MEASUREMENT_SPEC_NAMES = MeasurementSpecification;
export const OTHER_PARAM_NAMES = {
  OPAQUE_FMT_1: OtherParams.OPAQUE_DATA_FMT_1,
  MULTI_KEY_CONN: OtherParams.MULTI_KEY_CONN,
} as const;

/** libspdm 1e16c60f's sample PSK and hint (LIBSPDM_TEST_PSK_DATA_STRING / _HINT_STRING, NUL included). */
export const DMTF_TEST_PSK = Buffer.from("TestPskData\0", "latin1");
export const DMTF_TEST_PSK_HINT = Buffer.from("TestPskHint\0", "latin1");
