/**
 * What a device provisions at run time (DSP0274 SET_CERTIFICATE, SET_KEY_PAIR_INFO) and keeps for
 * every later connection: chains installed into certificate slots, and the key pairs
 * GET_KEY_PAIR_INFO describes. With a state directory (`doe-emu device --state-dir DIR`) it also
 * survives a restart: DIR/state.json is rewritten atomically (temporary file, then rename) after
 * each change, and read at start-up, where a file that does not parse is an error naming it.
 *
 * Key pairs: one per slot of the description, KeyPairID 1.. in slot order. A key pair's key is its
 * slot's (for a generated slot, the chain of the negotiated algorithm) until SET_KEY_PAIR_INFO
 * generates a new one. Usage, association and erasure are the key pair's record as GET_KEY_PAIR_INFO
 * reports it: the slots keep signing with their own keys, as libspdm's sample device does (its
 * key-pair store is separate from its signing keys).
 *
 * With CERT_INSTALL_RESET_CAP the device defers: SET_CERTIFICATE's chain (or erasure) and GET_CSR's
 * request wait here (pending) until the device is reset, which reset() is: the device's start (so a
 * restart with the state directory completes them) or a physical function's FLR. With
 * SET_KEY_PAIR_RESET_CAP a key pair's SET_KEY_PAIR_INFO change waits the same way. Pending work is
 * saved with the rest.
 */

