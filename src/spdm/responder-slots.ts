/**
 * Certificate slots (DSP0274 GET_DIGESTS, GET_CERTIFICATE): the chain and private key behind each
 * slot ID.
 *
 * A slot is loaded (certificate chain and key files, e.g. DMTF's samples) or generated. An SPDM
 * slot holds one key, yet a connection only fixes its asym algorithm at NEGOTIATE_ALGORITHMS, so:
 * - a loaded slot serves the asym algorithms its key fits (an RSA key: RSASSA and RSAPSS of its size);
 * - a generated slot serves every algorithm: it holds one chain per algorithm, generated the first
 *   time a connection negotiates it and kept for the life of the process (shared by all mailboxes
 *   of the device, so every mailbox shows the same identity). ECDSA chains take milliseconds; an
 *   RSA-4096 chain can take seconds, once, inside that NEGOTIATE_ALGORITHMS.
 * The responder offers only asym algorithms some slot serves; a connection sees the slots serving
 * the algorithm it negotiated.
 */
import type { KeyObject } from "node:crypto";
import { maskOf } from "../bits.js";
import { loadChainAndKey } from "../crypto/cert-files.js";
import { generateCertChain } from "../crypto/certgen.js";
import { type AsymAlgo, keyFits } from "../crypto/suites.js";
import type { SlotSettings } from "./responder-settings.js";

export interface SlotKey {
  /** DER of each certificate, root first. */
  certsDer: Buffer[];
  /** The leaf's private key. */
  privateKey: KeyObject;
}

interface SlotSource {
  fits(asym: AsymAlgo): boolean;
  key(asym: AsymAlgo): Promise<SlotKey>;
}

function loaded(s: { certChain: string; privateKey: string }): SlotSource {
  // Refuses a key that is not the leaf's: every signature would fail at the requester.
  return fixed(loadChainAndKey(s.certChain, s.privateKey));
}

/** One chain and key: a loaded slot, or one SET_CERTIFICATE installed. */
function fixed(identity: SlotKey): SlotSource {
  const key = Promise.resolve(identity);
  return { fits: (asym) => keyFits(asym, identity.privateKey), key: () => key };
}

function generated(s: { commonName?: string }): SlotSource {
  const chains = new Map<AsymAlgo, Promise<SlotKey>>();
  return {
    fits: () => true,
    key(asym) {
      let chain = chains.get(asym);
      if (!chain) {
        chain = generateCertChain({ asym, commonName: s.commonName });
        chain.catch(() => chains.delete(asym)); // a failure is retried by the next connection
        chains.set(asym, chain);
      }
      return chain;
    },
  };
}

export class CertificateSlots {
  private constructor(private readonly sources: Map<number, SlotSource>) {}

  /**
   * Loads the files of loaded slots now, so that a bad file, or a key fitting none of the asym
   * algorithms we may negotiate (`asym`), stops the device at start-up.
   */
  static fromSettings(slots: readonly SlotSettings[], asym: readonly AsymAlgo[] = []): CertificateSlots {
    const sources = new Map<number, SlotSource>();
    for (const s of [...slots].sort((a, b) => a.slot - b.slot)) {
      try {
        const source = "generate" in s ? generated(s) : loaded(s);
        if (asym.length > 0 && !asym.some((a) => source.fits(a)))
          throw new Error(`its key fits none of the asym algorithms configured (${asym.join(", ")})`);
        sources.set(s.slot, source);
      } catch (e) {
        throw new Error(`SPDM slot ${s.slot}: ${(e as Error).message}`);
      }
    }
    return new CertificateSlots(sources);
  }

  /** The slots described, whether or not they serve the negotiated algorithm (1.3 SupportedSlotMask). */
  get supportedMask(): number {
    return maskOf([...this.sources.keys()].map((slot) => 1 << slot));
  }

  /** SET_CERTIFICATE: `key` replaces what the slot held, for every connection from now on. */
  install(slot: number, key: SlotKey): void {
    this.sources.set(slot, fixed(key));
  }

  /** SET_CERTIFICATE with Erase: the slot holds nothing any more. */
  erase(slot: number): void {
    this.sources.delete(slot);
  }

  canServe(asym: AsymAlgo): boolean {
    return [...this.sources.values()].some((s) => s.fits(asym));
  }

  /** Whether `slot` holds a key for `asym`. */
  slotServes(slot: number, asym: AsymAlgo): boolean {
    return this.sources.get(slot)?.fits(asym) ?? false;
  }

  /** The keys of the slots that serve `asym`, lowest slot first (generating chains on first use). */
  async forAsym(asym: AsymAlgo): Promise<Map<number, SlotKey>> {
    const serving = [...this.sources].filter(([, s]) => s.fits(asym));
    const keys = await Promise.all(serving.map(([, s]) => s.key(asym)));
    return new Map(serving.map(([slot], i) => [slot, keys[i]!]));
  }
}
