/**
 * DMTF's libspdm requester against our device process, over the spdm-emu socket with PCI_DOE.
 * spdm_requester_emu exits 0 only when VCA, DIGESTS, CERTIFICATE, CHALLENGE_AUTH and the signed
 * MEASUREMENTS all verified and, with --exe_session, its KEY_EX and PSK sessions opened and ended
 * (it skips what our CAPABILITIES do not advertise: MEL, GET_CSR, SET_CERTIFICATE, key pair info,
 * endpoint info, and mutual authentication unless the device is given a requester chain: then it
 * signs FINISH with its sample requester key). Failures inside a session (heartbeat, key update,
 * measurements) only print an error, so the output must also be free of "fail" and "error".
 * Its default --exe_session also has APP: PCI IDE-KM, TDISP, then CXL IDE-KM around CXL TSP (with a
 * nested secondary PSK session) vendor-defined requests. With examples/dmtf-requester.json (its
 * FunctionID 0xBEEF mapped to function 0, a CXL IDE port with a TSP target) all of it passes, run
 * after run against one device process (--on-shutdown close).
 * spdm_device_validator_sample runs DMTF's SPDM-Responder-Validator and logs pass/fail counts.
 *
 * Skipped unless SPDM_EMU_BIN names spdm-emu's build/bin (binaries and sample keys), e.g.
 *   SPDM_EMU_BIN=path/to/spdm-emu/build/bin npx vitest run test/interop/dmtf-requester.test.ts
 * SPDM_DUMP=path/to/spdm_dump (built from DMTF/spdm-dump) also checks the capture test with it.
 */
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodePcap } from "../../protocol/pcap.js";
import { decodeRecords } from "../../src/cli/decode.js";
import { writeChainFiles } from "../../src/crypto/cert-files.js";
import { generateCertChain } from "../../src/crypto/certgen.js";
import { packageRoot, spawnDevice } from "../../src/fixture/spawn-device.js";
import { parseKeyLog } from "../../src/spdm/keylog.js";
import { spdmSettingsSchema } from "../../src/spdm/responder-settings.js";
import { bin, runTool, slot0 } from "../support/dmtf-tool.js";

const BIN = process.env["SPDM_EMU_BIN"];
/** DMTF's spdm_dump binary (built from DMTF/spdm-dump), to check our captures with; optional. */
const SPDM_DUMP = process.env["SPDM_DUMP"];
/** Mutual authentication with DMTF's sample requester chain of `dir`, whose key spdm_requester_emu signs with. */
const mutAuth = (dir: string) => ["--mut-auth-cert-chain", bin(`${dir}/bundle_requester.certchain.der`)];

/** Our device with `args`, the tool against its first mailbox; the device is stopped whatever happens. */
async function against(deviceArgs: string[], run: (port: number) => Promise<void>): Promise<void> {
  const device = await spawnDevice({ args: deviceArgs });
  try {
    await run(device.mailboxes[0]!.endpoint.port);
  } finally {
    await device.stop();
  }
}

/** Every session step of spdm_requester_emu that we implement (its default list minus APP and what we do not advertise). */
const SESSIONS = ["--exe_session", "KEY_EX,PSK,KEY_UPDATE,HEARTBEAT,MEAS,DIGEST,CERT"];
/** Our default session capabilities without HANDSHAKE_IN_CLEAR (FINISH under the handshake keys) and with PSK_CAP 01b. */
const ENCRYPTED_HANDSHAKE = [
  ...spdmSettingsSchema
    .parse({})
    .capabilities.filter((c) => c !== "HANDSHAKE_IN_CLEAR" && c !== "PSK_WITH_CONTEXT"),
  "PSK",
];

