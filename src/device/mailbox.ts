/**
 * The DOE mailbox engine. A mailbox handles one data object at a time: requests from all of its
 * connections (socket endpoints and the config-space registers alike) queue in arrival order.
 * Objects are dispatched by (vendor ID, type) to registered handlers; discovery is built in.
 * What a DOE mailbox would silently discard (an unlisted protocol, a header that disagrees with
 * the bytes) yields no response object.
 */
import {
  type DoeProtocol,
  decodeDiscoveryRequest,
  decodeDoeObject,
  encodeDiscoveryResponse,
  encodeDoeObject,
  protocolId,
} from "../../protocol/doe.js";
import { DecodeError } from "../../protocol/errors.js";
import { DISCOVERY } from "../doe/discovery.js";
import { type Logger, WarnLimiter } from "../log.js";

export interface DoeRequest extends DoeProtocol {
  /** Payload after the DOE header, as received (zero padding included). */
  payload: Buffer;
  /** Which connection sent it, e.g. "tcp:127.0.0.1:51234" or "cfg": lets handlers keep per-peer state. */
  origin: string;
}

/** Returns the response payload, or undefined to send no response object. */
export type DoeHandler = (req: DoeRequest) => Promise<Buffer | undefined> | Buffer | undefined;

const key = (p: DoeProtocol) => (p.vendorId << 8) | p.type;

type Done = (response: Buffer | undefined) => void;

interface Job {
  object: Buffer;
  origin: string;
  done: Done;
}

const isPromise = <T>(v: T | Promise<T>): v is Promise<T> => v instanceof Promise;

export class Mailbox {
  private readonly handlers = new Map<number, DoeHandler>();
  /** The listed protocols by key: looked up for every object. */
  private readonly listed: ReadonlySet<number>;
  private readonly queue: Job[] = [];
  private busy = false;
  /** Discarded objects are a peer's doing: their warnings are rate-limited. */
  private readonly discards = new WarnLimiter();

  /** `onSubmit` hears the origin of every object as it is submitted, while its sender is connected. */
  constructor(
    readonly protocols: readonly DoeProtocol[],
    private readonly log: Logger,
    private readonly onSubmit?: (origin: string) => void,
  ) {
    this.listed = new Set(protocols.map(key));
    this.register(DISCOVERY, (req) => this.discovery(req));
  }

  /** Installs the handler for a protocol; it only receives objects if the mailbox lists that protocol. */
  register(protocol: DoeProtocol, handler: DoeHandler): void {
    this.handlers.set(key(protocol), handler);
  }

  lists(protocol: DoeProtocol): boolean {
    return this.listed.has(key(protocol));
  }

  /** Objects queued or being processed. */
  get depth(): number {
    return this.queue.length + (this.busy ? 1 : 0);
  }

  /**
   * Queues one whole data object (header included). `done` gets the encoded response object, or
   * undefined when the mailbox discards the request. When the mailbox is idle and the handler
   * answers synchronously, `done` runs before submit returns: no promise on the hot path.
   */
  submit(object: Buffer, origin: string, done: Done): void {
    this.onSubmit?.(origin);
    this.queue.push({ object, origin, done });
    if (!this.busy) this.drain();
  }

  /** The same as a promise. Never rejects. */
  exchange(object: Buffer, origin: string): Promise<Buffer | undefined> {
    return new Promise((resolve) => this.submit(object, origin, resolve));
  }

  /** Processes queued objects one at a time, in arrival order; waits only for asynchronous handlers. */
  private drain(): void {
    this.busy = true;
    for (let job = this.queue.shift(); job; job = this.queue.shift()) {
      const response = this.process(job.object, job.origin);
      if (isPromise(response)) {
        void response.then((r) => {
          this.deliver(job, r);
          this.drain();
        });
        return;
      }
      this.deliver(job, response);
    }
    this.busy = false;
  }

  /** A throwing `done` (a connection's writer) must not leave the mailbox busy for everyone else. */
  private deliver(job: Job, response: Buffer | undefined): void {
    try {
      job.done(response);
    } catch (e) {
      this.log.error(
        { origin: job.origin, err: e instanceof Error ? e.stack : String(e) },
        "response delivery failed",
      );
    }
  }

  private process(object: Buffer, origin: string): Buffer | undefined | Promise<Buffer | undefined> {
    let req: DoeRequest;
    try {
      const { vendorId, type, payload } = decodeDoeObject(object);
      req = { vendorId, type, payload, origin };
    } catch (e) {
      this.discards.warn(
        this.log,
        { origin, err: e instanceof Error ? e.message : String(e), bytes: object.length },
        "discarded malformed DOE object",
      );
      return undefined;
    }
    const handler = this.lists(req) ? this.handlers.get(key(req)) : undefined;
    if (!handler) {
      this.discards.warn(
        this.log,
        { origin, protocol: protocolId(req) },
        "discarded DOE object of a protocol this mailbox does not list",
      );
      return undefined;
    }
    let payload: Buffer | undefined | Promise<Buffer | undefined>;
    try {
      payload = handler(req);
    } catch (e) {
      return this.failed(req, e);
    }
    if (isPromise(payload)) {
      return payload.then(
        (p) => this.respond(req, p),
        (e) => this.failed(req, e),
      );
    }
    return this.respond(req, payload);
  }

  private respond(req: DoeRequest, payload: Buffer | undefined): Buffer | undefined {
    try {
      return payload && encodeDoeObject({ vendorId: req.vendorId, type: req.type, payload });
    } catch (e) {
      return this.failed(req, e);
    }
  }

  private failed(req: DoeRequest, e: unknown): undefined {
    const protocol = protocolId(req);
    const { origin } = req;
    if (e instanceof DecodeError)
      this.discards.warn(this.log, { origin, protocol, err: e.message }, "discarded malformed request");
    else this.log.error({ origin, protocol, err: (e as Error).stack }, "handler failed; no response");
    return undefined;
  }

  private discovery(req: DoeRequest): Buffer | undefined {
    const { index } = decodeDiscoveryRequest(req.payload);
    const entry = this.protocols[index];
    // Out of range: QEMU's answer (hw/pci/pcie_doe.c), vendor 0xFFFF / type 0xFF.
    if (!entry) return encodeDiscoveryResponse({ vendorId: 0xffff, type: 0xff, nextIndex: 0 });
    const nextIndex = index + 1 < this.protocols.length ? index + 1 : 0;
    return encodeDiscoveryResponse({ vendorId: entry.vendorId, type: entry.type, nextIndex });
  }
}
