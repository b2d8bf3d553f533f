/**
 * The provisioning requests between our requester and our responder in one process: every step
 * verified by the requester (MEL length, signed ENDPOINT_INFO, CSR signature), and the responder's
 * refusals (a chain for another key, erasing an associated key pair, a deferred CSR); a 1.3
 * multi-key connection (MULTI_KEY_NEG / MULTI_KEY_ONLY), where GET_CSR and SET_CERTIFICATE name
 * key pair 1 and the first DIGESTS enters both sides' TH.
 */
import { describe, expect, it } from "vitest";
import { CertificateModel, OtherParams, SpdmErrorCode } from "../../protocol/spdm/codes.js";
import { KeyPairOperation } from "../../protocol/spdm/provision.js";
import { generateCertChain } from "../../src/crypto/certgen.js";
import { authenticate } from "../../src/requester/connection.js";
import { KEY_PAIR_USAGES } from "../../src/spdm/provisioning.js";
import { SpdmRequester, SpdmRequesterError } from "../../src/spdm/requester.js";
import { PROVISION_STEPS } from "../../src/spdm/requester-provision.js";
import { endSession, openSession } from "../../src/spdm/requester-session.js";
import { SpdmResponder } from "../../src/spdm/responder.js";
import { responderConfig, spdmSettingsSchema } from "../../src/spdm/responder-settings.js";
import { CertificateSlots } from "../../src/spdm/responder-slots.js";

const SETTINGS = spdmSettingsSchema.parse({
  capabilities: [
    "CERT",
    "CHAL",
    "MEAS_SIG",
    "CHUNK",
    "MEL",
    "CSR",
    "SET_CERT",
    "EP_INFO_SIG",
    "GET_KEY_PAIR_INFO",
    "SET_KEY_PAIR_INFO",
  ],
  slots: [
    { slot: 0, generate: true },
    { slot: 2, generate: true },
  ],
});

function pair(settings = SETTINGS) {
  const responder = new SpdmResponder(
    responderConfig(settings),
    CertificateSlots.fromSettings(settings.slots),
  );
  const requester = (opts: ConstructorParameters<typeof SpdmRequester>[1] = {}) =>
    new SpdmRequester(
      {
        send: (b) => responder.handle(b),
        sendSecured: async (b) => (await responder.handleSecured(b)) ?? Buffer.alloc(0),
      },
      { baseAsymAlgo: 0x10, ...opts },
    );
  return { responder, requester };
}

