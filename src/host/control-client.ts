/**
 * Host side of the control wire: config-space access and identity over a device's control
 * endpoint, and a register-level DOE driver on top of it that works the way Linux
 * drivers/pci/doe.c does.
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  CONTROL_MAX_PAYLOAD,
  type ConfigAccess,
  ControlError,
  type ControlKind,
  type ControlMessage,
  type DeviceIdentity,
  decodeControlFrame,
  encodeControlFrame,
} from "../../protocol/control.js";
import {
  type DoeObject,
  type DoeProtocol,
  decodeDoeHeader,
  decodeDoeObject,
  encodeDoeObject,
  protocolId,
} from "../../protocol/doe.js";
import { DecodeError } from "../../protocol/errors.js";
import { type ConfigWidth, Doe, DoeCtrl, DoeStatus } from "../../protocol/pci.js";
import { DoeError, walkDiscovery } from "../doe/discovery.js";
import { type ClientOptions, type Endpoint, FramedClient, formatEndpoint } from "../net/framed.js";

type Reply<K extends ControlKind> = Extract<ControlMessage, { kind: K }>;

export class ControlClient {
  private nextTag = 1;

  private constructor(
    private readonly client: FramedClient,
    readonly endpoint: Endpoint,
  ) {}

  static async connect(endpoint: Endpoint, opts: ClientOptions = {}): Promise<ControlClient> {
    return new ControlClient(
      await FramedClient.connect(endpoint, { ...opts, maxPayload: CONTROL_MAX_PAYLOAD }),
      endpoint,
    );
  }

  get closed(): boolean {
    return this.client.closed;
  }

  /** Rejects with ControlError when the device refuses the access (bad width, alignment, range). */
  async cfgRead(rid: number, offset: number, width: ConfigWidth): Promise<number> {
    return (await this.request({ kind: "cfgRead", rid, offset, width }, "cfgReadRsp")).value;
  }

  async cfgWrite(rid: number, offset: number, width: ConfigWidth, value: number): Promise<void> {
    await this.request({ kind: "cfgWrite", rid, offset, width, value: value >>> 0 }, "cfgWriteRsp");
  }

  /**
   * Runs `accesses` in order in one round trip (CFG_BATCH); resolves with each read's bytes, in
   * order. Rejects with ControlError, and nothing ran, when the device refuses any of them.
   */
  async cfgBatch(accesses: ConfigAccess[]): Promise<Buffer[]> {
    const { data } = await this.request({ kind: "cfgBatch", accesses }, "cfgBatchRsp");
    const reads: Buffer[] = [];
    let at = 0;
    for (const a of accesses) {
      if (a.op !== "read") continue;
      const n = a.count * a.width;
      if (at + n > data.length)
        throw new Error(`CFG_BATCH answered ${data.length} bytes, short of the reads`);
      reads.push(data.subarray(at, at + n));
      at += n;
    }
    return reads;
  }

  async identity(): Promise<DeviceIdentity> {
    return (await this.request({ kind: "identity" }, "identityRsp")).identity;
  }

  /** Adds a fault rule (src/device/faults.ts); rejects with ControlError BAD_FAULT when the device refuses it. */
  async faultAdd(rule: Record<string, unknown>): Promise<number> {
    return (await this.request({ kind: "faultAdd", rule }, "faultAddRsp")).id;
  }

  /** The device's fault rules, each with its id and how many times it fired. */
  async faultList(): Promise<Record<string, unknown>[]> {
    return (await this.request({ kind: "faultList" }, "faultListRsp")).rules;
  }

  /** Removes every fault rule; resolves with how many there were. */
  async faultClear(): Promise<number> {
    return (await this.request({ kind: "faultClear" }, "faultClearRsp")).cleared;
  }

  close(): void {
    this.client.close();
  }

  /** Calls `listener` once when the connection closes, whoever closed it. */
  onClose(listener: () => void): void {
    if (this.client.closed) queueMicrotask(listener);
    else this.client.conn.once("close", listener);
  }

  private async request<K extends ControlKind>(msg: ControlMessage, expect: K): Promise<Reply<K>> {
    const tag = this.nextTag;
    this.nextTag = (this.nextTag + 1) >>> 0 || 1;
    const frame = await this.client.request(encodeControlFrame(tag, msg));
    let reply: ControlMessage;
    try {
      if (frame.transport !== tag) throw new Error(`reply carries tag ${frame.transport}, expected ${tag}`);
      reply = decodeControlFrame(frame);
      if (reply.kind === "error") throw new ControlError(reply.code, reply.message);
      if (reply.kind !== expect) throw new Error(`${msg.kind} answered with ${reply.kind}`);
    } catch (e) {
      // Only a refusal leaves the stream in step; anything else means the peer is not a control endpoint.
      if (!(e instanceof ControlError)) this.client.close();
      if (e instanceof DecodeError || e instanceof ControlError) throw e;
      throw new Error(`control endpoint ${formatEndpoint(this.endpoint)}: ${(e as Error).message}`);
    }
    return reply as Reply<K>;
  }
}

