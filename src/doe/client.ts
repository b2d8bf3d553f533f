/**
 * Host-side DOE client over a mailbox endpoint (the mailbox wire): TEST handshake, discovery
 * (cached), and object exchanges with a per-request timeout, checked the way Linux
 * drivers/pci/doe.c checks them.
 */
import {
  type DoeObject,
  type DoeProtocol,
  decodeDoeObject,
  encodeDoeObject,
  protocolId,
} from "../../protocol/doe.js";
import { DecodeError } from "../../protocol/errors.js";
import {
  commandName,
  encodeEncapKeyUpdate,
  SocketCommand,
  type SocketFrame,
  TEST_CLIENT_HELLO,
  TEST_SERVER_HELLO,
  TransportType,
} from "../../protocol/socket.js";
import type { Logger } from "../log.js";
import type { PcapCapture } from "../net/capture.js";
import { type Endpoint, FramedClient, formatEndpoint } from "../net/framed.js";
import { DISCOVERY, DoeError, walkDiscovery } from "./discovery.js";

export interface DoeClientOptions {
  /** Per-request timeout in ms; 1 s as Linux's PCI_DOE_TIMEOUT. */
  timeoutMs?: number;
  log?: Logger;
  /** Records the connection into a pcap file named after the endpoint (`--pcap`). */
  capture?: PcapCapture;
}

export class DoeClient {
  /** The protocols discovery reported, in index order. */
  protocols: DoeProtocol[] = [];

  private constructor(
    private readonly client: FramedClient,
    readonly endpoint: Endpoint,
  ) {}

  /** Connects, does the TEST handshake and runs discovery. */
  static async connect(endpoint: Endpoint, opts: DoeClientOptions = {}): Promise<DoeClient> {
    const client = await FramedClient.connect(endpoint, { timeoutMs: opts.timeoutMs ?? 1000, log: opts.log });
    const doe = new DoeClient(client, endpoint);
    opts.capture?.attach(client.conn, formatEndpoint(endpoint));
    try {
      await doe.hello();
      await doe.discover();
    } catch (e) {
      client.close();
      throw e;
    }
    return doe;
  }

  private async hello(): Promise<void> {
    const rsp = await this.client.request({
      command: SocketCommand.TEST,
      transport: TransportType.PCI_DOE,
      payload: TEST_CLIENT_HELLO,
    });
    if (rsp.command !== SocketCommand.TEST || !rsp.payload.equals(TEST_SERVER_HELLO)) {
      throw new DoeError(
        `${formatEndpoint(this.endpoint)} answered TEST with ${commandName(rsp.command)} "${rsp.payload.toString("latin1")}"`,
      );
    }
  }

  /** Walks the discovery table from index 0 and caches it. */
  async discover(): Promise<DoeProtocol[]> {
    this.protocols = await walkDiscovery((req) => this.exchange(req));
    return this.protocols;
  }

  supports(p: DoeProtocol): boolean {
    return this.protocols.some((q) => q.vendorId === p.vendorId && q.type === p.type);
  }

  /**
   * Sends one object and returns the response object, which must carry the request's vendor and
   * type. Not async: the answer is checked as it is read (FramedClient.request's `accept`), with
   * no promise of its own.
   */
  exchange(request: DoeObject): Promise<DoeObject> {
    const isDiscovery = request.vendorId === DISCOVERY.vendorId && request.type === DISCOVERY.type;
    let payload: Buffer;
    try {
      if (!isDiscovery && !this.supports(request)) {
        throw new DoeError(
          `protocol ${protocolId(request)} was not listed by discovery on ${formatEndpoint(this.endpoint)}`,
        );
      }
      payload = encodeDoeObject(request);
    } catch (e) {
      return Promise.reject(e);
    }
    const frame = { command: SocketCommand.NORMAL, transport: TransportType.PCI_DOE, payload };
    return this.client.request(frame, this.client.timeoutMs, (rsp) => responseObject(request, rsp));
  }

  /**
   * spdm-emu's OOB_ENCAP_KEY_UPDATE: asks the device to update its key in session `sessionId` through
   * an encapsulated KEY_UPDATE, which the requester then fetches. Resolves once the device echoes it.
   */
  async requestEncapKeyUpdate(sessionId: number): Promise<void> {
    await this.outOfBand(SocketCommand.OOB_ENCAP_KEY_UPDATE, encodeEncapKeyUpdate(sessionId));
  }

  /**
   * spdm-emu's OOB_ENCAP_ENDPOINT_INFO: asks the device for an encapsulated GET_ENDPOINT_INFO, which
   * the requester then fetches (in or out of a session: the command names none). Resolves once echoed.
   */
  async requestEncapEndpointInfo(): Promise<void> {
    await this.outOfBand(SocketCommand.OOB_ENCAP_ENDPOINT_INFO, Buffer.alloc(0));
  }

  private async outOfBand(command: number, payload: Buffer): Promise<void> {
    const rsp = await this.client.request({ command, transport: TransportType.PCI_DOE, payload });
    if (rsp.command !== command)
      throw new DoeError(`${commandName(command)} answered with ${commandName(rsp.command)}`);
  }

  /**
   * Ends the socket session as spdm-emu's --exe_mode does: SHUTDOWN asks the device process to
   * exit, CONTINUE only ends this connection. Resolves once the peer echoes the command.
   */
  async end(mode: "SHUTDOWN" | "CONTINUE" = "SHUTDOWN"): Promise<void> {
    const command = SocketCommand[mode];
    try {
      const rsp = await this.client.request({
        command,
        transport: TransportType.PCI_DOE,
        payload: Buffer.alloc(0),
      });
      if (rsp.command !== command) throw new DoeError(`${mode} answered with ${commandName(rsp.command)}`);
    } finally {
      this.client.close();
    }
  }

  close(): void {
    this.client.close();
  }

  get closed(): boolean {
    return this.client.closed;
  }

  /** `listener` runs once the connection closes, whoever closed it (at once if it is closed). */
  onClose(listener: () => void): void {
    if (this.client.closed) queueMicrotask(listener);
    else this.client.conn.once("close", listener);
  }
}

/** The response object of a NORMAL answer to `request`; DoeError when it is not one. */
function responseObject(request: DoeObject, rsp: SocketFrame): DoeObject {
  if (rsp.command !== SocketCommand.NORMAL)
    throw new DoeError(`expected NORMAL, got ${commandName(rsp.command)}`);
  if (rsp.payload.length === 0)
    throw new DoeError(`the mailbox discarded the ${protocolId(request)} object (no response)`);
  let obj: DoeObject;
  try {
    obj = decodeDoeObject(rsp.payload);
  } catch (e) {
    if (e instanceof DecodeError) throw new DoeError(`malformed response object: ${e.message}`);
    throw e;
  }
  if (obj.vendorId !== request.vendorId || obj.type !== request.type) {
    throw new DoeError(`response is ${protocolId(obj)}, request was ${protocolId(request)}`);
  }
  return obj;
}
