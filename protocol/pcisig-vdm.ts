/**
 * The PCI-SIG payload of SPDM VENDOR_DEFINED_REQUEST/RESPONSE (DSP0274 VENDOR_DEFINED; Protocol ID
 * 00h IDE_KM in PCIe r6.0 §6.33.3, 01h TDISP in PCIe r6.1 chapter 11): StandardID 3 (PCI-SIG), a
 * 2-byte VendorID 0x0001, then the Protocol ID byte and the protocol's message (protocol/ide-km.ts,
 * protocol/tdisp.ts). CXL uses the same
 * StandardID with VendorID 0x1E98, where Protocol ID 1 means CXL TSP (protocol/cxl-tsp.ts); the
 * VendorID decides, as in spdm-emu 85436d53, which dispatches on (StandardID, VendorID, Protocol ID).
 */

import { PCI_SIG_VENDOR_ID } from "./doe.js";
import { DecodeError } from "./errors.js";
import { hexDigits } from "./hex.js";
import { RegistryId } from "./spdm/codes.js";
import type { VendorFields } from "./spdm/messages.js";

export const PCI_SIG_STANDARD_ID = RegistryId.PCISIG;
export const CXL_VENDOR_ID = 0x1e98;
export const PciSigProtocolId = { IDE_KM: 0x00, TDISP: 0x01 } as const;
/** The protocols of VendorID 0x1E98 (CXL 3.1 §11.5 TSP). */
export const CxlProtocolId = { CXL_TSP: 0x01 } as const;
export type PciSigProtocol = keyof typeof PciSigProtocolId | keyof typeof CxlProtocolId;

export interface PciSigVdm {
  protocol: PciSigProtocol;
  /** The protocol message after the Protocol ID byte. */
  message: Buffer;
}

/** SPDM-message offsets of the fields checked, as DSP0274 lays out a 2-byte VendorID. */
const At = { STANDARD_ID: 4, VENDOR_ID_LEN: 6, VENDOR_ID: 7, PROTOCOL_ID: 11 } as const;
/** Each VendorID's protocols: Protocol ID → name. */
const VENDOR_PROTOCOLS = new Map(
  (
    [
      [PCI_SIG_VENDOR_ID, PciSigProtocolId],
      [CXL_VENDOR_ID, CxlProtocolId],
    ] as const
  ).map(([vendor, ids]) => [
    vendor as number,
    new Map(Object.entries(ids).map(([k, v]) => [v as number, k as PciSigProtocol])),
  ]),
);
/** Each protocol's VendorID and Protocol ID. */
const PROTOCOL_IDS = new Map(
  [...VENDOR_PROTOCOLS].flatMap(([vendorId, names]) =>
    [...names].map(([protocolId, name]) => [name, { vendorId, protocolId }] as const),
  ),
);
const hex4 = (n: number) => `0x${hexDigits(n, 4).toUpperCase()}`;

/**
 * The protocol message in a vendor-defined message's fields; anything but PCI-SIG's VendorID with
 * a known Protocol ID is a DecodeError whose offset is the field's in the SPDM message.
 */
export function decodePciSigVdm(v: Pick<VendorFields, "standardId" | "vendorId" | "payload">): PciSigVdm {
  if (v.standardId !== PCI_SIG_STANDARD_ID)
    throw new DecodeError("vdm.standardId", At.STANDARD_ID, `${hex4(v.standardId)} is not PCI-SIG (0x0003)`);
  if (v.vendorId.length !== 2)
    throw new DecodeError("vdm.vendorId", At.VENDOR_ID_LEN, `length ${v.vendorId.length}, not 2`);
  const vendor = v.vendorId.readUInt16LE(0);
  const names = VENDOR_PROTOCOLS.get(vendor);
  if (!names)
    throw new DecodeError(
      "vdm.vendorId",
      At.VENDOR_ID,
      `${hex4(vendor)} is neither PCI-SIG (0x0001) nor CXL`,
    );
  const id = v.payload[0];
  if (id === undefined) throw new DecodeError("vdm.protocolId", At.PROTOCOL_ID, "empty payload");
  const protocol = names.get(id);
  if (protocol === undefined)
    throw new DecodeError("vdm.protocolId", At.PROTOCOL_ID, `unknown protocol ${id} of ${hex4(vendor)}`);
  return { protocol, message: Buffer.from(v.payload.subarray(1)) };
}

/** The vendor-defined fields carrying `vdm`, for a VENDOR_DEFINED_REQUEST or _RESPONSE. */
export function encodePciSigVdm(vdm: PciSigVdm): VendorFields {
  const ids = PROTOCOL_IDS.get(vdm.protocol)!;
  const vendorId = Buffer.alloc(2);
  vendorId.writeUInt16LE(ids.vendorId, 0);
  return {
    standardId: PCI_SIG_STANDARD_ID,
    vendorId,
    payload: Buffer.concat([Uint8Array.of(ids.protocolId), vdm.message]),
  };
}
