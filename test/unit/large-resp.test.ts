/**
 * SPDM 1.4 LARGE_RESP_CAP, our requester against our responder in process: a slot whose chain is
 * larger than 64 KiB (a padded leaf) is answered with ERROR DataTooLarge to the 16-bit
 * GET_CERTIFICATE and read in the LargeCertChain form (32-bit offset and lengths), as libspdm
 * 1e16c60f does; the chain then signs CHALLENGE_AUTH and a KEY_EXCHANGE session. The large
 * vendor-defined form is echoed when both sides advertise LARGE_RESP_CAP and refused otherwise.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeSpdm, encodeSpdm } from "../../protocol/spdm/codec.js";
import {
  CERTIFICATE_LARGE_CHAIN,
  RequesterCapability as Req,
  ResponderCapability as Rsp,
  SpdmErrorCode,
} from "../../protocol/spdm/codes.js";
import type { SpdmMessage } from "../../protocol/spdm/messages.js";
import { writeChainFiles } from "../../src/crypto/cert-files.js";
import { generateCertChain } from "../../src/crypto/certgen.js";
import { authenticate } from "../../src/requester/connection.js";
import { SpdmRequester } from "../../src/spdm/requester.js";
import { REQUESTER_DEFAULTS, type SpdmRequesterOptions } from "../../src/spdm/requester-options.js";
import { heartbeat, openSession } from "../../src/spdm/requester-session.js";
import { SpdmResponder } from "../../src/spdm/responder.js";
import {
  DEFAULT_CAPABILITIES,
  responderConfig,
  type SpdmSettings,
  spdmSettingsSchema,
} from "../../src/spdm/responder-settings.js";
import { CertificateSlots } from "../../src/spdm/responder-slots.js";
import { loggedTransport } from "../support/wire-log.js";

const PADDING = 70_000;
let LARGE_SLOTS: CertificateSlots;
let SMALL_SLOTS: CertificateSlots;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "doe-emu-large-resp-"));
  const big = writeChainFiles(
    dir,
    "large",
    await generateCertChain({ asym: "ECDSA_P384", padding: PADDING }),
  );
  LARGE_SLOTS = CertificateSlots.fromSettings([
    { slot: 0, certChain: big.certchainDer, privateKey: big.keyPem },
  ]);
  SMALL_SLOTS = CertificateSlots.fromSettings([{ slot: 0, generate: true }]);
});

const settings = (o: Partial<SpdmSettings> = {}) =>
  spdmSettingsSchema.parse({ vendorDefinedInClear: true, ...o });
const withoutLargeResp = DEFAULT_CAPABILITIES.filter((c) => c !== "LARGE_RESP");

/** Our requester against our responder; every request and response is kept in `wire`. */
function connect(slots: CertificateSlots, opts: SpdmRequesterOptions = {}, s = settings()) {
  // The device echoes vendor-defined payloads.
  const responder = new SpdmResponder(responderConfig(s), slots, undefined, (m) => m);
  const { transport, wire } = loggedTransport(responder);
  return { wire, r: new SpdmRequester(transport, { measurementMode: "ALL", ...opts }) };
}

/** GET_CERTIFICATE (0x82), CERTIFICATE (0x02) and ERROR (0x7F) in the traffic, each decoded and re-encoded byte for byte. */
const certificateTraffic = (wire: Buffer[]) =>
  wire
    .filter((b) => [0x82, 0x02, 0x7f].includes(b[1]!))
    .map((b) => {
      const m = decodeSpdm(b, { trailing: "any" });
      const again = encodeSpdm(m);
      expect(b.subarray(0, again.length)).toEqual(again);
      return m;
    });

