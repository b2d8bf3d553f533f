/**
 * Public-key mode (PUB_KEY_ID_CAP, slot 0xFF) against DMTF's programs, both directions, with
 * DMTF's sample keys: the responder's `end_responder.key` (its public half `end_responder.key.pub.der`
 * is what spdm_requester_emu `--slot_id 0xFF` provisions) and the requester's `end_requester.key`
 * (`--req_slot_id 0xFF`: mutual authentication, FINISH signed for the provisioned public key).
 * Skipped unless SPDM_EMU_BIN names spdm-emu's build/bin.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadPrivateKeyFile, loadPublicKeyFile } from "../../src/crypto/cert-files.js";
import { hash } from "../../src/crypto/suites.js";
import { spawnDevice } from "../../src/fixture/spawn-device.js";
import {
  exited,
  RESPONDER_BASE_ARGS,
  SPDM_EMU_BIN,
  startResponder,
  stopResponders,
} from "../../src/fixture/spdm-emu-responder.js";
import { authenticate } from "../../src/requester/connection.js";
import { runSessionRequester, withRequester } from "../../src/requester/run.js";
import { bin, runTool } from "../support/dmtf-tool.js";

/** Every session step of spdm_requester_emu we implement (its default minus APP). */
const SESSIONS = ["--exe_session", "KEY_EX,PSK,KEY_UPDATE,HEARTBEAT,MEAS,DIGEST,CERT"];

afterEach(stopResponders);

describe.skipIf(!SPDM_EMU_BIN)("public-key mode (slot 0xFF) against DMTF's spdm-emu", () => {
  const tmp = mkdtempSync(join(tmpdir(), "doe-emu-pubkey-"));
  /** A device description: DMTF's P-384 responder key in slot 0, public-key mode, and `extra`. */
  const description = (name: string, extra: object = {}) => {
    const file = join(tmp, `${name}.json`);
    const slot = {
      slot: 0,
      certChain: bin("ecp384/bundle_responder.certchain.der"),
      privateKey: bin("ecp384/end_responder.key"),
    };
    writeFileSync(file, JSON.stringify({ spdm: { slots: [slot], publicKey: {}, ...extra } }));
    return ["--config", file];
  };

  it.each([
    ["CHALLENGE, signed MEASUREMENTS and sessions for slot 0xFF", description("plain"), SESSIONS],
    [
      "mutual authentication with DMTF's provisioned RSA-3072 requester public key",
      description("mutual", {
        mutualAuth: { requesterPublicKey: bin("rsa3072/end_requester.key.pub.der") },
      }),
      ["--req_slot_id", "0xFF", ...SESSIONS],
    ],
    [
      "SPDM 1.2, mutual authentication with the provisioned ECDSA P-384 requester public key",
      description("mutual-ecp384", {
        mutualAuth: { requesterPublicKey: bin("ecp384/end_requester.key.pub.der") },
      }),
      ["--ver", "1.2", "--req_asym", "ECDSA_P384", "--req_slot_id", "0xFF", ...SESSIONS],
    ],
    [
      "basic mutual authentication: our encapsulated CHALLENGE to requester slot 0xFF, then a mutually authenticated session",
      description("basic", {
        mutualAuth: { requesterPublicKey: bin("rsa3072/end_requester.key.pub.der"), basic: "BASIC" },
      }),
      ["--req_slot_id", "0xFF", ...SESSIONS],
    ],
  ])("spdm_requester_emu --slot_id 0xFF: %s", async (_name, deviceArgs, requesterArgs) => {
    const device = await spawnDevice({ args: deviceArgs });
    try {
      const port = device.mailboxes[0]!.endpoint.port;
      const r = await runTool("spdm_requester_emu", [
        "--trans",
        "PCI_DOE",
        "--port",
        String(port),
        "--slot_id",
        "0xFF",
        ...requesterArgs,
      ]);
      expect(r.output).not.toMatch(/fail|error/i);
      expect(r.code, r.output).toBe(0);
    } finally {
      await device.stop();
    }
  });

  it("our requester --rsp-public-key against spdm_responder_emu --slot_id 0xFF: CHALLENGE, MEASUREMENTS, a KEY_EX session", async () => {
    const rsp = await startResponder(["--slot_id", "0xFF"]);
    const keyFile = bin("ecp384/end_responder.key.pub.der");
    const out = await runSessionRequester(
      { host: "127.0.0.1", port: rsp.port },
      { responderPublicKey: loadPublicKeyFile(keyFile), session: { kind: "KEY_EX" } },
    );
    const c = out.connection;
    expect(c.responderCapabilities).toContain("PUB_KEY_ID_CAP");
    expect(c.responderCapabilities).not.toContain("CERT_CAP");
    expect(c.slot).toBe(0xff);
    expect(c.certificateChain).toBeUndefined();
    expect(c.publicKeyDigest).toBe(hash("SHA_384", readFileSync(keyFile)).toString("hex"));
    expect(c.challenge?.summaryHashChecked).toBe(true);
    expect(c.measurements).toMatchObject({ signed: true });
    expect(out.session.measurements).toMatchObject({ signed: true });
    expect(await exited(rsp.child), rsp.command).toBe(0);
  });

  it("our requester --req-public-key answers spdm_responder_emu's encapsulated CHALLENGE to slot 0xFF (basic mutual authentication)", async () => {
    const rsp = await startResponder([
      "--basic_mut_auth",
      "BASIC",
      "--slot_id",
      "0xFF",
      "--req_slot_id",
      "0xFF",
    ]);
    const summary = await withRequester(
      { host: "127.0.0.1", port: rsp.port },
      {
        responderPublicKey: loadPublicKeyFile(bin("ecp384/end_responder.key.pub.der")),
        requesterPublicKey: true,
        requesterKey: loadPrivateKeyFile(bin("rsa3072/end_requester.key")),
      },
      false,
      authenticate,
    );
    expect(summary.requesterCapabilities).toContain("PUB_KEY_ID_CAP");
    expect(summary.challenge?.basicMutualAuth).toEqual(["CHALLENGE"]);
    expect(await exited(rsp.child), rsp.command).toBe(0);
  });

  // spdm-emu's responder with --req_slot_id 0xFF asks for mutual authentication with ReqSlotIDParam 0
  // (its sample library's libspdm_key_exchange_start_mut_auth), which DSP0274 and libspdm's own
  // requester refuse for a requester with PUB_KEY_ID_CAP (DMTF's pair stops there with
  // LIBSPDM_STATUS_INVALID_MSG_FIELD); ours refuses it the same way, after CHALLENGE and MEASUREMENTS.
  it("our requester --req-public-key refuses spdm_responder_emu's ReqSlotIDParam 0, as libspdm's requester does", async () => {
    const rsp = await startResponder(["--slot_id", "0xFF", "--req_slot_id", "0xFF"], RESPONDER_BASE_ARGS);
    const run = runSessionRequester(
      { host: "127.0.0.1", port: rsp.port },
      {
        responderPublicKey: loadPublicKeyFile(bin("ecp384/end_responder.key.pub.der")),
        requesterPublicKey: true,
        requesterKey: loadPrivateKeyFile(bin("rsa3072/end_requester.key")),
        session: { kind: "KEY_EX" },
      },
    );
    await expect(run).rejects.toThrow("KEY_EXCHANGE_RSP MutAuthRequested 0x1 names requester slot 0x0");
  });
});
