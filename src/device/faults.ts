/**
 * Fault injection rules (pure: matching, counting, the seeded dice). A rule says where it applies
 * (the device, a function, a mailbox, a protocol, a request code or message name), when (the next
 * `count` matching objects, each with probability `probability` from a seeded generator, or every
 * one) and what happens. Each kind acts at one layer, where what it matches on is visible:
 *   doe       the mailbox endpoint, per DOE object on the socket: delay, stall, drop, corrupt,
 *             close, exit (DISCOVERY, SPDM or SECURED_SPDM; a code only for plain SPDM);
 *   registers the DOE registers, per object a Go sends: busy (Status.Busy held `ms` first);
 *   spdm      the function's SPDM responder, per plain request: spdm-error (ERROR Busy),
 *             not-ready (ERROR ResponseNotReady, served by RESPOND_IF_READY);
 *   TDISP     the TDISP engine, per request: tdi-error (the TDI goes to ERROR first);
 *   IDE_KM    the IDE-KM engine, per KEY_PROG: ide-km-fail (KP_ACK with Unspecified Failure).
 * fault-injection.ts applies them; the control wire adds, lists and clears them at run time.
 */
import * as z from "zod";
import { formatRoutingId, parseRoutingId } from "../../protocol/pci.js";
import { SpdmRequestCode } from "../../protocol/spdm/codes.js";
import { TdispCode } from "../../protocol/tdisp.js";
import type { Logger } from "../log.js";
import { NOT_READY_REQUESTS } from "../spdm/responder-settings.js";

export const FAULT_LAYERS = {
  delay: "doe",
  stall: "doe",
  drop: "doe",
  corrupt: "doe",
  close: "doe",
  exit: "doe",
  busy: "registers",
  "spdm-error": "spdm",
  "not-ready": "spdm",
  "tdi-error": "TDISP",
  "ide-km-fail": "IDE_KM",
} as const;
export type FaultKind = keyof typeof FAULT_LAYERS;
export type FaultLayer = (typeof FAULT_LAYERS)[FaultKind];
export const FAULT_KINDS = Object.keys(FAULT_LAYERS) as [FaultKind, ...FaultKind[]];

export const FAULT_PROTOCOLS = ["DISCOVERY", "SPDM", "SECURED_SPDM", "TDISP", "IDE_KM"] as const;
export type FaultProtocol = (typeof FAULT_PROTOCOLS)[number];

/** The protocols a layer sees; the first is a rule's default there when it has only one. */
const LAYER_PROTOCOLS: Record<FaultLayer, readonly FaultProtocol[]> = {
  doe: ["DISCOVERY", "SPDM", "SECURED_SPDM"],
  registers: ["DISCOVERY", "SPDM", "SECURED_SPDM"],
  spdm: ["SPDM"],
  TDISP: ["TDISP"],
  IDE_KM: ["IDE_KM"],
};

/** The names a rule's `code` may take, per protocol: SPDM request codes, TDISP requests, KEY_PROG. */
const CODES: Partial<Record<FaultProtocol, readonly string[]>> = {
  SPDM: Object.keys(SpdmRequestCode),
  TDISP: Object.keys(TdispCode).filter((n) => (TdispCode[n as keyof typeof TdispCode] & 0x80) !== 0),
  IDE_KM: ["KEY_PROG"],
};

/** What `corrupt` flips in the response: the DOE header, the SPDM response code, a record's MAC tag. */
export const CORRUPT_PARTS = ["header", "body", "tag"] as const;
export type CorruptPart = (typeof CORRUPT_PARTS)[number];

const BDF = /^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;

export const faultRuleSchema = z
  .strictObject({
    kind: z.enum(FAULT_KINDS),
    /** The function, as "bb:dd.f"; every function when absent. */
    function: z.string().regex(BDF, "a function is bb:dd.f").optional(),
    /** The mailbox index on its function (doe layer only). */
    mailbox: z.number().int().min(0).max(255).optional(),
    protocol: z.enum(FAULT_PROTOCOLS).optional(),
    /** An SPDM request code, TDISP request or IDE-KM object name. */
    code: z.string().min(1).optional(),
    /** Fires for the next `count` matching objects, then never; every one when neither this nor probability. */
    count: z.number().int().min(1).optional(),
    /** Fires for each matching object with this probability, drawn from a generator seeded with `seed`. */
    probability: z.number().gt(0).max(1).optional(),
    seed: z.number().int().min(0).max(0xffff_ffff).default(1),
    /** delay: how long the response is held back; busy: how long Busy stays set. */
    ms: z.number().int().min(0).max(600_000).optional(),
    /** corrupt: which part of the response (default: tag for SECURED_SPDM, else header). */
    part: z.enum(CORRUPT_PARTS).optional(),
  })
  .superRefine((r, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: "custom", path: [path], message });
    const layer = FAULT_LAYERS[r.kind];
    const protocols = LAYER_PROTOCOLS[layer];
    if (r.count !== undefined && r.probability !== undefined)
      issue("count", "give count or probability, not both");
    if (r.protocol && !protocols.includes(r.protocol))
      issue("protocol", `${r.kind} applies to ${protocols.join(", ")}, not ${r.protocol}`);
    if ((r.kind === "delay" || r.kind === "busy") !== (r.ms !== undefined))
      issue("ms", "ms is for delay and busy, which need it");
    if ((r.part !== undefined && r.kind !== "corrupt") || (r.part === "tag" && r.protocol !== "SECURED_SPDM"))
      issue("part", "part is for corrupt; tag needs protocol SECURED_SPDM");
    if (r.mailbox !== undefined && (layer === "TDISP" || layer === "IDE_KM"))
      issue("mailbox", `${r.kind} applies to a function's engine, not a mailbox`);
    const protocol = r.protocol ?? (protocols.length === 1 ? protocols[0] : undefined);
    // The code of an object on the wire or in the registers is visible for plain SPDM only.
    if (r.code !== undefined && !(protocol && CODES[protocol]?.includes(r.code)))
      issue("code", `${r.code} is not a request code of ${protocol ?? "any protocol without a protocol"}`);
    if (r.kind === "not-ready" && !(r.code && r.code in NOT_READY_REQUESTS))
      issue("code", `not-ready needs code, one of ${Object.keys(NOT_READY_REQUESTS).join(", ")}`);
  });

