/**
 * Secure sessions from the requester side, on a negotiated SpdmRequester: `openSession` runs
 * KEY_EXCHANGE/FINISH (requester-key-exchange.ts) or PSK_EXCHANGE[/PSK_FINISH] (requester-psk.ts)
 * to an established SecureSession; requests then go through it with `requester.inSession`, and the
 * DSP0274 messages that exist only inside a session are here: HEARTBEAT, KEY_UPDATE (ours and the
 * responder's, which comes encapsulated), END_SESSION.
 * Failures are SpdmRequesterError, like the rest of the requester.
 */
import { KeyUpdateOperation } from "../../protocol/spdm/codes.js";
import { hex } from "../bits.js";
import { expectResponse, fail, type SpdmRequester } from "./requester.js";
import { encapsulatedFlow } from "./requester-encap.js";
import {
  type Holder,
  type OpenedSession,
  SESSION_DEFAULTS,
  type SessionOptions,
  type SessionRequestOptions,
  sessionSuite,
} from "./requester-handshake.js";
import { keyExchange } from "./requester-key-exchange.js";
import { definedOnly } from "./requester-options.js";
import { pskExchange } from "./requester-psk.js";
import type { SecureSession } from "./session.js";

/** KEY_EXCHANGE/FINISH or PSK_EXCHANGE[/PSK_FINISH] on a negotiated requester; resolves established. */
export async function openSession(r: SpdmRequester, options: SessionRequestOptions): Promise<OpenedSession> {
  const o: SessionOptions = { ...SESSION_DEFAULTS, ...definedOnly(options), kind: options.kind };
  const c = r.connection;
  const suite = sessionSuite(c, o.kind);
  const open = o.kind === "KEY_EX" ? keyExchange : pskExchange;
  const held: Holder = {};
  try {
    return await open(r, c, o, suite, held);
  } catch (e) {
    // A half-open session is of no use to anyone: end it, which wipes its keys.
    held.session?.end(`handshake failed: ${(e as Error).message}`);
    throw e;
  }
}

export async function heartbeat(r: SpdmRequester, s: SecureSession): Promise<void> {
  const reply = await r.inSession(s, () => r.exchange({ code: "HEARTBEAT", version: r.connection.version }));
  expectResponse(reply, "HEARTBEAT_ACK");
}

/** KEY_UPDATE `operation` (UpdateKey or UpdateAllKeys) and then VerifyNewKey, each ACK checked. */
export async function keyUpdate(r: SpdmRequester, s: SecureSession, operation: number): Promise<void> {
  const c = r.connection;
  for (const op of [operation, KeyUpdateOperation.VerifyNewKey]) {
    const tag = c.random(1)[0]!;
    const reply = await r.inSession(s, () =>
      r.exchange({ code: "KEY_UPDATE", version: c.version, operation: op, tag }),
    );
    const ack = expectResponse(reply, "KEY_UPDATE_ACK");
    if (ack.operation !== op || ack.tag !== tag)
      fail(
        "session",
        `KEY_UPDATE_ACK echoes operation ${ack.operation} tag ${hex(ack.tag)}, we sent ${op} tag ${hex(tag)}`,
      );
  }
}

/**
 * A KEY_UPDATE the responder sends: asked for out of band (spdm-emu's OOB_ENCAP_KEY_UPDATE), then
 * fetched with GET_ENCAPSULATED_REQUEST; it updates its key (UpdateKey) and then VerifyNewKey.
 */
export async function responderKeyUpdate(r: SpdmRequester, s: SecureSession): Promise<void> {
  await r.requestEncapKeyUpdate(s);
  const flow = await encapsulatedFlow(r, "GET_ENCAPSULATED_REQUEST", { session: s });
  if (flow.requests.join() !== "KEY_UPDATE,KEY_UPDATE")
    fail(
      "session",
      `the responder's key update sent ${flow.requests.join(", ") || "nothing"}, expected KEY_UPDATE twice`,
    );
}

export async function endSession(r: SpdmRequester, s: SecureSession, attributes: number): Promise<void> {
  const reply = await r.inSession(s, () =>
    r.exchange({ code: "END_SESSION", version: r.connection.version, attributes }),
  );
  expectResponse(reply, "END_SESSION_ACK");
  s.end("END_SESSION");
}
