/**
 * A slow device (DSP0274 ERROR ResponseNotReady and RESPOND_IF_READY): with `notReady` settings,
 * the chosen requests are first answered with ResponseNotReady and served when RESPOND_IF_READY
 * names them; without them RESPOND_IF_READY finds nothing pending. The libspdm files cited are
 * libspdm 1e16c60f's library/spdm_responder_lib/libspdm_rsp_*.c.
 */
import { encodeSpdm } from "../../protocol/spdm/codec.js";
import { SpdmErrorCode } from "../../protocol/spdm/codes.js";
import type { RespondIfReady } from "../../protocol/spdm/messages.js";
import { type Connection, check, fail } from "./responder-context.js";
import { NOT_READY_DEFAULTS, type ResponderConfig } from "./responder-settings.js";
import type { SecureSession } from "./session.js";

/** A request answered with ResponseNotReady, and what RESPOND_IF_READY must name to get its response. */
interface PendingRequest {
  code: number;
  token: number;
  request: Buffer;
  /** The session it came in, if any: RESPOND_IF_READY must come there too. */
  session: SecureSession | undefined;
  /** performance.now() from which it is answered. */
  readyAt: number;
}

/** The request held back by ResponseNotReady, until RESPOND_IF_READY fetches it. */
export class NotReady {
  private pending: PendingRequest | undefined;
  private lastToken = 0;

  constructor(
    private readonly settings: ResponderConfig["notReady"],
    private readonly connection: Connection,
  ) {}

  /** The description's timing; a fault injected into a device without it uses the defaults. */
  private get timing() {
    return this.settings ?? NOT_READY_DEFAULTS;
  }

  /** Whether a request with this code is answered with ResponseNotReady first. */
  holdsBack(code: number): boolean {
    return this.settings?.requests.includes(code) ?? false;
  }

  /**
   * Any request but RESPOND_IF_READY abandons the one held back: libspdm keeps only the latest
   * request in its cache (libspdm 1e16c60f handle_response_state.c:35-44), and the requester has
   * moved on.
   */
  drop(): void {
    this.pending = undefined;
  }

  /**
   * ResponseNotReady instead of the response. Like libspdm, nothing is computed and nothing enters
   * a transcript now: RESPOND_IF_READY runs the kept request as if it came then (libspdm 1e16c60f
   * respond_if_ready.c:67-70), so request and response are logged together and signatures cover
   * what the requester logs. The dispatcher answers it before its ERROR mapping, which would drop
   * the measurement log (libspdm's requester keeps it on ResponseNotReady); the reset rules have
   * run already, and the replay repeats them, which changes nothing.
   */
  holdBack(code: number, request: Buffer, session: SecureSession | undefined): Buffer {
    this.lastToken = (this.lastToken + 1) & 0xff;
    this.pending = {
      code,
      token: this.lastToken,
      request: Buffer.from(request),
      session,
      readyAt: performance.now() + this.timing.delayMs,
    };
    return this.notReadyMessage(this.pending);
  }

  private notReadyMessage(p: PendingRequest): Buffer {
    const { rdtExponent, rdtm } = this.timing;
    return encodeSpdm({
      code: "ERROR",
      version: this.connection.negotiated.version,
      errorCode: SpdmErrorCode.ResponseNotReady,
      errorData: 0,
      responseNotReady: { rdtExponent, requestCode: p.code, token: p.token, rdtm },
    });
  }

  /**
   * The held-back response, which `replay` computes. As libspdm: nothing pending, or another
   * request code or token → InvalidRequest, the pending request kept (libspdm 1e16c60f
   * respond_if_ready.c:44-58); not ready yet → the same ResponseNotReady again (its NOT_READY
   * state, handle_response_state.c:33-50).
   *
   * Named rightly but from another session, from outside the session the request came in, or from
   * a session when it came outside: UnexpectedRequest, and the request is dropped. libspdm keeps no
   * note of where the request came: it replays it wherever RESPOND_IF_READY comes and forgets it
   * (respond_if_ready.c:67-73), so the replayed handler refuses it there with UnexpectedRequest
   * when it is bound to the other side (CHALLENGE or KEY_EXCHANGE in a session). One that goes
   * anywhere (GET_DIGESTS, GET_MEASUREMENTS) it would answer into a transcript that never saw the
   * request; we refuse it the same way.
   */
  respondIfReady(
    m: RespondIfReady,
    session: SecureSession | undefined,
    replay: (request: Buffer) => Promise<Buffer>,
  ): Buffer | Promise<Buffer> {
    const p = this.pending;
    check(p !== undefined && m.requestCode === p.code && m.token === p.token);
    if (session !== p.session) {
      this.pending = undefined;
      fail("UnexpectedRequest");
    }
    if (performance.now() < p.readyAt) return this.notReadyMessage(p);
    return replay(p.request);
  }
}
