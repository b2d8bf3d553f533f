/**
 * PCI IDE-KM from the requester side (PCIe r6.0 §6.33.3; codec protocol/ide-km.ts), one function
 * per exchange, each inside an established session: QUERY, KEY_PROG, K_SET_GO, K_SET_STOP. Every
 * answer must echo the port (and the key it names); a KP_ACK must have Status SUCCESS.
 */
import {
  decodeIdeKm,
  encodeIdeKm,
  type IdeKmMessage,
  type IdeKmMessageOf,
  type IdeKmObjectName,
  type KeyTarget,
  KpAckStatus,
} from "../../protocol/ide-km.js";
import { nameOf } from "../../protocol/spdm/codes.js";
import { hex } from "../bits.js";
import { fail, type SpdmRequester } from "./requester.js";
import { askObject, askQuery, type ObjectProtocol } from "./requester-pcisig.js";
import type { SecureSession } from "./session.js";

/** A key's name for failures, e.g. "K0 TX NPR stream 0 port 1". */
export function keyLabel(t: KeyTarget): string {
  return `K${t.keySet} ${t.direction ? "TX" : "RX"} ${["PR", "NPR", "CPL"][t.subStream] ?? t.subStream} stream ${t.streamId} port ${t.portIndex}`;
}

const IDE_KM: ObjectProtocol<IdeKmMessage> = { protocol: "IDE_KM", encode: encodeIdeKm, decode: decodeIdeKm };

const ask = <N extends IdeKmObjectName>(
  r: SpdmRequester,
  s: SecureSession,
  request: IdeKmMessage,
  expected: N,
  step: string,
): Promise<IdeKmMessageOf<N>> => askObject(r, s, IDE_KM, request, expected, step);

function checkEcho(got: KeyTarget, sent: KeyTarget, step: string): void {
  if (keyLabel(got) !== keyLabel(sent))
    fail(
      "unexpected-response",
      `IDE_KM ${step}: the answer names ${keyLabel(got)}, we sent ${keyLabel(sent)}`,
    );
}

export const ideKmQuery = (
  r: SpdmRequester,
  s: SecureSession,
  portIndex: number,
): Promise<IdeKmMessageOf<"QUERY_RESP">> => askQuery(r, s, IDE_KM, portIndex);

export async function ideKmKeyProg(
  r: SpdmRequester,
  s: SecureSession,
  target: KeyTarget,
  key: Buffer,
  ifv: Buffer,
): Promise<void> {
  const step = `KEY_PROG ${keyLabel(target)}`;
  const ack = await ask(r, s, { object: "KEY_PROG", ...target, key, ifv }, "KP_ACK", step);
  checkEcho(ack, target, step);
  if (ack.status !== KpAckStatus.SUCCESS)
    fail(
      "error-response",
      `IDE_KM ${step}: KP_ACK Status ${nameOf(KpAckStatus, ack.status) ?? hex(ack.status)}`,
    );
}

/** K_SET_GO or K_SET_STOP; the answer is K_GOSTOP_ACK for the same key. */
export async function ideKmKSet(
  r: SpdmRequester,
  s: SecureSession,
  object: "K_SET_GO" | "K_SET_STOP",
  target: KeyTarget,
): Promise<void> {
  const step = `${object} ${keyLabel(target)}`;
  const ack = await ask(r, s, { object, ...target }, "K_GOSTOP_ACK", step);
  checkEcho(ack, target, step);
}
