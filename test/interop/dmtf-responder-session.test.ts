/**
 * Our requester's secure sessions against DMTF's spdm_responder_emu (set SPDM_EMU_BIN to spdm-emu's
 * build/bin): KEY_EXCHANGE with the handshake in the clear and encrypted, PSK with and without a
 * responder context, every AEAD and ECDHE group DMTF offers, SPDM 1.1–1.3, a 1.3 multi-key
 * connection (D in TH), two sessions one after the other on one connection, and mutual
 * authentication without encapsulation (`--mut_auth WO_ENCAP`, FINISH signed with DMTF's sample
 * requester chain, which that responder has provisioned). Each test starts
 * its own responder (it exits when its requester disconnects) and ends with SHUTDOWN.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AeadCipherSuite, RequesterCapability as Cap, DheNamedGroup } from "../../protocol/spdm/codes.js";
import { generateCertChain } from "../../src/crypto/certgen.js";
import { DoeClient } from "../../src/doe/client.js";
import {
  exited,
  SPDM_EMU_BIN,
  sampleRequesterIdentity,
  startResponder,
  stopResponders,
} from "../../src/fixture/spdm-emu-responder.js";
import { authenticate } from "../../src/requester/connection.js";
import { cmaTransport, type RunRequesterOptions, runSessionRequester } from "../../src/requester/run.js";
import type { SessionSummary } from "../../src/requester/session.js";
import { SpdmRequester, SpdmRequesterError } from "../../src/spdm/requester.js";
import { REQUESTER_DEFAULTS } from "../../src/spdm/requester-options.js";
import { endSession, heartbeat, openSession } from "../../src/spdm/requester-session.js";
import type { SessionKind } from "../../src/spdm/session.js";

const root = (dir: string) => readFileSync(join(SPDM_EMU_BIN ?? "", dir, "ca.cert.der"));
const ALL_STEPS = [
  "GET_DIGESTS",
  "GET_CERTIFICATE",
  "GET_MEASUREMENTS",
  "KEY_UPDATE UpdateKey+VerifyNewKey",
  "KEY_UPDATE UpdateAllKeys+VerifyNewKey",
  "HEARTBEAT",
  "END_SESSION",
];

afterEach(stopResponders);

/** One responder with `responderArgs`, one requester run with a session of `kind`; the responder must exit 0. */
async function session(
  kind: SessionKind,
  responderArgs: string[] = [],
  opts: RunRequesterOptions = {},
): Promise<SessionSummary> {
  const rsp = await startResponder(responderArgs);
  const out = await runSessionRequester(
    { host: "127.0.0.1", port: rsp.port },
    {
      trustRoot: root("ecp384"),
      measurementMode: "ALL",
      dheNamedGroup: DheNamedGroup.SECP_384_R1,
      ...opts,
      session: { kind },
    },
  );
  expect(out.connection.challenge?.summaryHashChecked, rsp.command).toBe(true);
  expect(await exited(rsp.child), rsp.command).toBe(0);
  return out.session;
}

const noClear = REQUESTER_DEFAULTS.capabilities & ~Cap.HANDSHAKE_IN_THE_CLEAR_CAP;

