/**
 * A function's CXL IDE_KM responder (CXL 3.0 chapter 11; codec protocol/cxl-ide-km.ts), the engine
 * for CXL's VendorID 0x1E98, Protocol ID 00h (src/device/pcisig-vdm.ts). The function is one CXL
 * port, at the PortIndex its description gives (`cxl.ide`), with one key slot per direction.
 *
 * - QUERY → QUERY_RESP: Caps (version 1, IV_GEN, KEY_GEN, K_SET_STOP as described) and the 9
 *   registers of the CXL IDE Capability Structure (CXL 3.1 §8.2.4.22), of which only the CXL IDE
 *   Capability register is not zero: bit 0 CXL IDE Capable, bit 1 Skid and bit 2 Containment mode.
 * - GET_KEY (only with KEY_GEN or IV_GEN) → GET_KEY_ACK with a fresh random key and/or IV; what the
 *   port does not generate is zero. The port does not remember them: KEY_PROG brings the key.
 * - KEY_PROG stores key and IV for its direction (the default IV with IV_DEFAULT, CXL_DEFAULT_IV) →
 *   KP_ACK, Status INVALID for a message of the wrong size, another PortIndex or a sub-stream other
 *   than CXL's, else SUCCESS.
 * - K_SET_GO starts the programmed key of its direction in its mode (Skid or Containment);
 *   K_SET_STOP (only with K_SET_STOP) stops it and forgets the key → K_GOSTOP_ACK, which echoes.
 * - K_GOSTOP_ACK and QUERY_RESP have no status: a QUERY, GET_KEY or K_SET for another port or
 *   sub-stream, a GET_KEY or K_SET_STOP the port does not announce, a K_SET_GO of an unprogrammed
 *   direction or unsupported mode is an SPDM ERROR InvalidRequest, as spdm-emu 85436d53 answers
 *   every CXL IDE_KM failure. So is a message the codec cannot decode (DecodeError, which the SPDM
 *   responder maps); the session goes on.
 *
 * Keys belong to the port, not to the SPDM session that programmed them, and are never logged.
 */
import { randomBytes } from "node:crypto";
import {
  CXL_DEFAULT_IV,
  CXL_IDE_KM_IV_BYTES,
  CXL_IDE_KM_KEY_BYTES,
  CXL_IDE_REGISTERS,
  CXL_SUB_STREAM,
  CxlIdeKmCaps,
  CxlIdeKmObject,
  type CxlIdeKmQueryResp,
  CxlIvMode,
  CxlKeyMode,
  type CxlKeyTarget,
  CxlKpAckStatus,
  decodeCxlIdeKm,
  decodeCxlKeyTarget,
  encodeCxlIdeKm,
} from "../../protocol/cxl-ide-km.js";
import { DecodeError } from "../../protocol/errors.js";
import type { Logger } from "../log.js";
import { fail } from "../spdm/responder-context.js";
import type { FunctionDescription } from "./description.js";

export type CxlIdeDescription = NonNullable<NonNullable<FunctionDescription["cxl"]>["ide"]>;

const KEY_PROG_BYTES = 51;
const DIRECTION_NAMES = ["RX", "TX"];
const MODE_NAMES = Object.keys(CxlKeyMode) as (keyof typeof CxlKeyMode)[];
/** CXL IDE Capability register: CXL IDE Capable, then a bit per supported mode. */
const IdeCapability = { CAPABLE: 0x1, SKID: 0x2, CONTAINMENT: 0x4 } as const;

/** What the log may say about a key: everything but the key. */
const named = ({ streamId, direction, mode, subStream, portIndex }: CxlKeyTarget) => ({
  streamId,
  direction: DIRECTION_NAMES[direction],
  mode,
  subStream,
  portIndex,
});

export class CxlIdeKmEngine {
  /** Key and IV per direction (CxlDirection). */
  private readonly keys = new Map<number, { key: Buffer; iv: Buffer }>();
  /** The CxlKeyMode each started direction runs in. */
  private readonly going = new Map<number, number>();

  constructor(
    private readonly rid: number,
    private readonly settings: CxlIdeDescription,
    private readonly log: Logger,
  ) {}

  /** The CXL IDE-KM Caps byte of QUERY_RESP. */
  private get caps(): number {
    const s = this.settings;
    return (
      CxlIdeKmCaps.VERSION_1 |
      (s.ivGeneration ? CxlIdeKmCaps.IV_GEN : 0) |
      (s.keyGeneration ? CxlIdeKmCaps.KEY_GEN : 0) |
      (s.kSetStop ? CxlIdeKmCaps.K_SET_STOP : 0)
    );
  }