describe("LARGE_RESP_CAP (SPDM 1.4): a certificate chain larger than 64 KiB", () => {
  it("DataTooLarge to the 16-bit GET_CERTIFICATE, then the LargeCertChain form reads it; it signs CHALLENGE_AUTH and a session", async () => {
    const { r, wire } = connect(LARGE_SLOTS);
    await authenticate(r);
    expect(r.connection.version).toBe(0x14);
    const chain = r.connection.chain(0)!.bytes;
    expect(chain.length).toBeGreaterThan(PADDING);
    expect(chain.readUInt32LE(0)).toBe(chain.length);
    const traffic = certificateTraffic(wire);
    expect(traffic[1]).toMatchObject({ code: "ERROR", errorCode: SpdmErrorCode.DataTooLarge });
    // The extended data is the chain's size (u32).
    const error = wire.find((b) => b[1] === 0x7f)!;
    expect(error.readUInt32LE(4)).toBe(chain.length);
    const large = traffic.slice(2) as Extract<SpdmMessage, { code: "GET_CERTIFICATE" | "CERTIFICATE" }>[];
    expect(large.length).toBeGreaterThan(2 * 64);
    expect(large.every((m) => (m.slotId & CERTIFICATE_LARGE_CHAIN) !== 0)).toBe(true);
    const opened = await openSession(r, { kind: "KEY_EX" });
    expect(opened.session.state).toBe("established");
    await heartbeat(r, opened.session);
  });

  it("at 1.3 the chain cannot be read: the 16-bit form is all there is", async () => {
    const { r } = connect(LARGE_SLOTS, { versions: [0x13] });
    await expect(authenticate(r)).rejects.toThrow(/GET_CERTIFICATE with ERROR Unspecified/);
  });

  it("a 1.4 responder without LARGE_RESP_CAP: the requester says so", async () => {
    const { r } = connect(LARGE_SLOTS, {}, settings({ capabilities: withoutLargeResp }));
    await expect(authenticate(r)).rejects.toThrow(
      /holds a \d+-byte chain and the responder has no LARGE_RESP_CAP/,
    );
  });
});

describe("LARGE_RESP_CAP (SPDM 1.4): the large forms on a small chain and vendor-defined messages", () => {
  it("a LargeCertChain GET_CERTIFICATE is answered in the same form; without our LARGE_RESP_CAP: UnsupportedRequest", async () => {
    const ask = {
      code: "GET_CERTIFICATE",
      version: 0x14,
      slotId: CERTIFICATE_LARGE_CHAIN,
      attributes: 0,
      offset: 0,
      length: 0,
      largeOffset: 16,
      largeLength: 100,
    } as const;
    const { r } = connect(SMALL_SLOTS);
    await authenticate(r);
    const reply = await r.exchange(ask);
    expect(reply.message).toMatchObject({ code: "CERTIFICATE", slotId: CERTIFICATE_LARGE_CHAIN });
    const c = reply.message as Extract<SpdmMessage, { code: "CERTIFICATE" }>;
    expect(c.certChain).toEqual(r.connection.chain(0)!.bytes.subarray(16, 116));
    expect(c.remainderLength).toBe(r.connection.chain(0)!.bytes.length - 116);
    // PortionLength and RemainderLength (16-bit) are 0, the 32-bit ones follow.
    expect(reply.bytes.subarray(4, 8)).toEqual(Buffer.alloc(4));
    expect(reply.bytes.readUInt32LE(8)).toBe(100);

    const off = connect(SMALL_SLOTS, {}, settings({ capabilities: withoutLargeResp }));
    await authenticate(off.r);
    expect((await off.r.exchange(ask)).message).toMatchObject({
      code: "ERROR",
      errorCode: SpdmErrorCode.UnsupportedRequest,
      errorData: 0x82,
    });
  });

  const vdm = (large: boolean) =>
    ({
      code: "VENDOR_DEFINED_REQUEST",
      version: 0x14,
      large,
      standardId: 3,
      vendorId: Buffer.from([1, 0]),
      payload: Buffer.from("00aabb", "hex"),
    }) as const;

  it("a large VENDOR_DEFINED_REQUEST (both sides LARGE_RESP_CAP) gets a large response; a small one a small one", async () => {
    const { r } = connect(SMALL_SLOTS);
    await authenticate(r);
    expect(r.connection.requesterFlags & Req.LARGE_RESP_CAP).not.toBe(0);
    expect(r.connection.responderFlags & Rsp.LARGE_RESP_CAP).not.toBe(0);
    for (const large of [true, false]) {
      const reply = await r.exchange(vdm(large));
      expect(reply.message).toMatchObject({ code: "VENDOR_DEFINED_RESPONSE", payload: vdm(large).payload });
      expect((reply.message as { large?: boolean }).large === true).toBe(large);
      expect(reply.bytes[2]).toBe(large ? 0x80 : 0);
    }
  });

  it("a large VENDOR_DEFINED_REQUEST from a requester without LARGE_RESP_CAP: InvalidRequest", async () => {
    const { r } = connect(SMALL_SLOTS, {
      capabilities: REQUESTER_DEFAULTS.capabilities & ~Req.LARGE_RESP_CAP,
    });
    await authenticate(r);
    expect((await r.exchange(vdm(true))).message).toMatchObject({
      code: "ERROR",
      errorCode: SpdmErrorCode.InvalidRequest,
    });
  });
});