describe.skipIf(!SPDM_EMU_BIN)("our requester's sessions against DMTF spdm_responder_emu", () => {
  it("KEY_EX with the handshake in the clear: everything in session, summary hash checked", async () => {
    const s = await session("KEY_EX");
    expect(s).toMatchObject({
      kind: "KEY_EX",
      sessionId: "0xffffffff",
      securedMessageVersion: "1.2",
      handshake: "in the clear",
      dhe: "SECP_384_R1",
      aead: "AES_256_GCM",
      heartbeatPeriod: 0xf0,
      steps: ALL_STEPS,
      skipped: [],
      measurementSummaryHash: { type: "All", checked: true },
      securedRoundTrips: 11,
    });
    expect(s.measurements).toMatchObject({ mode: "ALL", signed: true });
  });

  it("KEY_EX with an encrypted handshake (FINISH under the handshake keys)", async () => {
    const s = await session("KEY_EX", [], { capabilities: noClear });
    expect(s).toMatchObject({ handshake: "encrypted", steps: ALL_STEPS, securedRoundTrips: 12 });
  });

  it("PSK with a responder context (PSK_FINISH), DMTF's test PSK", async () => {
    const s = await session("PSK");
    expect(s).toMatchObject({ kind: "PSK", pskFinish: true, steps: ALL_STEPS, securedRoundTrips: 12 });
    expect(s.dhe).toBeUndefined();
  });

  it("PSK without a responder context (no PSK_FINISH) and without authentication", async () => {
    const caps = "CERT,CHAL,MEAS_SIG,ENCRYPT,MAC,KEY_EX,PSK,HBEAT,KEY_UPD,CHUNK";
    const rsp = await startResponder(["--cap", caps]);
    const out = await runSessionRequester(
      { host: "127.0.0.1", port: rsp.port },
      { connectionSteps: [], measurementMode: "ALL", session: { kind: "PSK" } },
    );
    expect(out.connection.certificateChain).toBeUndefined();
    // The chain comes in the session, so the in-session measurements are signed after all.
    expect(out.session).toMatchObject({ pskFinish: false, steps: ALL_STEPS, securedRoundTrips: 11 });
    expect(out.session.measurements).toMatchObject({ signed: true });
  });

  it.each(["AES_128_GCM", "AES_256_GCM", "CHACHA20_POLY1305"] as const)(
    "KEY_EX and PSK with %s",
    async (aead) => {
      for (const kind of ["KEY_EX", "PSK"] as const) {
        const s = await session(kind, ["--aead", aead], {
          aeadCipherSuite: AeadCipherSuite[aead],
          capabilities: noClear,
        });
        expect(s).toMatchObject({ aead, steps: ALL_STEPS });
      }
    },
  );

  // DMTF's Mbed TLS build has the RFC 7919 groups (its requester offers FFDHE_3072 and FFDHE_2048 by default).
  it.each(["FFDHE_2048", "FFDHE_3072", "FFDHE_4096"] as const)("KEY_EX with FFDHE %s", async (dhe) => {
    const s = await session("KEY_EX", ["--dhe", dhe], { dheNamedGroup: DheNamedGroup[dhe] });
    expect(s).toMatchObject({ dhe, steps: ALL_STEPS });
  });

  it.each(["SECP_256_R1", "SECP_384_R1", "SECP_521_R1"] as const)("KEY_EX with ECDHE %s", async (dhe) => {
    const s = await session("KEY_EX", ["--dhe", dhe], { dheNamedGroup: DheNamedGroup[dhe] });
    expect(s).toMatchObject({ dhe, steps: ALL_STEPS });
  });

  it.each([
    [0x11, "1.1"],
    [0x12, "1.2"],
  ])("KEY_EX and PSK at SPDM %s", async (version) => {
    for (const kind of ["KEY_EX", "PSK"] as const) {
      const s = await session(kind, [], { versions: [version] });
      expect(s.steps).toEqual(ALL_STEPS);
    }
  });

  it("KEY_EX on a 1.3 multi-key connection (the first DIGESTS enters TH)", async () => {
    const s = await session("KEY_EX", [], {
      capabilities: REQUESTER_DEFAULTS.capabilities | Cap.MULTI_KEY_CAP_NEG,
    });
    expect(s.steps).toEqual(ALL_STEPS);
  });

  it("refuses a wrong PSK with a clear reason", async () => {
    const rsp = await startResponder();
    const e = await runSessionRequester(
      { host: "127.0.0.1", port: rsp.port },
      { connectionSteps: [], session: { kind: "PSK", psk: Buffer.from("not the PSK") } },
    ).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SpdmRequesterError);
    expect((e as Error).message).toMatch(
      /PSK_EXCHANGE_RSP ResponderVerifyData does not match .*different PSK/,
    );
    expect(await exited(rsp.child)).toBe(0);
  });

  it("works with the responder's default mutual-authentication policies (we do not advertise MUT_AUTH_CAP)", async () => {
    const rsp = await startResponder([], ["--trans", "PCI_DOE"]);
    const out = await runSessionRequester(
      { host: "127.0.0.1", port: rsp.port },
      { measurementMode: "ALL", session: { kind: "KEY_EX" } },
    );
    expect(out.session.steps).toEqual(ALL_STEPS);
  });

  it("opens a PSK session after ending a KEY_EX session on the same connection", async () => {
    const rsp = await startResponder();
    const doe = await DoeClient.connect({ host: "127.0.0.1", port: rsp.port });
    try {
      const r = new SpdmRequester(cmaTransport(doe), { measurementMode: "ALL" });
      await authenticate(r);
      const ids: number[] = [];
      for (const kind of ["KEY_EX", "PSK"] as const) {
        const { session } = await openSession(r, { kind });
        await heartbeat(r, session);
        await endSession(r, session, 0); // keep the negotiated state for the next session
        ids.push(session.sessionId);
        expect(session.state).toBe("ended");
      }
      expect(ids).toEqual([0xffffffff, 0xffffffff]);
    } finally {
      await doe.end("SHUTDOWN");
    }
    expect(await exited(rsp.child)).toBe(0);
  });
});