describe.skipIf(!BIN)("DMTF spdm-emu tools against the doe-emu SPDM responder", () => {
  const tmp = mkdtempSync(join(tmpdir(), "doe-emu-interop-"));
  const config = (name: string, spdm: object) => {
    const file = join(tmp, `${name}.json`);
    writeFileSync(file, JSON.stringify({ spdm }));
    return ["--config", file];
  };
  const smallTransfers = config("small-transfers", { dataTransferSize: 42 });
  const encrypted = config("encrypted-handshake", { capabilities: ENCRYPTED_HANDSHAKE });
  const smallEncrypted = config("small-encrypted", {
    dataTransferSize: 42,
    capabilities: ENCRYPTED_HANDSHAKE,
  });
  // A slow device: libspdm's requester sleeps the hinted 2^14 µs and sends RESPOND_IF_READY.
  const notReady = config("not-ready", {
    notReady: { requests: ["CHALLENGE", "GET_MEASUREMENTS", "KEY_EXCHANGE"], rdtExponent: 14, delayMs: 5 },
  });

  it.each([
    ["SPDM 1.4 (both defaults), sessions, DMTF's ECDSA P-384 chain", slot0("ecp384"), SESSIONS],
    ["SPDM 1.3, sessions, DMTF's ECDSA P-384 chain", slot0("ecp384"), ["--ver", "1.3", ...SESSIONS]],
    ["SPDM 1.2, sessions, DMTF's ECDSA P-384 chain", slot0("ecp384"), ["--ver", "1.2", ...SESSIONS]],
    [
      "SPDM 1.2, sessions, ECDSA P-256, SHA-256, DMTF's P-256 chain",
      slot0("ecp256"),
      ["--ver", "1.2", "--asym", "ECDSA_P256", "--hash", "SHA_256", ...SESSIONS],
    ],
    [
      "SPDM 1.4, sessions with secp256r1 and ChaCha20-Poly1305",
      slot0("ecp384"),
      ["--dhe", "SECP_256_R1", "--aead", "CHACHA20_POLY1305", ...SESSIONS],
    ],
    ["SPDM 1.4, sessions with FFDHE 3072", slot0("ecp384"), ["--dhe", "FFDHE_3072", ...SESSIONS]],
    [
      "SPDM 1.4, sessions with secp521r1, AES-128-GCM and SHA-512",
      slot0("ecp384"),
      ["--dhe", "SECP_521_R1", "--aead", "AES_128_GCM", "--hash", "SHA_512", ...SESSIONS],
    ],
    [
      "SPDM 1.4, sessions, FINISH under the handshake keys, PSK without PSK_FINISH",
      [...slot0("ecp384"), ...encrypted],
      SESSIONS,
    ],
    // The requester's trust anchors are DMTF's roots: ours only gets LIBSPDM_STATUS_VERIF_NO_AUTHORITY,
    // a warning; the chain itself (signatures, leaf profile, RootHash) must pass.
    ["SPDM 1.4, sessions, our generated chain", [], SESSIONS],
    ["every message chunked (our DataTransferSize 42), sessions", smallTransfers, SESSIONS],
    ["every message chunked, FINISH in chunks under the handshake keys", smallEncrypted, SESSIONS],
    ["SPDM 1.0 (requester defaults: no sessions before 1.1)", slot0("ecp384"), ["--ver", "1.0"]],
    [
      "ResponseNotReady to CHALLENGE, GET_MEASUREMENTS and KEY_EXCHANGE, then RESPOND_IF_READY",
      [...slot0("ecp384"), ...notReady],
      ["--exe_session", "KEY_EX"],
    ],
    [
      "SPDM 1.4, sessions with mutual authentication, DMTF's RSA-3072 requester chain",
      [...slot0("ecp384"), ...mutAuth("rsa3072")],
      SESSIONS,
    ],
    [
      "SPDM 1.2, mutual authentication under the handshake keys, DMTF's ECDSA P-384 requester chain",
      [...slot0("ecp384"), ...encrypted, ...mutAuth("ecp384")],
      ["--ver", "1.2", "--req_asym", "ECDSA_P384", ...SESSIONS],
    ],
    [
      "SPDM 1.1, sessions, RSASSA-3072, DMTF's RSA chain",
      slot0("rsa3072"),
      ["--ver", "1.1", "--asym", "RSASSA_3072", ...SESSIONS],
    ],
  ])("spdm_requester_emu: %s", async (_title, deviceArgs, requesterArgs) => {
    await against(deviceArgs, async (port) => {
      const { code, output } = await runTool(
        "spdm_requester_emu",
        ["--trans", "PCI_DOE", "--port", String(port), ...requesterArgs],
        bin("."),
      );
      expect(output).not.toMatch(/fail|error/i);
      expect(output).toContain("Client stopped");
      expect(code, output).toBe(0);
    });
  });

  it("spdm_requester_emu --pcap and our device --pcap hold the same records; decode opens every session with our key log", async () => {
    const dir = mkdtempSync(join(tmp, "capture-"));
    const keys = join(dir, "device.keys");
    await against([...slot0("ecp384"), "--pcap", join(dir, "device"), "--keylog", keys], async (port) => {
      const { code, output } = await runTool(
        "spdm_requester_emu",
        ["--trans", "PCI_DOE", "--port", String(port), ...SESSIONS, "--pcap", join(dir, "emu.pcap")],
        bin("."),
      );
      expect(code, output).toBe(0);
    });
    const emu = decodePcap(readFileSync(join(dir, "emu.pcap")));
    const [ours] = readdirSync(join(dir, "device"));
    const device = decodePcap(readFileSync(join(dir, "device", ours!)));
    expect(device.header).toEqual(emu.header);
    // The same objects in the same order; only the timestamps differ (spdm-emu's have no microseconds).
    expect(device.records.map((r) => r.data)).toEqual(emu.records.map((r) => r.data));
    const keyLog = parseKeyLog(readFileSync(keys, "utf8"));
    const decoded = decodeRecords(emu.records, keyLog);
    expect(decoded.filter((d) => d.error)).toEqual([]);
    const secured = decoded.filter((d) => d.secured?.decrypted).length;
    expect(secured).toBeGreaterThan(20);
    if (!SPDM_DUMP) return;
    // DMTF's spdm_dump decrypts our capture with what the key log gives, as its options take it.
    const secrets = keyLog.flatMap(({ input }) =>
      "psk" in input
        ? ["--psk", Buffer.from(input.psk).toString("hex")]
        : ["--dhe_secret", Buffer.from(input.dheSecret).toString("hex")],
    );
    const { output } = await runTool(SPDM_DUMP, ["-r", join(dir, "device", ours!), ...secrets], dir);
    expect(output).not.toContain("(?)");
    expect(output.match(/SecuredSPDM\(0x[0-9a-f]+\) SPDM\(/g)).toHaveLength(secured);
  });

  it("spdm_requester_emu signing FINISH with a key other than the provisioned chain's: ERROR DecryptError", async () => {
    const other = await generateCertChain({ asym: "RSAPSS_3072", role: "requester" });
    const chain = writeChainFiles(tmp, "other-requester", other).certchainDer;
    await against([...slot0("ecp384"), "--mut-auth-cert-chain", chain], async (port) => {
      const { code, output } = await runTool(
        "spdm_requester_emu",
        ["--trans", "PCI_DOE", "--port", String(port), "--exe_session", "KEY_EX"],
        bin("."),
      );
      expect(output).toMatch(/ERROR: libspdm_start_session/);
      expect(code).not.toBe(0);
    });
  }, 30_000);

  it("spdm_requester_emu with its defaults, three times against one device with examples/dmtf-requester.json, then with --exe_session KEY_EX,PSK,APP: exit 0 each time, every APP block served", async () => {
    const logFile = join(mkdtempSync(join(tmpdir(), "doe-emu-app-")), "device.log");
    const fd = openSync(logFile, "w");
    const config = join(packageRoot(), "examples", "dmtf-requester.json");
    const device = await spawnDevice({
      args: [...slot0("ecp384"), "--config", config, "--on-shutdown", "close"],
      stderr: fd,
    });
    const port = ["--trans", "PCI_DOE", "--port", String(device.mailboxes[0]!.endpoint.port)];
    try {
      for (const args of [[], [], [], ["--exe_session", "KEY_EX,PSK,APP"]]) {
        const { code, output } = await runTool("spdm_requester_emu", [...port, ...args], bin("."));
        expect(output).not.toMatch(/fail|error/i);
        expect(code).toBe(0);
      }
    } finally {
      await device.stop();
      closeSync(fd);
    }
    // DMTF's Release build prints nothing of its APP step: count what our device did. The default
    // run has two sessions with APP (KEY_EX, PSK), so 3 default runs and one KEY_EX,PSK,APP run: 8.
    const messages = readFileSync(logFile, "utf8")
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg: string; to?: string });
    const count = (msg: string) => messages.filter((m) => m.msg === msg).length;
    const sessions = 8;
    expect([count("IDE-KM KEY_PROG"), count("IDE-KM K_SET_GO"), count("IDE-KM K_SET_STOP")]).toEqual(
      [6, 6, 6].map((n) => n * sessions),
    );
    expect(count("TDI state changed")).toBe(3 * sessions);
    const cxl = ["GET_KEY", "KEY_PROG", "K_SET_GO", "K_SET_STOP"].map((m) => count(`CXL IDE-KM ${m}`));
    expect(cxl).toEqual([1, 2, 2, 2].map((n) => n * sessions));
    expect(count("vendor-defined request not served")).toBe(0);
  }, 60_000);

  const multiKey = config("multi-key", {
    capabilities: [...spdmSettingsSchema.parse({}).capabilities, "GET_KEY_PAIR_INFO", "MULTI_KEY_NEG"],
  });
  it.each([
    ["", []],
    // It leaves MULTI_KEY_CONN out: a single-key connection with a device that offers multi-key.
    [" against MULTI_KEY_NEG", multiKey],
  ])(
    "spdm_device_validator_sample%s: DMTF's responder conformance tests all pass",
    async (_name, extra) => {
      // It writes test.log into its working directory: a scratch one holding links to the keys.
      const cwd = mkdtempSync(join(tmp, "validator-"));
      for (const dir of ["ecp256", "ecp384", "ecp521", "rsa2048", "rsa3072", "rsa4096"])
        symlinkSync(bin(dir), join(cwd, dir));
      await against([...slot0("ecp384"), ...extra], async (port) => {
        const { code, output } = await runTool(
          "spdm_device_validator_sample",
          ["--trans", "PCI_DOE", "--port", String(port)],
          cwd,
        );
        expect(code, output).toBe(0);
      });
      const log = readFileSync(join(cwd, "test.log"), "utf8");
      const suite = /test suite \(spdm_responder_conformance_test\) - pass: (\d+), fail: (\d+)/.exec(log);
      expect(suite, log.slice(-2000)).not.toBeNull();
      expect(Number(suite![1])).toBeGreaterThan(800);
      expect(
        Number(suite![2]),
        log
          .split("\n")
          .filter((l) => l.includes("FAIL"))
          .join("\n"),
      ).toBe(0);
    },
    120_000,
  );
});
