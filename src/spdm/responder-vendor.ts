/**
 * VENDOR_DEFINED_REQUEST (DSP0274 VENDOR_DEFINED_REQUEST/RESPONSE): the SPDM engine only carries
 * these; what they mean (PCI-SIG IDE-KM and TDISP, ...) belongs to the device, which plugs in a
 * handler. A request no handler serves gets ERROR UnsupportedRequest. The 1.4 large form (32-bit
 * payload length) needs LARGE_RESP_CAP on both sides (else InvalidRequest, as libspdm) and is
 * answered in the same form: libspdm's requester sends it whenever both advertise the capability.
 */
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import { RequesterCapability, ResponderCapability, SpdmCode } from "../../protocol/spdm/codes.js";
import type { VendorDefinedRequest, VendorFields } from "../../protocol/spdm/messages.js";
import { type Connection, check, type Exchange, fail } from "./responder-context.js";

/** Where a vendor-defined request came from: its session (undefined in the clear). */
export interface VendorRequestContext {
  sessionId: number | undefined;
  /** The hint a PSK session was opened with. */
  pskHint?: Buffer;
  /**
   * The pre-shared keys the device provisions, by hint, for the rest of this SPDM connection: they
   * replace any it provisioned before. PSK_EXCHANGE naming one of the hints opens a session keyed by it.
   */
  providePsks(psks: ReadonlyMap<Buffer, Buffer>): void;
}

/** The response's vendor fields, or undefined when the handler serves no such StandardID/vendor/protocol. */
export type VendorDefinedHandler = (
  request: VendorFields,
  ctx: VendorRequestContext,
) => VendorFields | undefined;

export function vendorDefined(
  handler: VendorDefinedHandler,
  connection: Connection,
  m: VendorDefinedRequest,
  x: Exchange,
): Buffer {
  const large = m.large === true;
  check(!large || connection.both(RequesterCapability.LARGE_RESP_CAP, ResponderCapability.LARGE_RESP_CAP));
  const answer = handler(m, {
    sessionId: x.session?.sessionId,
    pskHint: x.session?.pskHint,
    providePsks: (psks) => {
      connection.psks.clear();
      for (const [hint, psk] of psks) connection.psks.set(hint.toString("hex"), Buffer.from(psk));
    },
  });
  if (!answer) fail("UnsupportedRequest", SpdmCode.VENDOR_DEFINED_REQUEST);
  const { standardId, vendorId, payload } = answer;
  return encodeSpdm({
    code: "VENDOR_DEFINED_RESPONSE",
    version: m.version,
    large,
    standardId,
    vendorId,
    payload,
  });
}