  /** Whether `direction` runs a key, and in which CxlKeyMode. */
  modeOf(direction: number): number | undefined {
    return this.going.get(direction);
  }

  /** One CXL IDE_KM request message in, its response message out. */
  handle(message: Buffer): Buffer {
    if (message[0] === CxlIdeKmObject.KEY_PROG && message.length !== KEY_PROG_BYTES) {
      const t = decodeCxlKeyTarget(message);
      this.log.info({ ...named(t), bytes: message.length }, "CXL IDE-KM KEY_PROG of the wrong length");
      return encodeCxlIdeKm({ object: "KP_ACK", ...t, status: CxlKpAckStatus.INVALID });
    }
    const m = decodeCxlIdeKm(message);
    switch (m.object) {
      case "QUERY":
        this.checkPort(m.portIndex);
        return encodeCxlIdeKm(this.queryResp());
      case "GET_KEY":
        this.checkTarget(m);
        if (!this.settings.keyGeneration && !this.settings.ivGeneration)
          this.refuse(m, "GET_KEY unannounced");
        this.log.info(named(m), "CXL IDE-KM GET_KEY");
        return encodeCxlIdeKm({
          ...m,
          object: "GET_KEY_ACK",
          key: this.settings.keyGeneration
            ? randomBytes(CXL_IDE_KM_KEY_BYTES)
            : Buffer.alloc(CXL_IDE_KM_KEY_BYTES),
          iv: this.settings.ivGeneration
            ? randomBytes(CXL_IDE_KM_IV_BYTES)
            : Buffer.alloc(CXL_IDE_KM_IV_BYTES),
        });
      case "KEY_PROG": {
        const ok = m.portIndex === this.settings.portIndex && m.subStream === CXL_SUB_STREAM;
        const status = ok ? CxlKpAckStatus.SUCCESS : CxlKpAckStatus.INVALID;
        if (ok)
          this.keys.set(m.direction, {
            key: Buffer.from(m.key),
            iv: m.mode === CxlIvMode.DEFAULT ? CXL_DEFAULT_IV : Buffer.from(m.iv),
          });
        this.log.info({ ...named(m), status }, "CXL IDE-KM KEY_PROG");
        return encodeCxlIdeKm({ ...m, object: "KP_ACK", status });
      }
      case "K_SET_GO":
        this.checkTarget(m);
        if (!this.keys.has(m.direction)) this.refuse(m, "K_SET_GO of a direction not programmed");
        if (!this.settings.modes.includes(MODE_NAMES[m.mode]!))
          this.refuse(m, "K_SET_GO in a mode not supported");
        this.going.set(m.direction, m.mode);
        this.log.info(named(m), "CXL IDE-KM K_SET_GO");
        return encodeCxlIdeKm({ ...m, object: "K_GOSTOP_ACK" });
      case "K_SET_STOP":
        this.checkTarget(m);
        if (!this.settings.kSetStop) this.refuse(m, "K_SET_STOP unannounced");
        this.keys.delete(m.direction);
        this.going.delete(m.direction);
        this.log.info(named(m), "CXL IDE-KM K_SET_STOP");
        return encodeCxlIdeKm({ ...m, object: "K_GOSTOP_ACK" });
      default:
        // A response object sent as a request.
        throw new DecodeError("cxl_ide_km.objectId", 0, `${m.object} is not a request`);
    }
  }

  private checkPort(portIndex: number): void {
    if (portIndex !== this.settings.portIndex) {
      this.log.info({ portIndex }, "CXL IDE-KM request for a port that does not exist");
      fail("InvalidRequest");
    }
  }

  private checkTarget(t: CxlKeyTarget): void {
    this.checkPort(t.portIndex);
    if (t.subStream !== CXL_SUB_STREAM) this.refuse(t, "request for a sub-stream other than CXL's");
  }

  private refuse(t: CxlKeyTarget, why: string): never {
    this.log.info(named(t), `CXL IDE-KM ${why}`);
    fail("InvalidRequest");
  }

  private queryResp(): CxlIdeKmQueryResp {
    const modes = this.settings.modes;
    const capability =
      IdeCapability.CAPABLE |
      (modes.includes("SKID") ? IdeCapability.SKID : 0) |
      (modes.includes("CONTAINMENT") ? IdeCapability.CONTAINMENT : 0);
    return {
      object: "QUERY_RESP",
      portIndex: this.settings.portIndex,
      devFuncNum: this.rid & 0xff,
      busNum: this.rid >>> 8,
      segment: 0,
      maxPortIndex: this.settings.portIndex,
      caps: this.caps,
      ideRegisters: [capability, ...Array(CXL_IDE_REGISTERS - 1).fill(0)],
    };
  }
}
