/**
 * A function's IDE_KM responder (PCIe r6.0 §6.33.3), the engine for PCI-SIG Protocol ID 00h
 * (src/device/pcisig-vdm.ts). The function's IDE capability is one port, at the PortIndex its
 * description gives (`ide.portIndex`).
 *
 * - QUERY → QUERY_RESP with the capability's live registers from IDE Capability on.
 * - KEY_PROG stores the key and IFV for (Stream ID, key set, direction, sub-stream) → KP_ACK with
 *   Status: Incorrect Length, Unsupported Port Index, Unsupported Value (a Stream ID no stream
 *   register block of the port holds, a sub-stream other than PR/NPR/CPL), else Success.
 * - K_SET_GO makes a programmed key set the one in use for its direction and sub-stream; once all six
 *   (RX/TX × PR/NPR/CPL) of a Stream ID are going, the streams with that Stream ID get `keySetGo()`
 *   (Secure while enabled, src/device/ide.ts). K_SET_STOP forgets the key set's key and, when it was
 *   the one in use, ends its use: the streams get `keySetStop()`.
 * - K_GOSTOP_ACK has no status, and QUERY_RESP none either: a QUERY or K_SET naming no port or
 *   stream here, or a K_SET_GO of a key set never programmed, is an SPDM ERROR InvalidRequest, as
 *   spdm-emu 85436d53's responder answers every IDE_KM failure. So is a message the codec cannot
 *   decode (DecodeError, which the SPDM responder maps); the session goes on.
 *
 * Keys belong to the function, not to the SPDM session that programmed them (a device holds them in
 * its IDE engine): they stay until K_SET_STOP or the device stops, whatever sessions end or start.
 * They are never logged.
 */
import { DecodeError } from "../../protocol/errors.js";
import {
  addressAssociationCount,
  decodeIdeKm,
  decodeKeyTarget,
  encodeIdeKm,
  IdeKmObject,
  type IdeKmQueryResp,
  IdeSubStream,
  type KeyTarget,
  KpAckStatus,
  linkStreamCount,
  selectiveStreamCount,
} from "../../protocol/ide-km.js";
import type { Logger } from "../log.js";
import { fail } from "../spdm/responder-context.js";
import type { DeviceModel } from "./model.js";

const IDE_KM_KEY_PROG_BYTES = 47;
const DIRECTIONS = [0, 1];
const SUB_STREAMS = Object.values(IdeSubStream) as number[];

interface ProgrammedKey {
  key: Buffer;
  ifv: Buffer;
}

/** Stream ID, direction and sub-stream: one place a key set goes. */
const slotOf = (t: Pick<KeyTarget, "streamId" | "direction" | "subStream">) =>
  `${t.streamId}/${t.direction}/${t.subStream}`;
const keyOf = (t: KeyTarget) => `${slotOf(t)}/${t.keySet}`;
/** What the log may say about a key: everything but the key. */
const named = ({ streamId, keySet, direction, subStream, portIndex }: KeyTarget) => ({
  streamId,
  keySet,
  direction,
  subStream,
  portIndex,
});

export class IdeKmEngine {
  private readonly keys = new Map<string, ProgrammedKey>();
  /** The key set going per slot (slotOf). */
  private readonly going = new Map<string, number>();

  constructor(
    private readonly model: DeviceModel,
    private readonly rid: number,
    private readonly portIndex: number,
    private readonly log: Logger,
  ) {}

