/**
 * CERT_INSTALL_RESET_CAP between our requester and our responder in one process: GET_CSR answered
 * ResetRequired with a CSRTrackingTag, retrieved with that tag after the device's reset (Provisioning
 * reset(), what a restart or a PF's FLR calls); the 1.2 form without a tag; Overwrite, Busy and the
 * invalid combinations; SET_CERTIFICATE deferred, GET_DIGESTS and GET_CERTIFICATE answering
 * ResetRequired until the reset, the new chain served after it.
 */
import { describe, expect, it } from "vitest";
import { SpdmErrorCode } from "../../protocol/spdm/codes.js";
import { GetCsrAttribute } from "../../protocol/spdm/provision.js";
import { authenticate } from "../../src/requester/connection.js";
import { Provisioning } from "../../src/spdm/provisioning.js";
import { SpdmRequester } from "../../src/spdm/requester.js";
import { SpdmResponder } from "../../src/spdm/responder.js";
import { responderConfig, spdmSettingsSchema } from "../../src/spdm/responder-settings.js";
import { CertificateSlots } from "../../src/spdm/responder-slots.js";

const SETTINGS = spdmSettingsSchema.parse({
  capabilities: ["CERT", "CHAL", "MEAS_SIG", "CHUNK", "CSR", "SET_CERT", "CERT_INSTALL_RESET"],
  slots: [
    { slot: 0, generate: true },
    { slot: 1, generate: true },
  ],
});

function device() {
  const slots = CertificateSlots.fromSettings(SETTINGS.slots);
  const provisioning = new Provisioning(slots);
  const responder = new SpdmResponder({ ...responderConfig(SETTINGS), provisioning }, slots);
  const requester = (opts: ConstructorParameters<typeof SpdmRequester>[1] = {}) =>
    new SpdmRequester({ send: (b) => responder.handle(b) }, { baseAsymAlgo: 0x10, ...opts });
  return { provisioning, requester };
}

const getCsr = (r: SpdmRequester, attributes: number) =>
  r.exchange({
    code: "GET_CSR",
    version: r.version,
    keyPairId: 0,
    attributes,
    requesterInfo: Buffer.alloc(0),
    opaqueData: Buffer.alloc(0),
  });
const tag = (t: number) => t << GetCsrAttribute.TRACKING_TAG_SHIFT;
const error = (errorCode: number, errorData = 0) => ({ code: "ERROR", errorCode, errorData });

describe("CERT_INSTALL_RESET_CAP", () => {
  it("GET_CSR: ResetRequired with a tag, the CSR with that tag after the reset, the tag then free", async () => {
    const { provisioning, requester } = device();
    const r = requester({ provisionSteps: ["GET_CSR", "SET_CERT"] });
    const s = await authenticate(r);
    // The run stops at ResetRequired: SET_CERT is not tried.
    expect(s.provisioning).toMatchObject({ resetRequired: { step: "GET_CSR", tag: 1 } });
    expect(s.provisioning.setCertificate).toBeUndefined();
    expect((await getCsr(r, 0)).message).toMatchObject(error(SpdmErrorCode.ResetRequired, 2));
    // Not reset yet: the tag still waits.
    expect((await getCsr(r, tag(1))).message).toMatchObject(error(SpdmErrorCode.ResetRequired, 1));
    expect((await getCsr(r, tag(3))).message).toMatchObject(error(SpdmErrorCode.InvalidRequest));
    expect(provisioning.reset()).toBe(true);

    const after = requester({ provisionSteps: ["GET_CSR"], csrTrackingTag: 1, connectionSteps: [] });
    const got = await authenticate(after);
    expect(got.provisioning.resetRequired).toBeUndefined();
    expect(got.provisioning.csr!.length).toBeGreaterThan(100);
    // Retrieved: tag 1 is free again, tag 2 still holds its CSR.
    expect((await getCsr(after, tag(1))).message).toMatchObject(error(SpdmErrorCode.InvalidRequest));
    expect((await getCsr(after, tag(2))).message).toMatchObject({ code: "CSR" });
    expect((await getCsr(after, 0)).message).toMatchObject(error(SpdmErrorCode.ResetRequired, 1));
  });

  it("GET_CSR: Busy with every tag taken, Overwrite drops them all, Overwrite with a tag is invalid", async () => {
    const { requester } = device();
    const r = requester({ connectionSteps: [], busyRetries: 0 });
    await authenticate(r);
    for (let t = 1; t <= 7; t++)
      expect((await getCsr(r, 0)).message).toMatchObject(error(SpdmErrorCode.ResetRequired, t));
    expect((await getCsr(r, 0)).message).toMatchObject(error(SpdmErrorCode.Busy));
    const overwrite = GetCsrAttribute.OVERWRITE;
    expect((await getCsr(r, overwrite | tag(2))).message).toMatchObject(error(SpdmErrorCode.InvalidRequest));
    expect((await getCsr(r, overwrite)).message).toMatchObject(error(SpdmErrorCode.ResetRequired, 1));
    expect((await getCsr(r, 0)).message).toMatchObject(error(SpdmErrorCode.ResetRequired, 2));
  });

  it("GET_CSR at 1.2: no tag; the same request after the reset gets the CSR", async () => {
    const { provisioning, requester } = device();
    const opts = { versions: [0x12], provisionSteps: ["GET_CSR" as const], connectionSteps: [] };
    const first = await authenticate(requester(opts));
    expect(first.provisioning.resetRequired).toEqual({ step: "GET_CSR", tag: 0 });
    provisioning.reset();
    const second = await authenticate(requester(opts));
    expect(second.provisioning.csr!.length).toBeGreaterThan(100);
  });

  it("SET_CERTIFICATE and Erase: ResetRequired, digests and those slots' chains too until the reset", async () => {
    const { provisioning, requester } = device();
    // SET_CERT puts slot 0's own chain back; 1.3 Erase empties slot 1.
    const r = requester({ provisionSteps: ["SET_CERT"] });
    const s = await authenticate(r);
    expect(s.provisioning.resetRequired).toEqual({ step: "SET_CERT", tag: 0 });
    const erase = await r.exchange({
      code: "SET_CERTIFICATE",
      version: r.version,
      attributes: 0x81,
      keyPairId: 0,
    });
    expect(erase.message).toMatchObject(error(SpdmErrorCode.ResetRequired));
    expect((await r.exchange({ code: "GET_DIGESTS", version: r.version })).message).toMatchObject(
      error(SpdmErrorCode.ResetRequired),
    );
    const cert = (slotId: number) =>
      r.exchange({
        code: "GET_CERTIFICATE",
        version: r.version,
        slotId,
        attributes: 0,
        offset: 0,
        length: 0x400,
      });
    expect((await cert(1)).message).toMatchObject(error(SpdmErrorCode.ResetRequired));
    // Until the reset the slots are as they were.
    expect(
      (await authenticate(requester({ connectionSteps: ["DIGEST"] })).catch(
        (e: Error) => e.message,
      )) as string,
    ).toMatch(/GET_DIGESTS with ERROR ResetRequired/);
    provisioning.reset();
    const after = await authenticate(requester());
    expect(after.provisionedSlots).toEqual([0]);
    expect(after.certificateChain?.certificates).toBe(3);
  });
});
