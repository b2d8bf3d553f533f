/**
 * A function's answer to PCI-SIG vendor-defined requests (protocol/pcisig-vdm.ts): the message goes
 * to the engine of the protocol its VendorID and Protocol ID name (PCI-SIG's IDE-KM and TDISP, CXL's
 * IDE-KM), whose answer goes back in a VENDOR_DEFINED_RESPONSE with the same VendorID. Another
 * vendor or protocol, or one the function has no engine for, is not served (logged), which the SPDM
 * responder answers with ERROR UnsupportedRequest.
 */
import { DecodeError } from "../../protocol/errors.js";
import { decodePciSigVdm, encodePciSigVdm, type PciSigProtocol } from "../../protocol/pcisig-vdm.js";
import { hex32 } from "../bits.js";
import type { Logger } from "../log.js";
import type { VendorDefinedHandler, VendorRequestContext } from "../spdm/responder-vendor.js";

/** One protocol's engine: its request message in, its response message out (errors are its own). */
export type PciSigEngine = (message: Buffer, ctx: VendorRequestContext) => Buffer;

export type PciSigEngines = Partial<Record<PciSigProtocol, PciSigEngine>>;

/** `decode()`; a DecodeError becomes the protocol's own refusal (`refusal` throws it). */
export function decodeOrRefuse<T>(decode: () => T, refusal: () => never): T {
  try {
    return decode();
  } catch (e) {
    if (e instanceof DecodeError) refusal();
    throw e;
  }
}

export function pciSigHandler(engines: PciSigEngines, log: Logger): VendorDefinedHandler {
  return (request, ctx) => {
    let vdm: ReturnType<typeof decodePciSigVdm> | undefined;
    try {
      vdm = decodePciSigVdm(request);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
    }
    const engine = vdm && engines[vdm.protocol];
    if (!vdm || !engine) {
      // Said once per request, so that a peer's run shows where it reached what this device lacks.
      log.info(
        {
          standardId: request.standardId,
          vendorId: request.vendorId.toString("hex"),
          protocolId: request.payload[0] ?? null,
          sessionId: ctx.sessionId === undefined ? null : hex32(ctx.sessionId),
        },
        "vendor-defined request not served",
      );
      return undefined;
    }
    return encodePciSigVdm({ protocol: vdm.protocol, message: engine(vdm.message, ctx) });
  };
}
