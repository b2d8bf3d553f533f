/**
 * Mutual authentication of KEY_EXCHANGE sessions without encapsulation (spdm-emu's
 * `--mut_auth WO_ENCAP`), our requester against our responder in process: the responder provisioned
 * with a requester chain (`spdm.mutualAuth`) advertises MUT_AUTH_CAP, selects a ReqBaseAsymAlg the
 * chain's key signs with, asks for mutual authentication in KEY_EXCHANGE_RSP and verifies FINISH's
 * signature; TH carries Hash(requester chain) on both sides. Then what fails: a wrong requester key,
 * a FINISH without signature, a requester without MUT_AUTH_CAP, an encapsulated request without ENCAP_CAP.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  AlgType,
  RequesterCapability as Req,
  ReqBaseAsymAlg,
  ResponderCapability as Rsp,
  SpdmCode,
} from "../../protocol/spdm/codes.js";
import { writeChainFiles } from "../../src/crypto/cert-files.js";
import { type GeneratedCertChain, generateCertChain } from "../../src/crypto/certgen.js";
import { authenticate } from "../../src/requester/connection.js";
import { SpdmRequester, type SpdmTransport } from "../../src/spdm/requester.js";
import { REQUESTER_DEFAULTS, type SpdmRequesterOptions } from "../../src/spdm/requester-options.js";
import { heartbeat, openSession } from "../../src/spdm/requester-session.js";
import { SpdmResponder } from "../../src/spdm/responder.js";
import {
  responderConfig,
  type SpdmSettings,
  spdmSettingsSchema,
  withMutualAuth,
} from "../../src/spdm/responder-settings.js";
import { CertificateSlots } from "../../src/spdm/responder-slots.js";

const DIR = mkdtempSync(join(tmpdir(), "doe-emu-mutual-auth-"));
const BASE = spdmSettingsSchema.parse({});
const SLOTS = CertificateSlots.fromSettings(BASE.slots);
let requester: GeneratedCertChain;
let chainFile: string;
let rsaChainFile: string;

beforeAll(async () => {
  requester = await generateCertChain({ asym: "ECDSA_P384", role: "requester" });
  chainFile = writeChainFiles(DIR, "requester", requester).certchainPem;
  const rsa = await generateCertChain({ asym: "RSAPSS_2048", role: "requester" });
  rsaChainFile = writeChainFiles(DIR, "requester-rsa", rsa).certchainDer;
});

function settings(overrides: Partial<SpdmSettings> = {}): SpdmSettings {
  return spdmSettingsSchema.parse({ ...BASE, mutualAuth: { requesterCertChain: chainFile }, ...overrides });
}

/** A responder with mutual authentication (by default), and requests/records rewritten by `tamper`. */
function connect(
  opts: SpdmRequesterOptions = {},
  s: SpdmSettings = settings(),
  tamper: { request?: (q: Buffer) => Buffer; response?: (r: Buffer) => Buffer } = {},
) {
  const responder = new SpdmResponder(responderConfig(s), SLOTS);
  const transport: SpdmTransport = {
    send: async (q) =>
      (tamper.response ?? ((r) => r))(await responder.handle((tamper.request ?? ((x) => x))(q))),
    sendSecured: async (q) => (await responder.handleSecured(q)) ?? Buffer.alloc(0),
  };
  const identity = { requesterCertChain: requester.certsDer, requesterKey: requester.privateKey };
  return { responder, r: new SpdmRequester(transport, { ...identity, measurementMode: "ALL", ...opts }) };
}

const noClear = REQUESTER_DEFAULTS.capabilities & ~Req.HANDSHAKE_IN_THE_CLEAR_CAP;