describe.skipIf(!SPDM_EMU_BIN)(
  "mutual authentication against DMTF spdm_responder_emu --mut_auth WO_ENCAP",
  () => {
    const MUT_AUTH = ["--mut_auth", "WO_ENCAP", "--basic_mut_auth", "NO"];
    // The responder provisions the sample requester chain of its ReqBaseAsym.
    const identity = sampleRequesterIdentity;

    it("KEY_EX with the handshake in the clear, DMTF's RSA-3072 requester chain (its default ReqBaseAsym)", async () => {
      const s = await session("KEY_EX", MUT_AUTH, identity("rsa3072"));
      expect(s).toMatchObject({ mutualAuth: { slot: 0, reqAsym: "RSAPSS_3072" }, steps: ALL_STEPS });
    });

    it("KEY_EX under the handshake keys, DMTF's ECDSA P-384 requester chain (--req_asym ECDSA_P384)", async () => {
      const s = await session("KEY_EX", [...MUT_AUTH, "--req_asym", "ECDSA_P384"], {
        ...identity("ecp384"),
        capabilities: noClear,
      });
      expect(s).toMatchObject({
        handshake: "encrypted",
        mutualAuth: { reqAsym: "ECDSA_P384" },
        steps: ALL_STEPS,
      });
    });

    it("fails clearly without a requester chain", async () => {
      const rsp = await startResponder(MUT_AUTH);
      const e = await runSessionRequester(
        { host: "127.0.0.1", port: rsp.port },
        { measurementMode: "ALL", session: { kind: "KEY_EX" } },
      ).catch((x: unknown) => x);
      expect((e as Error).message).toMatch(/asks for mutual authentication; give .*--req-cert-chain/);
    });

    it("a requester chain other than the one DMTF provisioned: FINISH gets ERROR DecryptError", async () => {
      const rsp = await startResponder(MUT_AUTH);
      const ours = await generateCertChain({ asym: "RSAPSS_3072", role: "requester" });
      const e = await runSessionRequester(
        { host: "127.0.0.1", port: rsp.port },
        {
          requesterCertChain: ours.certsDer,
          requesterKey: ours.privateKey,
          measurementMode: "ALL",
          session: { kind: "KEY_EX" },
        },
      ).catch((x: unknown) => x);
      expect((e as Error).message).toMatch(/responder answered FINISH with ERROR DecryptError/);
    }, 30_000);
  },
);
