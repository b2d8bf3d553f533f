/**
 * Where the fault rules of faults.ts act: the mailbox endpoint (a DOE object on the socket), a
 * function's SPDM responder, and its TDISP and IDE-KM engines. Each wrapper asks the FaultSet for
 * the object in hand and does what the rule that fires says; without rules it only passes through.
 */
import { DOE_HEADER_BYTES, DoeType, PCI_SIG_VENDOR_ID } from "../../protocol/doe.js";
import { decodeIdeKm, encodeIdeKm, IdeKmObject, KpAckStatus } from "../../protocol/ide-km.js";
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import { SpdmErrorCode, SpdmRequestCode, SpdmVersion } from "../../protocol/spdm/codes.js";
import { TdispCode } from "../../protocol/tdisp.js";
import type { SpdmResponder } from "../spdm/responder.js";
import type { FaultProtocol, FaultRule, FaultSet, FaultSite, FaultView } from "./faults.js";
import type { DoeHandler } from "./mailbox.js";
import type { PciSigEngine } from "./pcisig-vdm.js";
import type { TdispEngine } from "./tdisp.js";

const namesOf = (table: Record<string, number>) =>
  new Map(Object.entries(table).map(([name, code]) => [code, name]));
const SPDM_NAMES = namesOf(SpdmRequestCode);
const TDISP_NAMES = namesOf(TdispCode);
const DOE_PROTOCOLS = new Map<number, FaultProtocol>([
  [DoeType.DISCOVERY, "DISCOVERY"],
  [DoeType.CMA_SPDM, "SPDM"],
  [DoeType.SECURED_CMA_SPDM, "SECURED_SPDM"],
]);

/** The doe-layer site of a request object as it arrived (its header may be anything). */
export function doeSite(object: Buffer, rid: number, mailbox: number): FaultSite {
  const pciSig = object.length >= 4 && object.readUInt16LE(0) === PCI_SIG_VENDOR_ID;
  const protocol = pciSig ? DOE_PROTOCOLS.get(object[2]!) : undefined;
  const code = protocol === "SPDM" ? SPDM_NAMES.get(object[DOE_HEADER_BYTES + 1] ?? -1) : undefined;
  return { layer: "doe", rid, mailbox, protocol, code };
}

/** A copy of a response object with one part flipped, so that the peer cannot take it for good. */
export function corrupt(response: Buffer, fault: Pick<FaultRule, "part" | "protocol">): Buffer {
  const out = Buffer.from(response);
  const flip = (at: number) => {
    if (at >= 0 && at < out.length) out[at]! ^= 0xff;
  };
  const part = fault.part ?? (fault.protocol === "SECURED_SPDM" ? "tag" : "header");
  if (part === "header")
    flip(0); // the vendor ID: not the protocol asked
  else if (part === "body")
    flip(DOE_HEADER_BYTES + 1); // the SPDM response code
  else {
    // DSP0277 over DOE: session ID (4), length (2), then ciphertext and tag; the tag ends the record.
    const length = out.length >= DOE_HEADER_BYTES + 6 ? out.readUInt16LE(DOE_HEADER_BYTES + 4) : 0;
    flip(DOE_HEADER_BYTES + 6 + length - 1);
  }
  return out;
}

/** What a doe-layer fault needs of the connection the object came on. */
export interface DoeFaultTarget {
  /** Processes the object in the mailbox; `done` gets the response object, or undefined for none. */
  submit(done: (response: Buffer | undefined) => void): void;
  /** Answers the frame; an empty buffer is "no response object". */
  reply(object: Buffer): void;
  close(): void;
  exit(): void;
}

const EMPTY: Buffer = Buffer.alloc(0);

export function applyDoeFault(fault: FaultView, t: DoeFaultTarget): void {
  switch (fault.kind) {
    case "delay":
      t.submit((r) => void setTimeout(() => t.reply(r ?? EMPTY), fault.ms));
      break;
    case "stall":
      // Never processed nor answered: the connection's later frames wait behind it.
      break;
    case "drop":
      t.submit(() => t.reply(EMPTY));
      break;
    case "corrupt":
      t.submit((r) => t.reply(r ? corrupt(r, fault) : EMPTY));
      break;
    case "close":
      t.close();
      break;
    case "exit":
      t.exit();
      break;
    default:
      throw new Error(`${fault.kind} is not a DOE-layer fault`);
  }
}

/** The plain CMA/SPDM handler of one mailbox, with the spdm-layer faults. */
export function spdmHandler(
  responder: SpdmResponder,
  faults: FaultSet,
  rid: number,
  mailbox: number,
): DoeHandler {
  return (req) => {
    const fault = faults.armed
      ? faults.take({
          layer: "spdm",
          rid,
          mailbox,
          protocol: "SPDM",
          code: SPDM_NAMES.get(req.payload[1] ?? -1),
        })
      : undefined;
    if (fault?.kind === "spdm-error")
      return encodeSpdm({
        code: "ERROR",
        version: req.payload[0] ?? SpdmVersion.V1_0,
        errorCode: SpdmErrorCode.Busy,
        errorData: 0,
      });
    return responder.handle(req.payload, fault?.kind === "not-ready");
  };
}

/** The TDISP engine at a TDEV function; tdi-error moves the TDI named to ERROR before the request is served. */
export function tdispEngine(engine: TdispEngine, faults: FaultSet, rid: number): PciSigEngine {
  return (message, ctx) => {
    const code = TDISP_NAMES.get(message[1] ?? -1);
    if (faults.armed && faults.take({ layer: "TDISP", rid, protocol: "TDISP", code }))
      engine.injectError(message);
    return engine.handle(message, { ...ctx, via: rid });
  };
}

/** An IDE-KM engine; ide-km-fail turns the KP_ACK of a KEY_PROG into Unspecified Failure. */
export function ideKmEngine(
  handle: (message: Buffer) => Buffer,
  faults: FaultSet,
  rid: number,
): PciSigEngine {
  return (message) => {
    const response = handle(message);
    if (message[0] !== IdeKmObject.KEY_PROG || !faults.armed) return response;
    if (!faults.take({ layer: "IDE_KM", rid, protocol: "IDE_KM", code: "KEY_PROG" })) return response;
    const ack = decodeIdeKm(response);
    return ack.object === "KP_ACK"
      ? encodeIdeKm({ ...ack, status: KpAckStatus.UNSPECIFIED_FAILURE })
      : response;
  };
}
