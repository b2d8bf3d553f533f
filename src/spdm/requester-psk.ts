/**
 * DSP0274 PSK_EXCHANGE from the requester side: the pre-shared key named by its hint, the
 * responder's verify data proving it holds the same key, then PSK_FINISH when the responder keeps
 * a context (PSK_CAP 10b).
 */
import { encodeSupportedVersions } from "../../protocol/secured.js";
import { CapabilityField, ResponderCapability as Rsp } from "../../protocol/spdm/codes.js";
import { HASH } from "../crypto/suites.js";
import { expectResponse, fail } from "./requester.js";
import {
  acceptVerifyData,
  checkHeartbeat,
  finish,
  type Handshake,
  selectedVersion,
} from "./requester-handshake.js";
import { SecureSession } from "./session.js";
import { sessionTranscriptPrefix } from "./transcript.js";

/** PSK_EXCHANGE, then PSK_FINISH when the responder keeps a context. */
export const pskExchange: Handshake = async (r, c, o, suite, held) => {
  const H = HASH[c.suite.hash].size;
  const type = o.measurementSummaryHashType ?? c.measurementSummaryHashType;
  const reply = await r.exchange(
    {
      code: "PSK_EXCHANGE",
      version: c.version,
      measurementSummaryHashType: type,
      sessionPolicy: c.version >= 0x12 ? o.sessionPolicy : 0,
      reqSessionId: o.reqSessionId,
      pskHint: Buffer.from(o.pskHint),
      requesterContext: c.random(o.pskContextSize),
      opaqueData: encodeSupportedVersions(c.version, o.securedMessageVersions),
    },
    { measurementSummaryHashType: type },
  );
  const pr = expectResponse(reply, "PSK_EXCHANGE_RSP");
  checkHeartbeat(c, reply, pr.heartbeatPeriod);
  // PSK_CAP 10b: the responder keeps a context, which PSK_FINISH then confirms; 01b: neither.
  const withContext = (c.responderFlags & CapabilityField.PSK_CAP) === Rsp.PSK_CAP_RESPONDER_WITH_CONTEXT;
  if (withContext !== pr.responderContext.length > 0)
    fail(
      "session",
      `PSK_EXCHANGE_RSP carries a ${pr.responderContext.length}-byte ResponderContext, but PSK_CAP says ${withContext ? "it keeps one" : "none"}`,
    );
  const session = new SecureSession({
    role: "requester",
    kind: "PSK",
    suite,
    reqSessionId: o.reqSessionId,
    rspSessionId: pr.rspSessionId,
    transcriptPrefix: sessionTranscriptPrefix(suite, { vca: c.vca }),
    heartbeatPeriod: pr.heartbeatPeriod,
    securedMessageVersion: selectedVersion(c, reply, pr.opaqueData, o.securedMessageVersions),
    keyLog: r.options.keyLog,
  });
  held.session = session;
  session.addTranscript(reply.requestBytes, reply.bytes.subarray(0, -H));
  session.deriveHandshakeKeys({ psk: o.psk });
  acceptVerifyData(
    session,
    pr.responderVerifyData,
    "PSK_EXCHANGE_RSP ResponderVerifyData",
    " (a different PSK?)",
  );
  if (withContext) await finish(r, c, session, "PSK_FINISH");
  else session.establish();
  return {
    session,
    measurementSummaryHashType: type,
    measurementSummaryHash: pr.measurementSummaryHash,
    pskFinish: withContext,
  };
};