describe("mutual authentication, our requester -> our responder", () => {
  it.each([
    ["in the clear", {}],
    ["under the handshake keys", { capabilities: noClear }],
    ["at SPDM 1.2", { versions: [0x12] }],
  ])("the requester signs FINISH (%s); the session works", async (_title, opts) => {
    const { responder, r } = connect(opts);
    await authenticate(r);
    const c = r.connection;
    expect(c.responderFlags & Rsp.MUT_AUTH_CAP).toBe(Rsp.MUT_AUTH_CAP);
    expect(c.requesterFlags & Req.MUT_AUTH_CAP).toBe(Req.MUT_AUTH_CAP);
    // We offer what the P-384 key signs with; the responder selects it.
    expect(c.algorithms.algStructs.find((t) => t.algType === AlgType.REQ_BASE_ASYM_ALG)?.algSupported).toBe(
      ReqBaseAsymAlg.ECDSA_P384,
    );
    const opened = await openSession(r, { kind: "KEY_EX" });
    expect(opened.session.mutualAuth).toBe(true);
    expect(opened.session.state).toBe("established");
    await heartbeat(r, opened.session);
    expect(responder.sessionCount).toBe(1);
  });

  it("an RSA requester chain: ALGORITHMS selects the RSA algorithm its key fits", async () => {
    const { r } = connect(
      { requesterCertChain: undefined, requesterKey: undefined },
      settings({
        mutualAuth: { mode: "WO_ENCAP", basic: "NO", requesterCertChain: rsaChainFile, required: true },
      }),
    );
    await authenticate(r);
    // The requester offers the defaults (RSA); the responder's preferences shrank to RSAPSS-2048/RSASSA-2048.
    const sel = r.connection.algorithms.algStructs.find((t) => t.algType === AlgType.REQ_BASE_ASYM_ALG);
    expect(sel?.algSupported).toBe(ReqBaseAsymAlg.RSAPSS_2048);
  });

  it("a requester key other than the chain's leaf: ERROR DecryptError, no session", async () => {
    const other = generateKeyPairSync("ec", { namedCurve: "secp384r1" }).privateKey;
    const { responder, r } = connect({ requesterKey: other });
    await authenticate(r);
    await expect(openSession(r, { kind: "KEY_EX" })).rejects.toThrow(
      /responder answered FINISH with ERROR DecryptError/,
    );
    expect(responder.sessionCount).toBe(0);
  });

  it("a FINISH without the signature: ERROR InvalidRequest, the session is not established", async () => {
    // Param1 bit 0 cleared and the signature (96 bytes, P-384) cut out of the FINISH in the clear.
    const unsign = (q: Buffer) =>
      q[1] === SpdmCode.FINISH
        ? Buffer.concat([q.subarray(0, 2), Buffer.from([0, 0]), q.subarray(4 + 96)])
        : q;
    const { r } = connect({}, settings(), { request: unsign });
    await authenticate(r);
    await expect(openSession(r, { kind: "KEY_EX" })).rejects.toThrow(
      /responder answered FINISH with ERROR InvalidRequest/,
    );
  });

  it.each([
    ["1.3", 0x13, "InvalidPolicy"],
    ["1.2", 0x12, "Unspecified"],
  ])("a requester without MUT_AUTH_CAP gets no session (SPDM %s: %s)", async (_v, version, error) => {
    const { responder, r } = connect({
      versions: [version],
      requesterCertChain: undefined,
      requesterKey: undefined,
    });
    await authenticate(r);
    await expect(openSession(r, { kind: "KEY_EX" })).rejects.toThrow(
      new RegExp(`KEY_EXCHANGE with ERROR ${error}`),
    );
    expect(responder.sessionCount).toBe(0);
  });

  it("not required: a requester without MUT_AUTH_CAP gets a session without mutual authentication", async () => {
    const s = settings({
      mutualAuth: { mode: "WO_ENCAP", basic: "NO", requesterCertChain: chainFile, required: false },
    });
    const { r } = connect({ requesterCertChain: undefined, requesterKey: undefined }, s);
    await authenticate(r);
    const opened = await openSession(r, { kind: "KEY_EX" });
    expect(opened.session.mutualAuth).toBe(false);
    expect(opened.session.state).toBe("established");
  });

  it("PSK sessions are untouched by mutual authentication", async () => {
    const { r } = connect();
    await authenticate(r);
    const opened = await openSession(r, { kind: "PSK" });
    expect(opened.session.mutualAuth).toBe(false);
    expect(opened.session.state).toBe("established");
  });
});

