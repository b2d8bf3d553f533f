/**
 * spdm-emu's OOB commands through a bouncer, over real sockets: our requester, pointed at a
 * Bouncer in front of our device process (mutual authentication through encapsulated requests),
 * runs the EP_INFO step (OOB_ENCAP_ENDPOINT_INFO, then the device's GET_ENDPOINT_INFO) and a session
 * with the responder's key update (OOB_ENCAP_KEY_UPDATE, then the device's KEY_UPDATE), as it does
 * against the device directly.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeChainFiles } from "../../src/crypto/cert-files.js";
import { type GeneratedCertChain, generateCertChain } from "../../src/crypto/certgen.js";
import { type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import { Bouncer } from "../../src/host/bouncer.js";
import { silentLogger } from "../../src/log.js";
import { runRequester, runSessionRequester } from "../../src/requester/run.js";
import { DEFAULT_CAPABILITIES } from "../../src/spdm/responder-settings.js";

let requester: GeneratedCertChain;
let device: SpawnedDevice;
let bouncer: Bouncer;

beforeAll(async () => {
  requester = await generateCertChain({ asym: "ECDSA_P384", role: "requester" });
  const dir = mkdtempSync(join(tmpdir(), "doe-emu-bounce-oob-"));
  const files = writeChainFiles(dir, "requester", requester);
  const config = join(dir, "device.json");
  const capabilities = [...DEFAULT_CAPABILITIES, "EP_INFO_SIG", "ENCAP"];
  writeFileSync(
    config,
    JSON.stringify({ spdm: { capabilities, mutualAuth: { mode: "W_ENCAP", trustRoot: files.rootDer } } }),
  );
  device = await spawnDevice({ args: ["--config", config] });
  const mailbox = device.mailboxes[0]!.endpoint;
  bouncer = await Bouncer.start({
    targets: { cma: mailbox, secured: mailbox },
    host: "127.0.0.1",
    timeoutMs: 10_000,
    log: silentLogger,
  });
}, 30_000);
afterAll(async () => {
  await bouncer?.close();
  await device?.stop();
});

const common = () => ({
  exeMode: "CONTINUE" as const,
  timeoutMs: 20_000,
  requesterCertChain: requester.certsDer,
  requesterKey: requester.privateKey,
});

describe("OOB commands through the bouncer, our requester -> our device", () => {
  it("EP_INFO: OOB_ENCAP_ENDPOINT_INFO reaches the device, its GET_ENDPOINT_INFO follows, signed", {
    timeout: 30_000,
  }, async () => {
    const before = bouncer.stats.outOfBand;
    const s = await runRequester(bouncer.address, { ...common(), provisionSteps: ["EP_INFO"] });
    const e = s.provisioning.endpointInfo;
    expect(e).toMatchObject({ bytes: 12, signed: true, encapsulated: { signed: true } });
    expect(e?.encapsulated?.requests.at(-1)).toBe("GET_ENDPOINT_INFO");
    expect(bouncer.stats.outOfBand - before).toBe(1);
  });

  it("a session with the responder's key update: OOB_ENCAP_KEY_UPDATE, then the device's KEY_UPDATE", {
    timeout: 30_000,
  }, async () => {
    const before = bouncer.stats.outOfBand;
    const { session } = await runSessionRequester(bouncer.address, {
      ...common(),
      session: { kind: "KEY_EX", responderKeyUpdate: true },
    });
    expect(session.skipped).toEqual([]);
    // The steps after it ran under the device's new key.
    expect(session.steps.slice(-3)).toEqual([
      "KEY_UPDATE by the responder (encapsulated)",
      "HEARTBEAT",
      "END_SESSION",
    ]);
    expect(bouncer.stats.outOfBand - before).toBe(1);
    expect(bouncer.stats).toMatchObject({ invalidRequest: 0, missingMailbox: 0, upstreamError: 0 });
  });
});
