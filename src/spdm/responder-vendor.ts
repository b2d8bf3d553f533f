/**
 * VENDOR_DEFINED_REQUEST (DSP0274 VENDOR_DEFINED_REQUEST/RESPONSE): the SPDM engine only carries
 * these; what they mean (PCI-SIG IDE-KM and TDISP, ...) belongs to the device, which plugs in a
 * handler. A request no handler serves gets ERROR UnsupportedRequest.
 */
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import { SpdmCode } from "../../protocol/spdm/codes.js";
import type { VendorDefinedRequest, VendorFields } from "../../protocol/spdm/messages.js";
import { type Connection, type Exchange, fail } from "./responder-context.js";

/** Where a vendor-defined request came from: its session (undefined in the clear). */
export interface VendorRequestContext {
  sessionId: number | undefined;
  /** The hint a PSK session was opened with. */
  pskHint?: Buffer;
  /** Makes PSK_EXCHANGE with `hint` open a session keyed by `psk`, for the rest of this SPDM connection. */
  providePsk(hint: Buffer, psk: Buffer): void;
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
  const answer = handler(m, {
    sessionId: x.session?.sessionId,
    pskHint: x.session?.pskHint,
    providePsk: (hint, psk) => connection.psks.set(hint.toString("hex"), Buffer.from(psk)),
  });
  if (!answer) fail("UnsupportedRequest", SpdmCode.VENDOR_DEFINED_REQUEST);
  const { standardId, vendorId, payload } = answer;
  return encodeSpdm({ code: "VENDOR_DEFINED_RESPONSE", version: m.version, standardId, vendorId, payload });
}