  /** One IDE_KM request message in, its response message out. */
  handle(message: Buffer): Buffer {
    if (message[0] === IdeKmObject.KEY_PROG && message.length !== IDE_KM_KEY_PROG_BYTES) {
      const t = decodeKeyTarget(message);
      this.log.info({ ...named(t), bytes: message.length }, "IDE-KM KEY_PROG of the wrong length");
      return this.kpAck(t, KpAckStatus.INCORRECT_LENGTH);
    }
    const m = decodeIdeKm(message);
    switch (m.object) {
      case "QUERY":
        this.checkPort(m.portIndex);
        return encodeIdeKm(this.queryResp());
      case "KEY_PROG": {
        const status = this.keyProgStatus(m);
        if (status === KpAckStatus.SUCCESS)
          this.keys.set(keyOf(m), { key: Buffer.from(m.key), ifv: Buffer.from(m.ifv) });
        this.log.info({ ...named(m), status }, "IDE-KM KEY_PROG");
        return this.kpAck(m, status);
      }
      case "K_SET_GO":
      case "K_SET_STOP": {
        this.checkPort(m.portIndex);
        if (!SUB_STREAMS.includes(m.subStream) || this.streams(m.streamId).length === 0)
          fail("InvalidRequest");
        if (m.object === "K_SET_GO") this.go(m);
        else this.stop(m);
        this.log.info(named(m), `IDE-KM ${m.object}`);
        return encodeIdeKm({ ...m, object: "K_GOSTOP_ACK" });
      }
      default:
        // A response object sent as a request.
        throw new DecodeError("ide_km.objectId", 0, `${m.object} is not a request`);
    }
  }

  private checkPort(portIndex: number): void {
    if (portIndex !== this.portIndex) {
      this.log.info({ portIndex }, "IDE-KM request for a port that does not exist");
      fail("InvalidRequest");
    }
  }

  private streams(streamId: number) {
    return this.model.ideStreams(this.rid).filter((s) => s.streamId === streamId);
  }

  private keyProgStatus(t: KeyTarget): number {
    if (t.portIndex !== this.portIndex) return KpAckStatus.UNSUPPORTED_PORT_INDEX;
    if (!SUB_STREAMS.includes(t.subStream) || this.streams(t.streamId).length === 0)
      return KpAckStatus.UNSUPPORTED_VALUE;
    return KpAckStatus.SUCCESS;
  }

  private kpAck(t: KeyTarget, status: number): Buffer {
    return encodeIdeKm({ object: "KP_ACK", ...named(t), status });
  }

  private go(t: KeyTarget): void {
    if (!this.keys.has(keyOf(t))) {
      this.log.info(named(t), "IDE-KM K_SET_GO of a key set not programmed");
      fail("InvalidRequest");
    }
    this.going.set(slotOf(t), t.keySet);
    const all = DIRECTIONS.every((direction) =>
      SUB_STREAMS.every((subStream) =>
        this.going.has(slotOf({ streamId: t.streamId, direction, subStream })),
      ),
    );
    if (all) for (const s of this.streams(t.streamId)) s.keySetGo();
  }

  private stop(t: KeyTarget): void {
    this.keys.delete(keyOf(t));
    // Stopping a key set not in use (the old one after a switch to the other) leaves the stream alone.
    if (this.going.get(slotOf(t)) !== t.keySet) return;
    this.going.delete(slotOf(t));
    for (const s of this.streams(t.streamId)) s.keySetStop();
  }

  /** The port's IDE registers cut into the blocks its capability registers announce. */
  private queryResp(): IdeKmQueryResp {
    const regs = this.model.ideRegisters(this.rid);
    let at = 0;
    const next = () => regs[at++] ?? 0;
    const ideCapability = next();
    const ideControl = next();
    const linkStreams = Array.from({ length: linkStreamCount(ideCapability) }, () => ({
      control: next(),
      status: next(),
    }));
    const selectiveStreams = Array.from({ length: selectiveStreamCount(ideCapability) }, () => {
      const capability = next();
      return {
        capability,
        control: next(),
        status: next(),
        ridAssociation1: next(),
        ridAssociation2: next(),
        addressAssociations: Array.from({ length: addressAssociationCount(capability) }, () => ({
          register1: next(),
          register2: next(),
          register3: next(),
        })),
      };
    });
    return {
      object: "QUERY_RESP",
      portIndex: this.portIndex,
      devFuncNum: this.rid & 0xff,
      busNum: this.rid >>> 8,
      segment: 0,
      maxPortIndex: this.portIndex,
      ideCapability,
      ideControl,
      linkStreams,
      selectiveStreams,
      trailingRegisters: regs.slice(at),
    };
  }
}