describe("provisioning requests, our requester against our responder", () => {
  it("runs every step and verifies what it gets", async () => {
    const { requester } = pair();
    const r = requester({ provisionSteps: PROVISION_STEPS });
    const s = await authenticate(r);
    expect(s.provisioning).toMatchObject({
      skipped: [],
      mel: { entries: 3, portions: 1 },
      endpointInfo: { bytes: 12, signed: true },
      keyPair: { id: 1, total: 2, assocCertSlotMask: 1 },
      keyPairErased: 1,
      setCertificate: { slot: 0, certificates: 3 },
    });
    expect(s.provisioning.csr!.length).toBeGreaterThan(100);
  });

  it("MEL in small portions when the requester's transfers are small", async () => {
    const { requester } = pair();
    const s = await authenticate(
      requester({
        provisionSteps: ["MEL"],
        connectionSteps: [],
        dataTransferSize: 80,
        maxSpdmMsgSize: 80,
        capabilities: 0x6,
      }),
    );
    expect(s.provisioning.mel).toMatchObject({ bytes: 85, portions: 2 });
  });

  it("SET_CERTIFICATE refuses a chain whose leaf is not the slot's key", async () => {
    const { requester } = pair();
    const other = await generateCertChain({ asym: "ECDSA_P384" });
    const r = requester({
      provisionSteps: ["SET_CERT"],
      setCertificate: { slot: 0, certsDer: other.certsDer },
    });
    const e = await authenticate(r).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SpdmRequesterError);
    expect((e as SpdmRequesterError).reason).toMatch(/InvalidRequest/);
  });

  it("erasing a key pair still associated with a slot is OperationFailed; a deferred CSR is invalid", async () => {
    const { requester } = pair();
    const r = requester({ connectionSteps: [] });
    await authenticate(r);
    const erase = await r.exchange({
      code: "SET_KEY_PAIR_INFO",
      version: r.version,
      operation: KeyPairOperation.Erase,
      keyPairId: 2,
    });
    expect(erase.message).toMatchObject({ code: "ERROR", errorCode: SpdmErrorCode.OperationFailed });
    const csr = await r.exchange({
      code: "GET_CSR",
      version: r.version,
      keyPairId: 0,
      attributes: 0x08, // CSRTrackingTag 1
      requesterInfo: Buffer.alloc(0),
      opaqueData: Buffer.alloc(0),
    });
    expect(csr.message).toMatchObject({ code: "ERROR", errorCode: SpdmErrorCode.InvalidRequest });
  });

  describe("a multi-key connection", () => {
    const multiKey = (...caps: string[]) =>
      pair(spdmSettingsSchema.parse({ ...SETTINGS, capabilities: [...SETTINGS.capabilities, ...caps] }));

    it("MULTI_KEY_NEG: DIGESTS names each slot's key pair, model and usage; CSR and SET_CERT by KeyPairID", async () => {
      const r = multiKey("MULTI_KEY_NEG").requester({
        provisionSteps: PROVISION_STEPS.filter((s) => s !== "SET_KEY_PAIR_INFO"),
      });
      const s = await authenticate(r);
      expect(r.ctx.multiKeyConn).toBe(true);
      expect(s.provisioning).toMatchObject({ skipped: [], setCertificate: { slot: 0, certificates: 3 } });
      expect(s.provisioning.csr!.length).toBeGreaterThan(100);
      const d = await r.exchange({ code: "GET_DIGESTS", version: r.version });
      expect(d.message).toMatchObject({
        provisionedSlotMask: 0b101,
        keyPairIds: [1, 2],
        certificateInfos: [CertificateModel.DeviceCert, CertificateModel.DeviceCert],
        keyUsageMasks: [KEY_PAIR_USAGES, KEY_PAIR_USAGES],
      });
    });

    it("KEY_EXCHANGE with the first DIGESTS in TH on both sides: FINISH verifies", async () => {
      const r = multiKey("MULTI_KEY_NEG", "ENCRYPT", "MAC", "KEY_EX").requester();
      await authenticate(r);
      expect(r.ctx.multiKeyConn).toBe(true);
      const { session } = await openSession(r, { kind: "KEY_EX" });
      await endSession(r, session, 0);
      expect(session.state).toBe("ended");
    });

    it("MULTI_KEY_NEG without the requester's MULTI_KEY_CONN: a single-key connection", async () => {
      const r = multiKey("MULTI_KEY_NEG").requester({ otherParamsSupport: OtherParams.OPAQUE_DATA_FMT_1 });
      await authenticate(r);
      expect(r.ctx.multiKeyConn).toBe(false);
      const d = await r.exchange({ code: "GET_DIGESTS", version: r.version });
      expect(d.message).not.toHaveProperty("keyPairIds");
    });

    it("needs GET_KEY_PAIR_INFO and CERT, and one of MULTI_KEY_ONLY / MULTI_KEY_NEG", () => {
      for (const capabilities of [
        ["CERT", "CHAL", "MULTI_KEY_NEG"],
        ["CERT", "CHAL", "GET_KEY_PAIR_INFO", "MULTI_KEY_NEG", "MULTI_KEY_ONLY"],
      ])
        expect(spdmSettingsSchema.safeParse({ capabilities }).success, String(capabilities)).toBe(false);
    });

    it("MULTI_KEY_ONLY: a multi-key connection even when the requester's options leave MULTI_KEY_CONN out", async () => {
      const r = multiKey("MULTI_KEY_ONLY").requester({ otherParamsSupport: OtherParams.OPAQUE_DATA_FMT_1 });
      await authenticate(r);
      expect(r.ctx.multiKeyConn).toBe(true);
    });
  });
});
