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
import { decodeOrFail, pciSigExchange } from "./requester-pcisig.js";
import type { SecureSession } from "./session.js";

/** A key's name for failures, e.g. "K0 TX NPR stream 0 port 1". */
export function keyLabel(t: KeyTarget): string {
  return `K${t.keySet} ${t.direction ? "TX" : "RX"} ${["PR", "NPR", "CPL"][t.subStream] ?? t.subStream} stream ${t.streamId} port ${t.portIndex}`;
}

async function ask<N extends IdeKmObjectName>(
  r: SpdmRequester,
  s: SecureSession,
  request: IdeKmMessage,
  expected: N,
  step: string,
): Promise<IdeKmMessageOf<N>> {
  const bytes = await pciSigExchange(r, s, "IDE_KM", encodeIdeKm(request), step);
  const m = decodeOrFail(decodeIdeKm, bytes, `IDE_KM ${step}`);
  if (m.object !== expected)
    fail("unexpected-response", `IDE_KM ${step}: answered with ${m.object}, not ${expected}`);
  return m as IdeKmMessageOf<N>;
}

function checkEcho(got: KeyTarget, sent: KeyTarget, step: string): void {
  if (keyLabel(got) !== keyLabel(sent))
    fail(
      "unexpected-response",
      `IDE_KM ${step}: the answer names ${keyLabel(got)}, we sent ${keyLabel(sent)}`,
    );
}

export async function ideKmQuery(
  r: SpdmRequester,
  s: SecureSession,
  portIndex: number,
): Promise<IdeKmMessageOf<"QUERY_RESP">> {
  const m = await ask(r, s, { object: "QUERY", portIndex }, "QUERY_RESP", "QUERY");
  if (m.portIndex !== portIndex)
    fail(
      "unexpected-response",
      `IDE_KM QUERY: QUERY_RESP is for port ${m.portIndex}, we asked for ${portIndex}`,
    );
  return m;
}

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