import type { KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as z from "zod";
import { KeyUsage } from "../../protocol/spdm/codes.js";
import { KeyPairOperation } from "../../protocol/spdm/provision.js";
import { bitIndices, maskOf } from "../bits.js";
import { generateKey, privateKeyFromPkcs8 } from "../crypto/csr.js";
import { ASYM, type AsymAlgo } from "../crypto/suites.js";
import type { CertificateSlots, SlotKey } from "./responder-slots.js";

/** What a key pair may be used for: the four DSP0274 usages this responder signs with. */
export const KEY_PAIR_USAGES =
  KeyUsage.KEY_EX_USE | KeyUsage.CHALLENGE_USE | KeyUsage.MEASUREMENT_USE | KeyUsage.ENDPOINT_INFO_USE;

export interface KeyPair {
  id: number;
  /** The described slot whose key this is (unless one was generated). */
  slot: number;
  usage: number;
  assocMask: number;
  erased: boolean;
  /** SET_KEY_PAIR_INFO's generate operation. */
  generated?: { asym: AsymAlgo; key: KeyObject };
}

/** A checked SET_KEY_PAIR_INFO: what it does to its key pair. */
export interface KeyPairChange {
  id: number;
  /** KeyPairOperation. */
  operation: number;
  /** DesiredKeyUsage (0: unchanged), DesiredAsymAlgo as asked, DesiredAssocCertSlotMask. */
  usage: number;
  algo: number;
  assocMask: number;
  /** Generate: the new key's algorithm. */
  asym?: AsymAlgo;
}

/** SET_KEY_PAIR_RESET_CAP: a key pair's change waiting for (or made by) the next reset. */
export interface PendingKeyPairChange {
  change: KeyPairChange;
  /** A reset has made the change since. */
  ready: boolean;
}

/** A GET_CSR the device completes at its next reset. */
export interface PendingCsr {
  /** The request that retrieves it (with its CSRTrackingTag, without Overwrite). */
  request: Buffer;
  csr: Buffer;
  /** A reset has happened since: the CSR may be retrieved. */
  ready: boolean;
}

const b64 = z.string().transform((s) => Buffer.from(s, "base64"));
/** By slot ID: a chain (DER certificates, root first) and key, or null when erased. */
const slotsSchema = z.record(
  z.string().regex(/^[0-7]$/),
  z.strictObject({ certs: z.array(b64).min(1), key: b64 }).nullable(),
);
const stateSchema = z.strictObject({
  version: z.literal(1),
  slots: slotsSchema,
  /** CERT_INSTALL_RESET_CAP: what waits for the next reset (absent when nothing does). */
  pending: z
    .strictObject({
      slots: slotsSchema,
      /** By CSRTrackingTag (0: a request before 1.3, which has none). */
      csrs: z.record(
        z.string().regex(/^[0-7]$/),
        z.strictObject({ request: b64, csr: b64, ready: z.boolean() }),
      ),
      /** SET_KEY_PAIR_RESET_CAP: by KeyPairID. */
      keyPairs: z
        .record(
          z.string().regex(/^[1-9]\d{0,2}$/),
          z.strictObject({
            operation: z.number().int().min(0).max(KeyPairOperation.Generate),
            usage: z.number().int().min(0).max(0xffff),
            algo: z.number().int().min(0).max(0xffff_ffff),
            assocMask: z.number().int().min(0).max(0xff),
            asym: z.enum(Object.keys(ASYM) as [AsymAlgo]).optional(),
            ready: z.boolean(),
          }),
        )
        .optional(),
    })
    .optional(),
  keyPairs: z.array(
    z.strictObject({
      id: z.number().int().min(1).max(0xff),
      usage: z.number().int().min(0).max(0xffff),
      assocMask: z.number().int().min(0).max(0xff),
      erased: z.boolean(),
      generated: z.strictObject({ asym: z.enum(Object.keys(ASYM) as [AsymAlgo]), key: b64 }).optional(),
    }),
  ),
});

const STATE_FILE = "state.json";
const pkcs8 = (k: KeyObject) => k.export({ type: "pkcs8", format: "der" }).toString("base64");

export class Provisioning {
  readonly keyPairs: KeyPair[];
  /** Slots SET_CERTIFICATE changed: the installed identity, or null for an erased slot. */
  private readonly installed = new Map<number, SlotKey | null>();
  /** SET_CERTIFICATE waiting for a reset, by slot (null: erase). */
  private readonly pendingSlots = new Map<number, SlotKey | null>();
  /** GET_CSR waiting for (or completed by) a reset, by CSRTrackingTag (0: a request before 1.3). */
  readonly pendingCsrs = new Map<number, PendingCsr>();
  /** SET_KEY_PAIR_INFO waiting for (or made by) a reset, by KeyPairID. */
  readonly pendingKeyPairs = new Map<number, PendingKeyPairChange>();

  /**
   * The described slots of `slots` give the key pairs. Loads `stateDir`'s state (and applies its
   * slots to `slots`) when there is one.
   */
  constructor(
    private readonly slots: CertificateSlots,
    private readonly stateDir?: string,
  ) {
    this.keyPairs = bitIndices(slots.supportedMask).map((slot, i) => ({
      id: i + 1,
      slot,
      usage: KEY_PAIR_USAGES,
      assocMask: 1 << slot,
      erased: false,
    }));
    if (stateDir) this.load(stateDir);
    // Starting is a reset: what waited for one completes.
    this.reset();
  }

  keyPair(id: number): KeyPair | undefined {
    return this.keyPairs.find((k) => k.id === id);
  }

  /** SET_CERTIFICATE: the chain and key now in `slot`. */
  install(slot: number, key: SlotKey): void {
    this.place(slot, key);
    this.save();
  }

  erase(slot: number): void {
    this.place(slot, null);
    this.save();
  }

  /** `slot` now holds `key`'s chain, or is erased (null); remembered for the state directory. */
  private place(slot: number, key: SlotKey | null): void {
    this.installed.set(slot, key);
    if (key) this.slots.install(slot, key);
    else this.slots.erase(slot);
  }

  /** SET_CERTIFICATE that takes effect at the next reset: a chain and key, or null to erase. */
  defer(slot: number, key: SlotKey | null): void {
    this.pendingSlots.set(slot, key);
    this.save();
  }

  /** Slots whose SET_CERTIFICATE waits for a reset. */
  get pendingSlotMask(): number {
    return maskOf([...this.pendingSlots.keys()].map((s) => 1 << s));
  }

  /** GET_CSR: a CSR that a reset completes, under its tag. */
  deferCsr(tag: number, request: Buffer, csr: Buffer): void {
    this.pendingCsrs.set(tag, { request, csr, ready: false });
    this.save();
  }

  /** Overwrite, or a retrieved CSR: `tag`'s (or every) pending CSR is dropped. */
  dropCsrs(tag?: number): void {
    if (tag === undefined) this.pendingCsrs.clear();
    else this.pendingCsrs.delete(tag);
    this.save();
  }

  /** SET_KEY_PAIR_INFO: the key pair changes now. */
  changeKeyPair(change: KeyPairChange): void {
    this.apply(change);
    this.save();
  }

  /** SET_KEY_PAIR_INFO that takes effect at the next reset (replacing one waiting for the key pair). */
  deferKeyPairChange(change: KeyPairChange): void {
    this.pendingKeyPairs.set(change.id, { change, ready: false });
    this.save();
  }

  /** A change the reset made, acknowledged: forgotten. */
  dropKeyPairChange(id: number): void {
    this.pendingKeyPairs.delete(id);
    this.save();
  }

  private apply({ id, operation, usage, assocMask, asym }: KeyPairChange): void {
    const kp = this.keyPair(id);
    if (!kp) return; // a pending change for a key pair the description no longer has
    if (operation === KeyPairOperation.Erase) Object.assign(kp, { erased: true, generated: undefined });
    else {
      if (operation === KeyPairOperation.Generate)
        Object.assign(kp, { erased: false, generated: { asym, key: generateKey(asym!) } });
      if (usage !== 0) kp.usage = usage;
      kp.assocMask = assocMask;
    }
  }

  /**
   * The device's reset: pending chains are installed (or slots erased), pending CSRs become
   * retrievable, pending key-pair changes are made. Whether anything was waiting.
   */
  reset(): boolean {
    const waiting = [...this.pendingCsrs.values()].filter((p) => !p.ready);
    const changes = [...this.pendingKeyPairs.values()].filter((p) => !p.ready);
    if (this.pendingSlots.size === 0 && waiting.length === 0 && changes.length === 0) return false;
    for (const p of changes) {
      this.apply(p.change);
      p.ready = true;
    }
    for (const [slot, key] of this.pendingSlots) this.place(slot, key);
    this.pendingSlots.clear();
    for (const p of waiting) p.ready = true;
    this.save();
    return true;
  }

  /** A key pair's record changed. */
  save(): void {
    if (!this.stateDir) return;
    const slots = (m: Map<number, SlotKey | null>) =>
      Object.fromEntries(
        [...m].map(([slot, k]) => [
          String(slot),
          k && { certs: k.certsDer.map((d) => d.toString("base64")), key: pkcs8(k.privateKey) },
        ]),
      );
    const pending = this.pendingSlots.size > 0 || this.pendingCsrs.size > 0 || this.pendingKeyPairs.size > 0;
    const state: z.input<typeof stateSchema> = {
      version: 1,
      slots: slots(this.installed),
      ...(pending && {
        pending: {
          slots: slots(this.pendingSlots),
          csrs: Object.fromEntries(
            [...this.pendingCsrs].map(([tag, p]) => [
              String(tag),
              { request: p.request.toString("base64"), csr: p.csr.toString("base64"), ready: p.ready },
            ]),
          ),
          keyPairs: Object.fromEntries(
            [...this.pendingKeyPairs].map(([id, { change, ready }]) => {
              const { id: _, ...fields } = change;
              return [String(id), { ...fields, ready }];
            }),
          ),
        },
      }),
      keyPairs: this.keyPairs.map((k) => ({
        id: k.id,
        usage: k.usage,
        assocMask: k.assocMask,
        erased: k.erased,
        generated: k.generated && { asym: k.generated.asym, key: pkcs8(k.generated.key) },
      })),
    };
    mkdirSync(this.stateDir, { recursive: true });
    const file = join(this.stateDir, STATE_FILE);
    const temporary = `${file}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    renameSync(temporary, file);
  }

  private load(dir: string): void {
    const file = join(dir, STATE_FILE);
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return; // a new state directory
      throw e;
    }
    let state: z.output<typeof stateSchema>;
    try {
      const parsed = stateSchema.safeParse(JSON.parse(text));
      if (!parsed.success)
        throw new Error(parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
      state = parsed.data;
      const slotKey = (k: { certs: Buffer[]; key: Buffer } | null) =>
        k && { certsDer: k.certs, privateKey: privateKeyFromPkcs8(k.key) };
      for (const [slot, k] of Object.entries(state.slots)) this.place(Number(slot), slotKey(k));
      for (const [slot, k] of Object.entries(state.pending?.slots ?? {}))
        this.pendingSlots.set(Number(slot), slotKey(k));
      for (const [tag, p] of Object.entries(state.pending?.csrs ?? {})) this.pendingCsrs.set(Number(tag), p);
      for (const [id, { ready, ...change }] of Object.entries(state.pending?.keyPairs ?? {}))
        this.pendingKeyPairs.set(Number(id), { change: { id: Number(id), ...change }, ready });
    } catch (e) {
      // Bad JSON, a schema mismatch or an unreadable key alike.
      const why = (e as Error).message;
      throw new Error(`state directory ${dir}: ${STATE_FILE} is corrupt (${why}); remove it to start afresh`);
    }
    for (const saved of state.keyPairs) {
      const kp = this.keyPair(saved.id);
      if (!kp) continue; // the description has fewer slots now
      Object.assign(kp, {
        usage: saved.usage,
        assocMask: saved.assocMask,
        erased: saved.erased,
        generated: saved.generated && {
          asym: saved.generated.asym,
          key: privateKeyFromPkcs8(saved.generated.key),
        },
      });
    }
  }
}
