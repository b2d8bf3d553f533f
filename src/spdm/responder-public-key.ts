/**
 * The responder's public-key mode (`spdm.publicKey`; public-key.ts has the rules): one key, named
 * slot 0xFF, instead of certificate slots. The negotiated connection holds it as the only entry of
 * its slot map, whose `chain` is then the key's SubjectPublicKeyInfo (what the transcripts hash),
 * so CHALLENGE, KEY_EXCHANGE and MEASUREMENTS sign with it as with any slot.
 */
import { type AsymAlgo, type HashAlgo, hash, keyFits, publicKeyDer } from "../crypto/suites.js";
import { PUBLIC_KEY_SLOT } from "./public-key.js";
import type { ResponderContext, SlotInUse } from "./responder-context.js";

type KeyContext = Pick<ResponderContext, "config" | "slots">;

/** Whether a connection negotiating `asym` has a key to sign with: the public key, or some slot's. */
export function servesAsym({ config, slots }: KeyContext, asym: AsymAlgo): boolean {
  const mode = config.publicKey;
  if (!mode) return slots.canServe(asym);
  return mode.privateKey ? keyFits(asym, mode.privateKey) : slots.slotServes(0, asym);
}

/** Public-key mode's slot map for the negotiated algorithms: 0xFF alone; undefined outside the mode. */
export async function publicKeySlots(
  { config, slots }: KeyContext,
  h: HashAlgo,
  asym: AsymAlgo,
): Promise<Map<number, SlotInUse> | undefined> {
  const mode = config.publicKey;
  if (!mode) return undefined;
  const privateKey = mode.privateKey ?? (await slots.forAsym(asym)).get(0)?.privateKey;
  if (!privateKey) throw new Error(`public-key mode: slot 0 holds no ${asym} key`);
  const der = publicKeyDer(privateKey);
  return new Map([[PUBLIC_KEY_SLOT, { chain: der, digest: hash(h, der), privateKey }]]);
}