export type FaultRule = z.output<typeof faultRuleSchema>;

/** A rule as listed: its id and how many times it fired. */
export type FaultView = FaultRule & { id: number; injected: number };

/** One object at one layer, as a rule sees it. */
export interface FaultSite {
  layer: FaultLayer;
  rid: number;
  mailbox?: number;
  protocol?: FaultProtocol;
  /** The request code or message name, when the layer sees one. */
  code?: string;
}

interface ActiveRule {
  view: FaultView;
  rid: number | undefined;
  /** Left to fire; Infinity without a count. */
  left: number;
  random: () => number;
}

/** mulberry32: a small, fast, seeded generator of numbers in [0, 1); the same seed, the same faults. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Rules a device holds at most: each is checked per object, and a list must fit a control frame. */
export const MAX_FAULT_RULES = 128;

/** A device's rules, in the order added; the first that matches and fires wins. */
export class FaultSet {
  private rules: ActiveRule[] = [];
  private nextId = 1;

  constructor(
    private readonly log: Logger,
    initial: readonly FaultRule[] = [],
  ) {
    for (const r of initial) this.add(r);
  }

  /** Adds a validated rule; returns its id. */
  add(rule: FaultRule): number {
    if (this.rules.length >= MAX_FAULT_RULES)
      throw new FaultRuleError(`a device holds at most ${MAX_FAULT_RULES} fault rules; clear them first`);
    const id = this.nextId++;
    this.rules.push({
      view: { ...rule, id, injected: 0 },
      rid: rule.function === undefined ? undefined : parseRoutingId(rule.function),
      left: rule.count ?? Number.POSITIVE_INFINITY,
      random: seededRandom(rule.seed),
    });
    return id;
  }

  list(): FaultView[] {
    return this.rules.map((r) => ({ ...r.view }));
  }

  /** Removes every rule; returns how many there were. */
  clear(): number {
    const n = this.rules.length;
    this.rules = [];
    return n;
  }

  /** Whether any rule can still fire: the hot path skips the site's decoding otherwise. */
  get armed(): boolean {
    return this.rules.some((r) => r.left > 0);
  }

  /** The rule that fires for this object, counted and logged; undefined when none does. */
  take(site: FaultSite): FaultView | undefined {
    for (const r of this.rules) {
      if (r.left <= 0 || !matches(r, site)) continue;
      if (r.view.probability !== undefined && r.random() >= r.view.probability) continue;
      r.left--;
      r.view.injected++;
      const { id, kind } = r.view;
      const where = { ...site, rid: formatRoutingId(site.rid) };
      this.log.warn({ fault: id, kind, ...where, injected: r.view.injected }, `fault injected: ${kind}`);
      return { ...r.view };
    }
    return undefined;
  }
}

function matches(r: ActiveRule, site: FaultSite): boolean {
  const v = r.view;
  if (FAULT_LAYERS[v.kind] !== site.layer) return false;
  if (r.rid !== undefined && r.rid !== site.rid) return false;
  if (v.mailbox !== undefined && v.mailbox !== site.mailbox) return false;
  if (v.protocol !== undefined && v.protocol !== site.protocol) return false;
  return v.code === undefined || v.code === site.code;
}

/** Validates a rule from the control wire or an API body; throws with zod's issues joined. */
export function parseFaultRule(value: unknown): FaultRule {
  const r = faultRuleSchema.safeParse(value);
  if (!r.success)
    throw new FaultRuleError(
      r.error.issues.map((i) => `${i.path.join(".") || "rule"}: ${i.message}`).join("; "),
    );
  return r.data;
}

export class FaultRuleError extends Error {
  override readonly name = "FaultRuleError";
}
