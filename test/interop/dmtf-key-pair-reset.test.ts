/**
 * SET_KEY_PAIR_RESET_CAP (1.4) with DMTF's pair, both ways, over the spdm-emu socket with PCI_DOE.
 * spdm_requester_emu's SET_KEY_PAIR_INFO step is a Change (key pair 1 dissociated) then an Erase;
 * libspdm's requester ends one answered ResetRequired with LIBSPDM_STATUS_RESET_REQUIRED_PEER
 * (0x80010012), and spdm_requester_emu stops its run there (exit 1) and sends SHUTDOWN, which ends
 * the responder.
 * - DMTF's own pair first: spdm_responder_emu with SET_KEY_PAIR_RESET added to its default
 *   capabilities (--cap), from a copy of SPDM_EMU_BIN (its sample device caches the pending request
 *   in a file of its working directory, cached_last_set_key_pair_info_request, and makes it when the
 *   same request comes again: the next run's Change is acknowledged and its Erase waits).
 * - spdm_requester_emu against our device with SET_KEY_PAIR_RESET: the same exit statuses and
 *   errors, run by run; starting the device again (same --state-dir) is the reset that makes the
 *   change, which state.json shows.
 * - Our requester against spdm_responder_emu --cap …,SET_KEY_PAIR_RESET: ResetRequired reported
 *   for the step, at the Change and, the next run, at the Erase.
 *
 * Skipped unless SPDM_EMU_BIN names spdm-emu's build/bin.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { KeyPairOperation } from "../../protocol/spdm/provision.js";
import { spawnDevice } from "../../src/fixture/spawn-device.js";
import { SPDM_EMU_BIN as BIN, startResponder, stopResponders } from "../../src/fixture/spdm-emu-responder.js";
import { runRequester } from "../../src/requester/run.js";
import { DEFAULT_CAPABILITIES } from "../../src/spdm/responder-settings.js";
import { bin, emuCopy, responderCaps, runTool, slot0 } from "../support/dmtf-tool.js";

const RESET_REQUIRED = "do_set_key_pair_info_via_spdm - 80010012";

const RESPONDER_CAPS = responderCaps("SET_KEY_PAIR_RESET");

const REQUESTER_ARGS = [
  ...["--trans", "PCI_DOE", "--exe_session", "KEY_EX"],
  ...["--exe_conn", "DIGEST,CERT,GET_KEY_PAIR_INFO,SET_KEY_PAIR_INFO"],
];

describe.skipIf(!BIN)("SET_KEY_PAIR_RESET with DMTF's pair", () => {
  afterEach(stopResponders);

  it("spdm_requester_emu's SET_KEY_PAIR_INFO against our device as against spdm_responder_emu", async () => {
    const emu = emuCopy();
    const dmtf = [];
    for (let i = 0; i < 2; i++) {
      const { port } = await startResponder(["--cap", RESPONDER_CAPS], undefined, emu);
      dmtf.push(await runTool("spdm_requester_emu", [...REQUESTER_ARGS, "--port", String(port)]));
    }
    expect(existsSync(join(emu, "cached_last_set_key_pair_info_request"))).toBe(true);

    const dir = mkdtempSync(join(tmpdir(), "doe-emu-kpreset-"));
    const config = join(dir, "device.json");
    const capabilities = [
      ...DEFAULT_CAPABILITIES,
      "GET_KEY_PAIR_INFO",
      "SET_KEY_PAIR_INFO",
      "SET_KEY_PAIR_RESET",
    ];
    writeFileSync(config, JSON.stringify({ spdm: { capabilities, slots: [{ slot: 0, generate: true }] } }));
    const args = ["--config", config, "--state-dir", join(dir, "state"), ...slot0()];
    const state = () => JSON.parse(readFileSync(join(dir, "state", "state.json"), "utf8"));
    // Each run against a freshly started device (its SHUTDOWN ends it): the start is the reset.
    const pendingOperations: number[] = [];
    for (const [i, theirs] of dmtf.entries()) {
      const device = await spawnDevice({ args });
      try {
        const port = String(device.mailboxes[0]!.endpoint.port);
        const { code, output } = await runTool("spdm_requester_emu", [...REQUESTER_ARGS, "--port", port]);
        expect(await device.exited, output).toBe(0);
        expect(theirs.code, theirs.output).toBe(1);
        expect(theirs.output).toContain(RESET_REQUIRED);
        expect(code, output).toBe(theirs.code);
        expect(output, `run ${i + 1}`).toContain(RESET_REQUIRED);
        pendingOperations.push(state().pending.keyPairs["1"].operation);
      } finally {
        await device.stop();
      }
    }
    // The first run's Change waited; the second's was made by the restart, and its Erase waits.
    expect(pendingOperations).toEqual([KeyPairOperation.Change, KeyPairOperation.Erase]);
    expect(state().keyPairs[0]).toMatchObject({ id: 1, assocMask: 0, erased: false });
  });

  it("our requester against spdm_responder_emu --cap …,SET_KEY_PAIR_RESET", async () => {
    const dir = emuCopy();
    const trustRoot = readFileSync(bin("ecp384/ca.cert.der"));
    for (let i = 0; i < 2; i++) {
      const { port } = await startResponder(["--cap", RESPONDER_CAPS], undefined, dir);
      const s = await runRequester(
        { host: "127.0.0.1", port },
        { trustRoot, provisionSteps: ["GET_KEY_PAIR_INFO", "SET_KEY_PAIR_INFO"] },
      );
      expect(s.version).toBe("1.4");
      expect(s.provisioning.keyPair).toMatchObject({ id: 1 });
      expect(s.provisioning.resetRequired).toEqual({ step: "SET_KEY_PAIR_INFO", tag: 0 });
      expect(s.provisioning.keyPairErased).toBeUndefined();
    }
  });
});
