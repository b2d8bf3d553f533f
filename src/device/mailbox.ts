/**
 * The DOE mailbox engine. A mailbox handles one data object at a time: requests from all of its
 * connections (socket endpoints and the config-space registers alike) queue in arrival order.
 * Objects are dispatched by (vendor ID, type) to registered handlers; discovery is built in.
 * What a DOE mailbox would silently discard (an unlisted protocol, a header that disagrees with
 * the bytes) yields no response object.
 */
import {
  type DoeProtocol,
  DoeType,
  decodeDiscoveryRequest,
  decodeDoeObject,
  encodeDiscoveryResponse,
  encodeDoeObject,
  PCI_SIG_VENDOR_ID,
  protocolId,
} from "../../protocol/doe.js";
import { DecodeError } from "../../protocol/errors.js";
import type { Logger } from "../log.js";

export interface DoeRequest extends DoeProtocol {
  /** Payload after the DOE header, as received (zero padding included). */
  payload: Buffer;
  /** Which connection sent it, e.g. "tcp:127.0.0.1:51234" or "cfg": lets handlers keep per-peer state. */
  origin: string;
}

/** Returns the response payload, or undefined to send no response object. */
export type DoeHandler = (req: DoeRequest) => Promise<Buffer | undefined> | Buffer | undefined;

const DISCOVERY: DoeProtocol = { vendorId: PCI_SIG_VENDOR_ID, type: DoeType.DISCOVERY };

export class Mailbox {
  private readonly handlers = new Map<string, DoeHandler>();
  private tail: Promise<unknown> = Promise.resolve();
  private inFlight = 0;

  constructor(
    readonly protocols: readonly DoeProtocol[],
    private readonly log: Logger,
  ) {
    this.register(DISCOVERY, (req) => this.discovery(req));
  }

  /** Installs the handler for a protocol; it only receives objects if the mailbox lists that protocol. */
  register(protocol: DoeProtocol, handler: DoeHandler): void {
    this.handlers.set(protocolId(protocol), handler);
  }

  lists(protocol: DoeProtocol): boolean {
    return this.protocols.some((p) => p.vendorId === protocol.vendorId && p.type === protocol.type);
  }

  /** Objects queued or being processed. */
  get depth(): number {
    return this.inFlight;
  }

  /**
   * Queues one whole data object (header included). Resolves with the encoded response object,
   * or undefined when the mailbox discards the request.
   */
  exchange(object: Buffer, origin: string): Promise<Buffer | undefined> {
    this.inFlight++;
    const result = this.tail.then(() => this.process(object, origin));
    // The queue survives whatever one exchange does.
    this.tail = result
      .catch(() => undefined)
      .finally(() => {
        this.inFlight--;
      });
    return result;
  }

  private async process(object: Buffer, origin: string): Promise<Buffer | undefined> {
    let req: DoeRequest;
    try {
      req = { ...decodeDoeObject(object), origin };
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.log.warn({ origin, err: e.message, bytes: object.length }, "discarded malformed DOE object");
      return undefined;
    }
    const id = protocolId(req);
    const handler = this.lists(req) ? this.handlers.get(id) : undefined;
    if (!handler) {
      this.log.warn(
        { origin, protocol: id },
        "discarded DOE object of a protocol this mailbox does not list",
      );
      return undefined;
    }
    try {
      const payload = await handler(req);
      if (payload === undefined) return undefined;
      this.log.debug({ origin, protocol: id, req: req.payload.length, rsp: payload.length }, "exchange");
      return encodeDoeObject({ vendorId: req.vendorId, type: req.type, payload });
    } catch (e) {
      if (e instanceof DecodeError)
        this.log.warn({ origin, protocol: id, err: e.message }, "discarded malformed request");
      else this.log.error({ origin, protocol: id, err: (e as Error).stack }, "handler failed; no response");
      return undefined;
    }
  }

  private discovery(req: DoeRequest): Buffer | undefined {
    const { index } = decodeDiscoveryRequest(req.payload);
    const entry = this.protocols[index];
    // Out of range: QEMU's answer, vendor 0xFFFF / type 0xFF (PROTOCOL-FACTS 1.5).
    if (!entry) return encodeDiscoveryResponse({ vendorId: 0xffff, type: 0xff, nextIndex: 0 });
    const nextIndex = index + 1 < this.protocols.length ? index + 1 : 0;
    return encodeDiscoveryResponse({ ...entry, nextIndex });
  }
}
