/**
 * What a decoder must be told because the bytes alone don't say it: sizes fixed by the negotiated
 * algorithms, and a few flags fixed by capabilities or by the request a response answers.
 */
import {
  AlgType,
  CapabilityField,
  DHE_EXCHANGE_SIZE,
  HASH_SIZE,
  MEASUREMENT_HASH_SIZE,
  OtherParams,
  RequesterCapability,
  ResponderCapability,
  SIGNATURE_SIZE,
} from "./codes.js";
import type { Algorithms, Capabilities, GetCapabilities, NegotiateAlgorithms } from "./messages.js";

export interface DecodeContext {
  /** H: digest size of BaseHashAlgo (digests, cert chain hash, summary hash, verify data). */
  hashSize?: number;
  /** S: signature size of BaseAsymAlgo (CHALLENGE_AUTH, MEASUREMENTS, KEY_EXCHANGE_RSP). */
  asymSignatureSize?: number;
  /** Signature size of ReqBaseAsymAlg (FINISH with a requester signature). */
  reqAsymSignatureSize?: number;
  /** D: DHE exchange data size (KEY_EXCHANGE, KEY_EXCHANGE_RSP). */
  dheExchangeSize?: number;
  /** Digest size of MeasurementHashAlgo; when given, digest-form DMTF measurement values must have it. */
  measurementHashSize?: number;
  /** MULTI_KEY_CONN_RSP (1.3): DIGESTS carries KeyPairID/CertificateInfo/KeyUsageMask arrays. */
  multiKeyConn?: boolean;
  /**
   * MULTI_KEY_CONN_REQ (1.3, ALGORITHMS OtherParamsSelection MULTI_KEY_CONN): the requester's
   * DIGESTS (to an encapsulated GET_DIGESTS) carries those arrays.
   */
  multiKeyConnReq?: boolean;
  /** HANDSHAKE_IN_THE_CLEAR set by both sides: KEY_EXCHANGE_RSP has no ResponderVerifyData, FINISH_RSP has one. */
  handshakeInTheClear?: boolean;
  /** The request's MeasurementSummaryHashType (CHALLENGE Param2, KEY_EXCHANGE/PSK_EXCHANGE Param1); 0 = no summary hash. */
  measurementSummaryHashType?: number;
  /** GET_MEASUREMENTS asked for a signature (Param1 bit 0), so MEASUREMENTS ends with one. */
  measurementSignatureRequested?: boolean;
  /** GET_ENDPOINT_INFO asked for a signature (attributes bit 0), so ENDPOINT_INFO has a nonce and one. */
  endpointInfoSignatureRequested?: boolean;
  /**
   * What may follow the message in the buffer. "zeros" (default): only zero bytes, the 0–3 bytes of
   * DOE padding, so a mis-sized message (wrong context) is caught instead of hashed. "none": nothing.
   * "any": anything, as libspdm 1e16c60f does.
   */
  trailing?: "zeros" | "none" | "any";
}

/** The one selected bit of an algorithm struct table, or undefined if there is no such table. */
function structSelection(alg: Algorithms, type: number): number | undefined {
  return alg.algStructs.find((t) => t.algType === type)?.algSupported;
}

/**
 * The negotiated part of a DecodeContext, from the VCA messages. ALGORITHMS gives the sizes; the
 * flags need the capabilities (HANDSHAKE_IN_THE_CLEAR on both sides) and, for MULTI_KEY_CONN_RSP,
 * the responder's MULTI_KEY_CAP plus the request's OtherParamsSupport (libspdm does the same).
 */
export function negotiatedContext(vca: {
  algorithms: Algorithms;
  getCapabilities?: GetCapabilities;
  capabilities?: Capabilities;
  negotiateAlgorithms?: NegotiateAlgorithms;
}): DecodeContext {
  const { algorithms: alg, capabilities: rsp, getCapabilities: req, negotiateAlgorithms: neg } = vca;
  const reqAsym = structSelection(alg, AlgType.REQ_BASE_ASYM_ALG);
  const dhe = structSelection(alg, AlgType.DHE);
  const ctx: DecodeContext = {
    hashSize: HASH_SIZE[alg.baseHashSel],
    asymSignatureSize: SIGNATURE_SIZE[alg.baseAsymSel],
    reqAsymSignatureSize: reqAsym === undefined ? undefined : SIGNATURE_SIZE[reqAsym],
    dheExchangeSize: dhe === undefined ? undefined : DHE_EXCHANGE_SIZE[dhe],
    measurementHashSize: MEASUREMENT_HASH_SIZE[alg.measurementHashAlgo],
  };
  if (rsp && req?.flags !== undefined) {
    ctx.handshakeInTheClear =
      (rsp.flags & ResponderCapability.HANDSHAKE_IN_THE_CLEAR_CAP) !== 0 &&
      (req.flags & RequesterCapability.HANDSHAKE_IN_THE_CLEAR_CAP) !== 0;
  }
  ctx.multiKeyConnReq = alg.version >= 0x13 && (alg.otherParamsSelection & OtherParams.MULTI_KEY_CONN) !== 0;
  if (alg.version < 0x13) ctx.multiKeyConn = false;
  else if (rsp) {
    const cap = rsp.flags & CapabilityField.MULTI_KEY_CAP;
    if (cap === ResponderCapability.MULTI_KEY_CAP_ONLY) ctx.multiKeyConn = true;
    else if (cap === 0) ctx.multiKeyConn = false;
    else if (neg) ctx.multiKeyConn = (neg.otherParamsSupport & OtherParams.MULTI_KEY_CONN) !== 0;
  }
  return ctx;
}