export interface DoeRegisterOptions {
  /** Linux's PCI_DOE_TIMEOUT: for Ready after Go, Busy to clear, and Abort to complete. */
  timeoutMs?: number;
  pollMs?: number;
}

/** Drives one DOE capability through config-space accesses, as a host kernel would. */
export class DoeRegisterClient {
  private readonly timeoutMs: number;
  private readonly pollMs: number;

  constructor(
    readonly control: ControlClient,
    readonly rid: number,
    readonly capOffset: number,
    opts: DoeRegisterOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.pollMs = opts.pollMs ?? 1;
  }

  status(): Promise<number> {
    return this.control.cfgRead(this.rid, this.capOffset + Doe.STATUS, 4);
  }

  /** Issues Abort and waits for Busy and Error to clear; Linux does this when it creates a mailbox. */
  async abort(): Promise<void> {
    await this.write(Doe.CTRL, DoeCtrl.ABORT);
    const s = await this.pollUntil((s) => (s & (DoeStatus.BUSY | DoeStatus.ERROR)) === 0);
    if (s & (DoeStatus.BUSY | DoeStatus.ERROR))
      throw new DoeError(`${this.where}: abort did not complete within ${this.timeoutMs} ms`);
  }

  /** Walks DOE discovery through the registers. */
  discover(): Promise<DoeProtocol[]> {
    return walkDiscovery((req) => this.exchange(req));
  }

  /** Sends one object and returns the response, which must carry the request's vendor and type. */
  async exchange(request: DoeObject): Promise<DoeObject> {
    const object = encodeDoeObject(request);
    let s = await this.pollUntil((s) => (s & DoeStatus.BUSY) === 0);
    if (s & DoeStatus.BUSY) throw new DoeError(`${this.where}: mailbox busy`);
    if (s & DoeStatus.ERROR) throw new DoeError(`${this.where}: mailbox in error`);
    try {
      for (let i = 0; i < object.length; i += 4) await this.write(Doe.WRITE, object.readUInt32LE(i));
      await this.write(Doe.CTRL, DoeCtrl.GO);
      s = await this.pollUntil((s) => (s & (DoeStatus.DATA_OBJECT_READY | DoeStatus.ERROR)) !== 0);
      if (s & DoeStatus.ERROR) throw new DoeError(`${this.where}: mailbox set Error`);
      if (!(s & DoeStatus.DATA_OBJECT_READY))
        throw new DoeError(`${this.where}: no response within ${this.timeoutMs} ms`);
      const response = await this.receive(request);
      if ((await this.status()) & DoeStatus.ERROR)
        throw new DoeError(`${this.where}: mailbox set Error while reading`);
      return response;
    } catch (e) {
      await this.write(Doe.CTRL, DoeCtrl.ABORT).catch(() => undefined);
      throw e;
    }
  }

  /** Reads and acks every DW; like Linux, Ready must still be set before the final ack. */
  private async receive(request: DoeObject): Promise<DoeObject> {
    const words: number[] = [];
    let lengthDw = 2;
    for (let i = 0; i < lengthDw; i++) {
      words.push(await this.control.cfgRead(this.rid, this.capOffset + Doe.READ, 4));
      if (i === 1) {
        const header = this.decode(() => decodeDoeHeader(toBytes(words)));
        if (header.vendorId !== request.vendorId || header.type !== request.type) {
          throw new DoeError(
            `${this.where}: response is ${protocolId(header)}, request was ${protocolId(request)}`,
          );
        }
        lengthDw = header.lengthDw;
      }
      if (i === lengthDw - 1 && !((await this.status()) & DoeStatus.DATA_OBJECT_READY)) {
        throw new DoeError(`${this.where}: Data Object Ready cleared before the last DW`);
      }
      await this.write(Doe.READ, 0);
    }
    return this.decode(() => decodeDoeObject(toBytes(words)));
  }

  private decode<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof DecodeError) throw new DoeError(`${this.where}: malformed response: ${e.message}`);
      throw e;
    }
  }

  private write(register: number, value: number): Promise<void> {
    return this.control.cfgWrite(this.rid, this.capOffset + register, 4, value);
  }

  /** Polls Status until `done` or the timeout; returns the last Status read. */
  private async pollUntil(done: (status: number) => boolean): Promise<number> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const s = await this.status();
      if (done(s) || Date.now() >= deadline) return s;
      await sleep(this.pollMs);
    }
  }

  private get where(): string {
    return `DOE at ${formatEndpoint(this.control.endpoint)} rid 0x${this.rid.toString(16)} cap 0x${this.capOffset.toString(16)}`;
  }
}

function toBytes(words: readonly number[]): Buffer {
  const out = Buffer.alloc(words.length * 4);
  for (const [i, w] of words.entries()) out.writeUInt32LE(w, i * 4);
  return out;
}
