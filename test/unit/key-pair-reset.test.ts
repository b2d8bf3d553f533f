/**
 * SET_KEY_PAIR_RESET_CAP between our requester and our responder in one process: at 1.4 every
 * SET_KEY_PAIR_INFO is answered ResetRequired and made at the device's reset (Provisioning reset(),
 * what a restart or a PF's FLR calls), GET_KEY_PAIR_INFO reporting the key pair unchanged until
 * then; the same request after the reset is acknowledged; a 1.3 connection changes at once; the
 * pending change survives a restart with a state directory.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SpdmErrorCode } from "../../protocol/spdm/codes.js";
import { KeyPairOperation } from "../../protocol/spdm/provision.js";
import { authenticate } from "../../src/requester/connection.js";
import { Provisioning } from "../../src/spdm/provisioning.js";
import { SpdmRequester } from "../../src/spdm/requester.js";
import { SpdmResponder } from "../../src/spdm/responder.js";
import { responderConfig, spdmSettingsSchema } from "../../src/spdm/responder-settings.js";
import { CertificateSlots } from "../../src/spdm/responder-slots.js";

const SETTINGS = spdmSettingsSchema.parse({
  capabilities: ["CERT", "CHAL", "MEAS_SIG", "GET_KEY_PAIR_INFO", "SET_KEY_PAIR_INFO", "SET_KEY_PAIR_RESET"],
  slots: [
    { slot: 0, generate: true },
    { slot: 1, generate: true },
  ],
});

function device(stateDir?: string) {
  const slots = CertificateSlots.fromSettings(SETTINGS.slots);
  const provisioning = new Provisioning(slots, stateDir);
  const responder = new SpdmResponder({ ...responderConfig(SETTINGS), provisioning }, slots);
  const requester = (opts: ConstructorParameters<typeof SpdmRequester>[1] = {}) =>
    new SpdmRequester(
      { send: (b) => responder.handle(b) },
      { baseAsymAlgo: 0x10, connectionSteps: [], ...opts },
    );
  return { provisioning, requester };
}

/** SET_KEY_PAIR_INFO `operation` for `keyPairId`: the negotiated algorithm, associated with `assoc`. */
const setKeyPairInfo = (r: SpdmRequester, operation: number, keyPairId: number, assoc: number) => ({
  code: "SET_KEY_PAIR_INFO" as const,
  version: r.version,
  operation,
  keyPairId,
  desiredKeyUsage: 0,
  desiredAsymAlgo: 0,
  desiredAssocCertSlotMask: assoc,
  desiredPqcAsymAlgo: Buffer.alloc(4),
});
const change = (r: SpdmRequester, keyPairId: number, assoc: number) =>
  r.exchange(setKeyPairInfo(r, KeyPairOperation.Change, keyPairId, assoc));
/** Generate for key pair 2, no association. */
const generateOf = (r: SpdmRequester) => setKeyPairInfo(r, KeyPairOperation.Generate, 2, 0);
const info = async (r: SpdmRequester, keyPairId: number) =>
  (await r.exchange({ code: "GET_KEY_PAIR_INFO", version: r.version, keyPairId })).message;
const resetRequired = { code: "ERROR", errorCode: SpdmErrorCode.ResetRequired, errorData: 0 };

describe("SET_KEY_PAIR_RESET_CAP", () => {
  it("our requester's SET_KEY_PAIR_INFO step: ResetRequired, made at the reset, one step per reset", async () => {
    const { provisioning, requester } = device();
    const steps = { provisionSteps: ["SET_KEY_PAIR_INFO" as const] };
    const r = requester(steps);
    const first = await authenticate(r);
    expect(r.version).toBe(0x14);
    expect(first.provisioning.resetRequired).toEqual({ step: "SET_KEY_PAIR_INFO", tag: 0 });
    expect(first.provisioning.keyPairErased).toBeUndefined();
    // Until the reset the key pair is as it was; the same request is ResetRequired again.
    expect(await info(r, 1)).toMatchObject({ assocCertSlotMask: 1 });
    expect((await change(r, 1, 0)).message).toMatchObject(resetRequired);
    expect(provisioning.reset()).toBe(true);
    expect(provisioning.reset()).toBe(false);
    expect(await info(r, 1)).toMatchObject({ assocCertSlotMask: 0 });
    // The change, asked again, is acknowledged; the erase after it waits for the next reset.
    const second = await authenticate(requester(steps));
    expect(second.provisioning.resetRequired).toEqual({ step: "SET_KEY_PAIR_INFO", tag: 0 });
    expect(provisioning.keyPair(1)).toMatchObject({ erased: false, assocMask: 0 });
    provisioning.reset();
    expect(provisioning.keyPair(1)).toMatchObject({ erased: true });
    expect(await info(r, 1)).toMatchObject({ currentAsymAlgo: 0, publicKeyInfo: Buffer.alloc(0) });
  });

  it("checks first: a new key for an associated key pair is still OperationFailed, nothing waits", async () => {
    const { provisioning, requester } = device();
    const r = requester();
    await authenticate(r);
    // Key pair 2 is associated with slot 1: Generate needs it dissociated first.
    expect((await r.exchange(generateOf(r))).message).toMatchObject({
      code: "ERROR",
      errorCode: SpdmErrorCode.OperationFailed,
    });
    expect(provisioning.pendingKeyPairs.size).toBe(0);
    // A later change for the same key pair replaces the one waiting.
    expect((await change(r, 2, 0)).message).toMatchObject(resetRequired);
    expect((await change(r, 2, 1 << 1)).message).toMatchObject(resetRequired);
    provisioning.reset();
    expect(provisioning.keyPair(2)).toMatchObject({ assocMask: 2 });
  });

  it("a 1.3 connection has no SET_KEY_PAIR_RESET_CAP: the change is made at once", async () => {
    const { provisioning, requester } = device();
    const r = requester({ versions: [0x13], provisionSteps: ["SET_KEY_PAIR_INFO"] });
    const s = await authenticate(r);
    expect(s.provisioning.keyPairErased).toBe(1);
    expect(provisioning.pendingKeyPairs.size).toBe(0);
  });

  it("a pending change survives a restart with a state directory, which makes it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "doe-emu-kpreset-"));
    const before = device(dir);
    const r = before.requester();
    await authenticate(r);
    expect((await change(r, 2, 0)).message).toMatchObject(resetRequired);
    const restarted = device(dir);
    expect(restarted.provisioning.keyPair(2)).toMatchObject({ assocMask: 0 });
    const again = restarted.requester();
    await authenticate(again);
    // The new key is made at the reset: until then KEY_PAIR_INFO reports the old one.
    const { publicKeyInfo } = (await info(again, 2)) as { publicKeyInfo: Buffer };
    expect((await again.exchange(generateOf(again))).message).toMatchObject(resetRequired);
    expect(await info(again, 2)).toMatchObject({ publicKeyInfo });
    const third = device(dir);
    expect(third.provisioning.keyPair(2)!.generated?.asym).toBe("ECDSA_P256");
    expect(third.provisioning.pendingKeyPairs.get(2)?.ready).toBe(true);
  });

  it("needs SET_KEY_PAIR_INFO", () => {
    const parsed = spdmSettingsSchema.safeParse({
      capabilities: ["CERT", "GET_KEY_PAIR_INFO", "SET_KEY_PAIR_RESET"],
    });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.message).toBe("SET_KEY_PAIR_RESET needs SET_KEY_PAIR_INFO");
  });
});
