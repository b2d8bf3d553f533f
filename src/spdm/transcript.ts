/**
 * The connection transcripts both SPDM roles keep (DSP0274 CHALLENGE_AUTH M1/M2, MEASUREMENTS
 * L1/L2), with the reset rules of libspdm 1e16c60f (libspdm_reset_message_buffer_via_request_code),
 * so that our responder and requester sign and verify exactly what DMTF's do:
 *   A = VCA; B = digests/certificates; C = challenge; M = measurements (one log per scope: the
 *   connection's here, each session's in SecureSession.measurementLog); D = the first DIGESTS
 *   after VCA, which 1.3 multi-key connections put into every KEY_EXCHANGE TH.
 * Messages are exact SPDM messages, never transport padding.
 */
import { SpdmRequestCode } from "../../protocol/spdm/codes.js";
import { hash } from "../crypto/suites.js";
import type { KeyScheduleSuite } from "./key-schedule.js";

/** Requests that, before authentication completes, drop B and C (CHALLENGE skipped). */
const RESETS_BC_BEFORE_AUTH: ReadonlySet<number> = new Set([
  SpdmRequestCode.KEY_EXCHANGE,
  SpdmRequestCode.GET_MEASUREMENTS,
  SpdmRequestCode.FINISH,
  SpdmRequestCode.PSK_EXCHANGE,
  SpdmRequestCode.PSK_FINISH,
  SpdmRequestCode.KEY_UPDATE,
  SpdmRequestCode.HEARTBEAT,
  SpdmRequestCode.GET_ENCAPSULATED_REQUEST,
  SpdmRequestCode.DELIVER_ENCAPSULATED_RESPONSE,
  SpdmRequestCode.END_SESSION,
  SpdmRequestCode.GET_MEASUREMENT_EXTENSION_LOG,
]);

/** A GET_MEASUREMENTS/MEASUREMENTS log (libspdm message_m): the connection's, or one per session. */
export type MeasurementLog = Buffer[];

export class Transcript {
  private a: Buffer[] = [];
  private b: Buffer[] = [];
  private readonly m: MeasurementLog = [];
  private d?: Buffer;
  /** A CHALLENGE completed since the last GET_VERSION. */
  authenticated = false;

  /**
   * Applies the reset rules for a request that is about to be processed. Inside a session pass the
   * session's M log: libspdm then resets that one instead of the connection's (B rules still apply).
   */
  onRequest(code: number, sessionLog?: MeasurementLog): void {
    if (code === SpdmRequestCode.GET_VERSION) {
      this.a = [];
      this.b = [];
      this.m.length = 0;
      this.d = undefined;
      this.authenticated = false;
      return;
    }
    if (code !== SpdmRequestCode.GET_MEASUREMENTS) (sessionLog ?? this.m).length = 0;
    if (code === SpdmRequestCode.GET_DIGESTS) this.b = [];
    // C only ever lives inside challenge(), so dropping B is all that is left to do here.
    if (!this.authenticated && RESETS_BC_BEFORE_AUTH.has(code)) this.b = [];
  }

  /** GET_VERSION..ALGORITHMS pairs. */
  addVca(request: Uint8Array, response: Uint8Array): void {
    this.a.push(Buffer.from(request), Buffer.from(response));
  }

  /** A DIGESTS response outside a session; only the first after VCA is kept (libspdm message D). */
  noteDigests(response: Uint8Array): void {
    this.d ??= Buffer.from(response);
  }

  /** D: the first DIGESTS response after VCA, if any. */
  get digests(): Buffer | undefined {
    return this.d;
  }

  /** GET_DIGESTS/DIGESTS and GET_CERTIFICATE/CERTIFICATE pairs. */
  addCertificateExchange(request: Uint8Array, response: Uint8Array): void {
    this.b.push(Buffer.from(request), Buffer.from(response));
  }

  /** M1/M2 for a CHALLENGE: A ‖ B ‖ CHALLENGE ‖ CHALLENGE_AUTH without its signature. B and C reset after. */
  challenge(request: Uint8Array, responseWithoutSignature: Uint8Array): Buffer {
    const m1 = Buffer.concat([
      ...this.a,
      ...this.b,
      Buffer.from(request),
      Buffer.from(responseWithoutSignature),
    ]);
    this.b = [];
    return m1;
  }

  /** Marks a successful CHALLENGE (libspdm's AUTHENTICATED connection state). */
  markAuthenticated(): void {
    this.authenticated = true;
  }

  /**
   * Logs a GET_MEASUREMENTS exchange (in `log`, the connection's by default). For a signed response
   * (signature cut off by the caller) it returns L1/L2 = [A if version >= 1.2] ‖ M and starts a new log.
   */
  measurements(
    version: number,
    request: Uint8Array,
    response: Uint8Array,
    signed: boolean,
    log: MeasurementLog = this.m,
  ): Buffer | undefined {
    log.push(Buffer.from(request), Buffer.from(response));
    if (!signed) return undefined;
    const l = Buffer.concat([...(version >= 0x12 ? this.a : []), ...log]);
    log.length = 0;
    return l;
  }

  /** An ERROR answered a GET_MEASUREMENTS: libspdm drops the measurement log. */
  resetMeasurements(log: MeasurementLog = this.m): void {
    log.length = 0;
  }

  /** A, the VCA messages (part of the session transcripts later). */
  get vca(): Buffer {
    return Buffer.concat(this.a);
  }
}

/**
 * The bytes TH starts with (DSP0274 §12, TH1/TH2): A ‖ Hash(CT) for KEY_EXCHANGE, with D (the first
 * DIGESTS after VCA) before Hash(CT) on 1.3 multi-key connections; just A for PSK_EXCHANGE.
 */
export function sessionTranscriptPrefix(
  suite: Pick<KeyScheduleSuite, "hash">,
  parts: { vca: Uint8Array; digests?: Uint8Array; certChain?: Uint8Array },
): Buffer {
  const { vca, digests, certChain } = parts;
  if (!certChain) return Buffer.from(vca);
  return Buffer.concat([vca, digests ?? Buffer.alloc(0), hash(suite.hash, certChain)]);
}