describe("mutual authentication, requester side", () => {
  it("refuses encapsulated mutual authentication from a responder without ENCAP_CAP", async () => {
    // MutAuthRequested (KEY_EXCHANGE_RSP byte 6) turned into "with encapsulated request".
    const encap = (rsp: Buffer) =>
      rsp[1] === SpdmCode.KEY_EXCHANGE_RSP
        ? Buffer.concat([rsp.subarray(0, 6), Buffer.from([0x02]), rsp.subarray(7)])
        : rsp;
    const { r } = connect({}, settings(), { response: encap });
    await authenticate(r);
    await expect(openSession(r, { kind: "KEY_EX" })).rejects.toThrow(
      /encapsulated requests without ENCAP_CAP on both sides/,
    );
  });

  it("asked for mutual authentication without a requester chain: says which options to give", async () => {
    const { r } = connect({
      requesterCertChain: undefined,
      requesterKey: undefined,
      capabilities: REQUESTER_DEFAULTS.capabilities | Req.MUT_AUTH_CAP,
      reqBaseAsymAlg: ReqBaseAsymAlg.ECDSA_P384,
    });
    await authenticate(r);
    await expect(openSession(r, { kind: "KEY_EX" })).rejects.toThrow(/--req-cert-chain, --req-key/);
  });

  it("refuses a chain without key, and a ReqBaseAsymAlg the key cannot sign with", () => {
    const t = { send: async () => Buffer.alloc(0) };
    expect(() => new SpdmRequester(t, { requesterCertChain: requester.certsDer })).toThrow(/both/);
    expect(
      () =>
        new SpdmRequester(t, {
          requesterCertChain: requester.certsDer,
          requesterKey: requester.privateKey,
          reqBaseAsymAlg: ReqBaseAsymAlg.RSAPSS_3072,
        }),
    ).toThrow(/ReqBaseAsymAlg/);
  });
});

describe("mutual authentication settings", () => {
  it("is off by default: no MUT_AUTH_CAP", () => {
    const c = responderConfig(BASE);
    expect(c.mutualAuth).toBeUndefined();
    expect(c.flags & Rsp.MUT_AUTH_CAP).toBe(0);
  });

  it("advertises MUT_AUTH_CAP and keeps only the ReqBaseAsymAlg the chain's key fits", () => {
    const c = responderConfig(settings());
    expect(c.flags & Rsp.MUT_AUTH_CAP).toBe(Rsp.MUT_AUTH_CAP);
    expect(c.reqAsym).toEqual([ReqBaseAsymAlg.ECDSA_P384]);
    expect(c.mutualAuth?.certsDer).toHaveLength(requester.certsDer.length);
  });

  it("refuses a chain whose key fits no reqAsym, a foreign trust root, and mutual authentication without KEY_EX", async () => {
    expect(() => responderConfig(settings({ reqAsym: ["RSAPSS_3072"] }))).toThrow(/fits none/);
    const foreign = await generateCertChain({ asym: "ECDSA_P256" });
    const root = writeChainFiles(DIR, "foreign", foreign).rootDer;
    expect(() =>
      responderConfig(
        settings({
          mutualAuth: {
            mode: "WO_ENCAP",
            basic: "NO",
            requesterCertChain: chainFile,
            trustRoot: root,
            required: true,
          },
        }),
      ),
    ).toThrow(/neither/);
    const own = writeChainFiles(DIR, "own", requester).rootPem;
    expect(
      responderConfig(
        settings({
          mutualAuth: {
            mode: "WO_ENCAP",
            basic: "NO",
            requesterCertChain: chainFile,
            trustRoot: own,
            required: true,
          },
        }),
      ).mutualAuth,
    ).toBeDefined();
    expect(() =>
      withMutualAuth(spdmSettingsSchema.parse({ capabilities: ["CERT", "CHAL"] }), chainFile),
    ).toThrow(/needs KEY_EX/);
  });
});
