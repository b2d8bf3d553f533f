/**
 * A function's answer to PCI-SIG vendor-defined requests (protocol/pcisig-vdm.ts): the message goes
 * to the engine of its Protocol ID (IDE-KM, TDISP), whose answer goes back in a
 * VENDOR_DEFINED_RESPONSE. Another vendor or protocol, or one the function has no engine for, is
 * not served, which the SPDM responder answers with ERROR UnsupportedRequest.
 */
import { DecodeError } from "../../protocol/errors.js";
import { decodePciSigVdm, encodePciSigVdm, type PciSigProtocol } from "../../protocol/pcisig-vdm.js";
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

export function pciSigHandler(engines: PciSigEngines): VendorDefinedHandler {
  return (request, ctx) => {
    let vdm: ReturnType<typeof decodePciSigVdm>;
    try {
      vdm = decodePciSigVdm(request);
    } catch (e) {
      if (e instanceof DecodeError) return undefined;
      throw e;
    }
    const engine = engines[vdm.protocol];
    return engine && encodePciSigVdm({ protocol: vdm.protocol, message: engine(vdm.message, ctx) });
  };
}
