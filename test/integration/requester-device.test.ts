/**
 * Our requester against our device process over real TCP: authentication for every base hash ×
 * base asym at each SPDM version, KEY_EX and PSK sessions for every DHE × AEAD × hash, and KEY_EX
 * with mutual authentication (device `--mut-auth-cert-chain`, requester chain and key), the
 * device's encapsulated GET_ENDPOINT_INFO after the EP_INFO step's OOB_ENCAP_ENDPOINT_INFO socket
 * command (signed both ways), and a slow device answering ResponseNotReady (`spdm.notReady`).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AeadCipherSuite,
  BaseAsymAlgo,
  BaseHashAlgo,
  DheNamedGroup,
  MeasurementHashAlgo,
} from "../../protocol/spdm/codes.js";
import { writeChainFiles } from "../../src/crypto/cert-files.js";
import { generateCertChain } from "../../src/crypto/certgen.js";
import { type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import type { Endpoint } from "../../src/net/framed.js";
import { runRequester, runSessionRequester } from "../../src/requester/run.js";
import { DEFAULT_CAPABILITIES } from "../../src/spdm/responder-settings.js";

const HASHES = ["SHA_256", "SHA_384", "SHA_512"] as const;
const ASYMS = [
  "ECDSA_P256",
  "ECDSA_P384",
  "ECDSA_P521",
  "RSASSA_2048",
  "RSASSA_3072",
  "RSASSA_4096",
  "RSAPSS_2048",
  "RSAPSS_3072",
  "RSAPSS_4096",
  "EDDSA_25519",
  "EDDSA_448",
] as const;
const VERSIONS = [0x10, 0x11, 0x12, 0x13, 0x14];
const DHES = ["SECP_256_R1", "SECP_384_R1", "SECP_521_R1", "FFDHE_2048", "FFDHE_3072", "FFDHE_4096"] as const;
const AEADS = ["AES_128_GCM", "AES_256_GCM", "CHACHA20_POLY1305"] as const;

let device: SpawnedDevice;
let endpoint: Endpoint;

beforeAll(async () => {
  device = await spawnDevice();
  endpoint = device.mailboxes[0]!.endpoint;
});
afterAll(() => device.stop());

// Generous: the first NEGOTIATE_ALGORITHMS of an asym generates its chain (RSA-4096: seconds, more when loaded).
const common = { exeMode: "CONTINUE" as const, measurementMode: "ALL" as const, timeoutMs: 60_000 };

describe("authentication, our requester -> our device", () => {
  // The device generates one chain per asym on first use; RSA-4096 key generation takes seconds.
  it.each(ASYMS)("%s: every hash at SPDM 1.0-1.4", { timeout: 120_000 }, async (asym) => {
    for (const hash of HASHES) {
      for (const version of VERSIONS) {
        const s = await runRequester(endpoint, {
          ...common,
          versions: [version],
          baseHashAlgo: BaseHashAlgo[hash],
          baseAsymAlgo: BaseAsymAlgo[asym],
          measurementHashAlgo: MeasurementHashAlgo[hash],
        });
        const where = `${asym} ${hash} ${version.toString(16)}`;
        expect(s.version, where).toBe(`${version >> 4}.${version & 0xf}`);
        expect(s.algorithms, where).toMatchObject({ BaseHash: hash, BaseAsym: asym });
        expect(s.measurements, where).toMatchObject({ signed: true });
        expect(s.challenge.summaryHashChecked, where).toBe(true);
      }
    }
  });
});

describe("sessions, our requester -> our device", () => {
  it.each(DHES)("%s: KEY_EX and PSK for every AEAD and hash", { timeout: 60_000 }, async (dhe) => {
    for (const aead of AEADS) {
      for (const hash of HASHES) {
        for (const kind of ["KEY_EX", "PSK"] as const) {
          const { session } = await runSessionRequester(endpoint, {
            ...common,
            baseHashAlgo: BaseHashAlgo[hash],
            baseAsymAlgo: BaseAsymAlgo.ECDSA_P384,
            measurementHashAlgo: MeasurementHashAlgo[hash],
            dheNamedGroup: DheNamedGroup[dhe],
            aeadCipherSuite: AeadCipherSuite[aead],
            session: { kind },
          });
          const where = `${kind} ${dhe} ${aead} ${hash}`;
          expect(session.aead, where).toBe(aead);
          if (kind === "KEY_EX") expect(session.dhe, where).toBe(dhe);
          expect(session.skipped, where).toEqual([]);
          expect(session.steps.join(" "), where).toMatch(/UpdateKey.*UpdateAllKeys.*HEARTBEAT/);
          expect(session.securedRoundTrips, where).toBeGreaterThan(5);
        }
      }
    }
  });
});

describe("mutual authentication, our requester -> our device", () => {
  it("KEY_EX signed by the provisioned requester chain; another key gets ERROR DecryptError", {
    timeout: 30_000,
  }, async () => {
    const requester = await generateCertChain({ asym: "ECDSA_P256", role: "requester" });
    const files = writeChainFiles(mkdtempSync(join(tmpdir(), "doe-emu-mut-auth-")), "requester", requester);
    const mutual = await spawnDevice({ args: ["--mut-auth-cert-chain", files.certchainDer] });
    try {
      const at = mutual.mailboxes[0]!.endpoint;
      const opts = {
        ...common,
        requesterCertChain: requester.certsDer,
        requesterKey: requester.privateKey,
        session: { kind: "KEY_EX" as const },
      };
      const { session } = await runSessionRequester(at, opts);
      expect(session.mutualAuth).toEqual({ slot: 0, reqAsym: "ECDSA_P256" });
      expect(session.skipped).toEqual([]);
      const other = await generateCertChain({ asym: "ECDSA_P256", role: "requester" });
      await expect(runSessionRequester(at, { ...opts, requesterKey: other.privateKey })).rejects.toThrow(
        /FINISH with ERROR DecryptError/,
      );
    } finally {
      await mutual.stop();
    }
  });
});

describe("endpoint information both ways, our requester -> our device", () => {
  it("EP_INFO: the device's ENDPOINT_INFO, then OOB_ENCAP_ENDPOINT_INFO and ours through encapsulation, each signature verified", {
    timeout: 30_000,
  }, async () => {
    const requester = await generateCertChain({ asym: "ECDSA_P384", role: "requester" });
    const dir = mkdtempSync(join(tmpdir(), "doe-emu-ep-info-"));
    const files = writeChainFiles(dir, "requester", requester);
    const config = join(dir, "device.json");
    const capabilities = [...DEFAULT_CAPABILITIES, "EP_INFO_SIG"];
    writeFileSync(
      config,
      JSON.stringify({ spdm: { capabilities, mutualAuth: { mode: "W_ENCAP", trustRoot: files.rootDer } } }),
    );
    const epInfo = await spawnDevice({ args: ["--config", config] });
    try {
      const s = await runRequester(epInfo.mailboxes[0]!.endpoint, {
        ...common,
        requesterCertChain: requester.certsDer,
        requesterKey: requester.privateKey,
        provisionSteps: ["EP_INFO"],
      });
      const e = s.provisioning.endpointInfo;
      expect(e).toMatchObject({ bytes: 12, signed: true, encapsulated: { signed: true } });
      // Before any session the device has no verified chain of ours: it fetches it first.
      expect(e?.encapsulated?.requests[0]).toBe("GET_DIGESTS");
      expect(e?.encapsulated?.requests.at(-1)).toBe("GET_ENDPOINT_INFO");
    } finally {
      await epInfo.stop();
    }
  });
});

describe("ResponseNotReady, our requester -> our device", () => {
  it("RESPOND_IF_READY fetches CHALLENGE_AUTH and MEASUREMENTS, signatures verified", {
    timeout: 30_000,
  }, async () => {
    const file = join(mkdtempSync(join(tmpdir(), "doe-emu-not-ready-")), "slow.json");
    // The hint (2^14 µs ≈ 16 ms) exceeds the delay, so the requester's first RESPOND_IF_READY gets it.
    const notReady = { requests: ["CHALLENGE", "GET_MEASUREMENTS"], rdtExponent: 14, delayMs: 5 };
    writeFileSync(file, JSON.stringify({ spdm: { notReady } }));
    const slow = await spawnDevice({ args: ["--config", file] });
    try {
      const at = slow.mailboxes[0]!.endpoint;
      for (const version of VERSIONS) {
        const s = await runRequester(at, { ...common, versions: [version] });
        expect(s.measurements, `${version}`).toMatchObject({ signed: true });
        expect(s.challenge.summaryHashChecked, `${version}`).toBe(true);
      }
      const { session } = await runSessionRequester(at, { ...common, session: { kind: "KEY_EX" } });
      expect(session.skipped).toEqual([]);
    } finally {
      await slow.stop();
    }
  });
});
