/**
 * The PCI-SIG payload of SPDM VENDOR_DEFINED_REQUEST/RESPONSE (DSP0274 VENDOR_DEFINED): StandardID 3
 * (PCI-SIG), a 2-byte VendorID, then the Protocol ID byte and the protocol's message. VendorID
 * 0x0001 (PCI-SIG) carries Protocol ID 00h IDE_KM (PCIe r6.0 §6.33.3, protocol/ide-km.ts) and 01h
 * TDISP (PCIe r6.1 chapter 11, protocol/tdisp.ts); CXL uses the same StandardID with VendorID
 * 0x1E98 (libspdm 1e16c60f cxl_idekm.h), where Protocol ID 00h is CXL IDE_KM (CXL 3.0 chapter 11,
 * protocol/cxl-ide-km.ts) and 01h CXL TSP (CXL 3.1 §11.5, protocol/cxl-tsp.ts). The VendorID and the Protocol ID together name the protocol, as spdm-emu
 * 85436d53 dispatches them.
 */

import { PCI_SIG_VENDOR_ID } from "./doe.js";
import { DecodeError } from "./errors.js";
import { hexDigits } from "./hex.js";
import { RegistryId } from "./spdm/codes.js";
import type { VendorFields } from "./spdm/messages.js";

export const PCI_SIG_STANDARD_ID = RegistryId.PCISIG;
export const CXL_VENDOR_ID = 0x1e98;
/** Each protocol: the VendorID and the Protocol ID that name it. */
export const PCI_SIG_PROTOCOLS = {
  IDE_KM: { vendorId: PCI_SIG_VENDOR_ID, protocolId: 0x00 },
  TDISP: { vendorId: PCI_SIG_VENDOR_ID, protocolId: 0x01 },
  CXL_IDE_KM: { vendorId: CXL_VENDOR_ID, protocolId: 0x00 },
  CXL_TSP: { vendorId: CXL_VENDOR_ID, protocolId: 0x01 },
} as const;
export type PciSigProtocol = keyof typeof PCI_SIG_PROTOCOLS;

export interface PciSigVdm {
  protocol: PciSigProtocol;
  /** The protocol message after the Protocol ID byte. */
  message: Buffer;
}

/** SPDM-message offsets of the fields checked, as DSP0274 lays out a 2-byte VendorID. */
const At = { STANDARD_ID: 4, VENDOR_ID_LEN: 6, VENDOR_ID: 7, PROTOCOL_ID: 11 } as const;
const VENDORS = new Set<number>(Object.values(PCI_SIG_PROTOCOLS).map((p) => p.vendorId));
const protocolKey = (vendorId: number, protocolId: number) => (vendorId << 8) | protocolId;
const PROTOCOL_NAMES = new Map(
  Object.entries(PCI_SIG_PROTOCOLS).map(([k, p]) => [
    protocolKey(p.vendorId, p.protocolId),
    k as PciSigProtocol,
  ]),
);
const hex4 = (n: number) => `0x${hexDigits(n, 4).toUpperCase()}`;

/**
 * The protocol message in a vendor-defined message's fields; anything but a VendorID with a known
 * Protocol ID is a DecodeError whose offset is the field's in the SPDM message.
 */
export function decodePciSigVdm(v: Pick<VendorFields, "standardId" | "vendorId" | "payload">): PciSigVdm {
  if (v.standardId !== PCI_SIG_STANDARD_ID)
    throw new DecodeError("vdm.standardId", At.STANDARD_ID, `${hex4(v.standardId)} is not PCI-SIG (0x0003)`);
  if (v.vendorId.length !== 2)
    throw new DecodeError("vdm.vendorId", At.VENDOR_ID_LEN, `length ${v.vendorId.length}, not 2`);
  const vendor = v.vendorId.readUInt16LE(0);
  if (!VENDORS.has(vendor))
    throw new DecodeError(
      "vdm.vendorId",
      At.VENDOR_ID,
      `${hex4(vendor)} is neither PCI-SIG (0x0001) nor CXL (0x1E98)`,
    );
  const id = v.payload[0];
  if (id === undefined) throw new DecodeError("vdm.protocolId", At.PROTOCOL_ID, "empty payload");
  const protocol = PROTOCOL_NAMES.get(protocolKey(vendor, id));
  if (protocol === undefined)
    throw new DecodeError(
      "vdm.protocolId",
      At.PROTOCOL_ID,
      `unknown protocol ${id} of VendorID ${hex4(vendor)}`,
    );
  return { protocol, message: Buffer.from(v.payload.subarray(1)) };
}

/** The vendor-defined fields carrying `vdm`, for a VENDOR_DEFINED_REQUEST or _RESPONSE. */
export function encodePciSigVdm(vdm: PciSigVdm): VendorFields {
  const { vendorId, protocolId } = PCI_SIG_PROTOCOLS[vdm.protocol];
  const vendor = Buffer.alloc(2);
  vendor.writeUInt16LE(vendorId, 0);
  return {
    standardId: PCI_SIG_STANDARD_ID,
    vendorId: vendor,
    payload: Buffer.concat([Uint8Array.of(protocolId), vdm.message]),
  };
}
