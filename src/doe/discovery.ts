/** DOE discovery as a host walks it, over any way of exchanging objects (socket or registers). */
import {
  type DoeObject,
  type DoeProtocol,
  DoeType,
  decodeDiscoveryResponse,
  encodeDiscoveryRequest,
  PCI_SIG_VENDOR_ID,
} from "../../protocol/doe.js";

export const DISCOVERY: DoeProtocol = { vendorId: PCI_SIG_VENDOR_ID, type: DoeType.DISCOVERY };

/** The DOE discovery request for table entry `index`. */
export const discoveryRequest = (index: number): DoeObject => ({
  ...DISCOVERY,
  payload: encodeDiscoveryRequest({ index, version: 0 }),
});

/** A DOE-level failure: the peer answered, but not as a DOE mailbox should. */
export class DoeError extends Error {
  override readonly name = "DoeError";
}

/** Discovery indices are one byte; a table can never be longer. */
const MAX_DISCOVERY_ENTRIES = 256;

/** Walks the discovery table from index 0 until Next Index is 0. */
export async function walkDiscovery(
  exchange: (req: DoeObject) => Promise<DoeObject>,
): Promise<DoeProtocol[]> {
  const found: DoeProtocol[] = [];
  let index = 0;
  do {
    const rsp = await exchange(discoveryRequest(index));
    const entry = decodeDiscoveryResponse(rsp.payload);
    if (entry.vendorId === 0xffff) throw new DoeError(`discovery index ${index} is out of range`);
    found.push({ vendorId: entry.vendorId, type: entry.type });
    if (entry.nextIndex !== 0 && entry.nextIndex !== index + 1) {
      throw new DoeError(
        `discovery index ${index} names next index ${entry.nextIndex}, expected ${index + 1} or 0`,
      );
    }
    index = entry.nextIndex;
  } while (index !== 0 && found.length < MAX_DISCOVERY_ENTRIES);
  return found;
}
