/**
 * GET_CERTIFICATE answered from a chain we hold, shared by our responder and by our requester's
 * answers to encapsulated requests (libspdm_rsp_certificate.c, libspdm_req_encap_certificate.c):
 * the 16-bit or 1.4 LargeCertChain (Param1 bit 7) form, and 1.3 SlotSizeRequested.
 */
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import { CERTIFICATE_LARGE_CHAIN, SpdmVersion } from "../../protocol/spdm/codes.js";
import type { GetCertificate } from "../../protocol/spdm/messages.js";

/** GET_CERTIFICATE Param2 bit 0 (1.3): only the slot's size is asked for. */
const SLOT_SIZE_REQUESTED = 0x1;
/** CERTIFICATE's header before the portion: 8 bytes, 16 with LargeCertChain's 32-bit lengths. */
const HEADER = 8;
const LARGE_HEADER = 16;
/** The largest chain the 16-bit fields reach (libspdm's SPDM_MAX_CERTIFICATE_CHAIN_SIZE). */
export const MAX_SMALL_CHAIN = 0xffff;

/** What a GET_CERTIFICATE asks for. */
export interface CertificateAsk {
  slot: number;
  /** 1.4 LargeCertChain: the 32-bit offset and length apply, and the answer uses them too. */
  large: boolean;
  sizeOnly: boolean;
  offset: number;
  length: number;
  /** CERTIFICATE's header size in this form. */
  header: number;
}

export function certificateAsk(m: GetCertificate): CertificateAsk {
  const large = m.version >= SpdmVersion.V1_4 && (m.slotId & CERTIFICATE_LARGE_CHAIN) !== 0;
  const sizeOnly = m.version >= SpdmVersion.V1_3 && (m.attributes & SLOT_SIZE_REQUESTED) !== 0;
  return {
    slot: m.slotId & 0xf,
    large,
    sizeOnly,
    offset: sizeOnly ? 0 : large ? m.largeOffset! : m.offset,
    length: large ? m.largeLength! : m.length,
    header: large ? LARGE_HEADER : HEADER,
  };
}

/**
 * The CERTIFICATE for `ask` (its offset already checked to lie inside `chain`): at most `room`
 * bytes of the chain in one portion; `attributes` is Param2 (the certificate model).
 */
export function certificatePortion(
  version: number,
  ask: CertificateAsk,
  chain: Buffer,
  room: number,
  attributes: number,
): Buffer {
  const { offset, sizeOnly } = ask;
  const length = sizeOnly ? 0 : Math.min(ask.length, room, chain.length - offset);
  return encodeSpdm({
    code: "CERTIFICATE",
    version,
    slotId: ask.slot | (ask.large ? CERTIFICATE_LARGE_CHAIN : 0),
    attributes,
    remainderLength: sizeOnly ? chain.length : chain.length - offset - length,
    certChain: chain.subarray(offset, offset + length),
  });
}
