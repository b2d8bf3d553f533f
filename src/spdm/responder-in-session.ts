/**
 * The requests that only an established session carries (DSP0274 HEARTBEAT, KEY_UPDATE,
 * END_SESSION); the session itself (session.ts) does the key updates.
 */
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import type { EndSession, Heartbeat, KeyUpdate } from "../../protocol/spdm/messages.js";
import { check, type Exchange, fail, inSession, type ResponderContext } from "./responder-context.js";
import { SessionError } from "./session.js";

export function heartbeat(m: Heartbeat, x: Exchange): Buffer {
  // libspdm: a session without a heartbeat period does not expect HEARTBEAT.
  check(inSession(x).heartbeatPeriod !== 0, "UnexpectedRequest");
  return encodeSpdm({ code: "HEARTBEAT_ACK", version: m.version });
}

export function keyUpdate(m: KeyUpdate, x: Exchange): Buffer {
  // Applied before the ACK is sealed: UpdateAllKeys's ACK already goes under the new response key,
  // UpdateKey's under the old one; VerifyNewKey drops the backups (session.ts KEY_UPDATE_RULES).
  try {
    inSession(x).keyUpdate(m.operation);
  } catch (e) {
    // An unknown operation, Update* before the last one was verified, VerifyNewKey with nothing to verify.
    if (e instanceof SessionError && e.kind === "key-update") fail("InvalidRequest");
    throw e;
  }
  return encodeSpdm({ code: "KEY_UPDATE_ACK", version: m.version, operation: m.operation, tag: m.tag });
}

export function endSession(c: Pick<ResponderContext, "sessions">, m: EndSession, x: Exchange): Buffer {
  // Param1 bit 0 asks to forget the negotiated state we would cache: we cache none (no CACHE_CAP).
  const session = inSession(x);
  x.after.push(() => c.sessions.end(session, "END_SESSION"));
  return encodeSpdm({ code: "END_SESSION_ACK", version: m.version });
}
