/**
 * The TSM's registry: devices, their functions, the TDEVs and TDIs the host rules give them
 * (scan.ts planTsm), and the state of each. States are explicit and change only through the
 * transition tables below; every change is an event, logged and emitted.
 *
 *   device:  adding ──▶ present ──▶ removing ──▶ (gone)
 *   TDEV:    unauthenticated ──▶ authenticating ──▶ authenticated | failed ──▶ authenticating …
 *            authenticated ──▶ connecting ──▶ connected | failed;  connected ──▶ disconnecting ──▶ authenticated
 *            connected ──▶ failed (the held session broke: a heartbeat failed, its connection closed,
 *            a record failed to authenticate) ──▶ connecting (the registry re-establishes it by itself,
 *            after REESTABLISH_DELAYS_MS; each failed try back to failed, the next after a longer wait)
 *   TDI:     unbound ──▶ binding(vm) ──▶ bound(vm) ──▶ unbinding(vm) ──▶ unbound
 *            binding ──▶ unbound (the bind failed);  bound ──▶ unbound (the link broke, the device left)
 *            (bind to the same VM again: no change; another VM, or a bind/unbind under way: busy)
 *
 * A TDI binds only while its TDEV is connected; disconnecting unbinds (stops) its bound TDIs first.
 * A broken session unbinds its TDIs and is not re-bound by the host: the device moved the TDIs
 * locked in it to ERROR (TDISP, the session ended), so once the session is re-established the host
 * stops them (ERROR ──▶ CONFIG_UNLOCKED) and leaves them unbound, for the VM to bind again.
 * A PF's VFs follow VF Enable and NumVFs as the host sees them change (replaceVfs): the TDIs of
 * vanished VFs are dropped, new VFs get theirs.
 * Removal frees a device's TDIs first (unbinding them), then its TDEVs (closing their bouncers and
 * the connection of a connected one).
 */

import { EventEmitter } from "node:events";
import { formatRoutingId } from "../../protocol/pci.js";
import type { Logger } from "../log.js";
import { type Endpoint, formatEndpoint } from "../net/framed.js";
import type { MeasurementSummary } from "../spdm/requester-measurements.js";
import type { BindEvidence, BindFunction, TdispStateName } from "./bind.js";
import type { Bouncer } from "./bouncer.js";
import type { TdevLink } from "./connect.js";
import type { FaultCounts } from "./faults-api.js";
import { planTsm, type ScannedFunction, type ScannedMailbox, type TdevPlan, type TdiPlan } from "./scan.js";

export type DeviceState = "adding" | "present" | "removing";
export type TdevState =
  | "unauthenticated"
  | "authenticating"
  | "authenticated"
  | "connecting"
  | "connected"
  | "disconnecting"
  | "failed";
export type VmId = string | number;
export type TdiState = { kind: "unbound" } | { kind: "binding" | "bound" | "unbinding"; vm: VmId };
export type TdiStateKind = TdiState["kind"];

const DEVICE_NEXT: Record<DeviceState, readonly DeviceState[]> = {
  adding: ["present", "removing"],
  present: ["removing"],
  removing: [],
};
const TDEV_NEXT: Record<TdevState, readonly TdevState[]> = {
  unauthenticated: ["authenticating"],
  authenticating: ["authenticated", "failed"],
  authenticated: ["authenticating", "connecting"],
  connecting: ["connected", "failed"],
  connected: ["disconnecting", "failed"],
  disconnecting: ["authenticated"],
  failed: ["authenticating", "connecting"],
};

/** Waits before each try to re-establish a broken held session; after the last, the TDEV stays failed. */
export const REESTABLISH_DELAYS_MS: readonly number[] = [100, 400, 1600];
const TDI_NEXT: Record<TdiStateKind, readonly TdiStateKind[]> = {
  unbound: ["binding"],
  binding: ["bound", "unbound"],
  bound: ["unbinding", "unbound"],
  unbinding: ["unbound"],
};

function step<S extends string>(table: Record<S, readonly S[]>, what: string, from: S, to: S): S {
  if (!table[from].includes(to)) throw new Error(`${what}: no transition from ${from} to ${to}`);
  return to;
}

/** What SPDM authentication established; kept on the TDEV and shown by the API. */
export interface AuthResult {
  /** Negotiated SPDM version, e.g. "1.2". */
  version: string;
  /** Negotiated algorithms by field, e.g. { BaseHash: "SHA_384", … }. */
  algorithms: Record<string, string>;
  /** Hex digest of the leaf certificate, with the negotiated hash. */
  leafCertDigest: string;
  leafSubject: string;
  /** Subject of the trust root the chain was verified against; null when the host has none. */
  trustAnchor: string | null;
  measurements: MeasurementSummary[];
  /** When it completed (ISO 8601). */
  at: string;
}

export interface DeviceRecord {
  id: string;
  name: string;
  control: Endpoint;
  /** How the host learned of the device: "topology", "flag" or "hotplug". */
  source: string;
  state: DeviceState;
  functions: ScannedFunction[];
  mailboxes: ScannedMailbox[];
  /** Its fault rules and the faults they injected, as last fetched (faults-api.ts). */
  faults?: FaultCounts;
}

export interface Tdev {
  rid: number;
  device: string;
  cma: ScannedMailbox | undefined;
  secured: ScannedMailbox | undefined;
  bouncer: Bouncer;
  state: TdevState;
  auth: AuthResult | null;
  /** Why the last authentication (or connect) failed. */
  authError?: string;
  /** The held session and IDE stream while connected. */
  link?: TdevLink;
  /** The IDE stream's state: null until a connect, then "secure" while connected. */
  ide: "secure" | "insecure" | null;
}

export interface Tdi {
  rid: number;
  device: string;
  tdev: number;
  state: TdiState;
  /** The TDISP state last seen on the device; null before any. */
  tdispState: TdispStateName | null;
  /** The report verified at bind, while bound. */
  evidence?: BindEvidence;
}

export type HostEvent =
  | { event: "device-added"; device: string; control: string; functions: number }
  | { event: "device-refused"; control: string; reason: string }
  | { event: "device-removed"; device: string; reason: string }
  | { event: "vfs-changed"; device: string; pf: string; vfs: number }
  | { event: "faults"; device: string; rules: number; injected: number }
  | { event: "bouncer-error"; bdf: string; device: string; reason: string }
  | { event: "tdev-added" | "tdev-removed"; bdf: string; device: string }
  | { event: "tdi-added" | "tdi-removed"; bdf: string; tdev: string }
  | { event: `tdi-${TdiStateKind}`; bdf: string; vm: VmId | null; reason?: string }
  | { event: "tdi-state"; bdf: string; tdispState: TdispStateName }
  | { event: "tdev-state"; bdf: string; state: TdevState };

/** What the registry's TDI operations run on the device, with the TDEV's held session. */
export type OnTdi<T> = (link: TdevLink, fn: BindFunction) => Promise<T>;
/** Opens a TDEV's held session (connect.ts connectTdev). */
export type OpenLink = (tdev: Tdev) => Promise<TdevLink>;
/** How a TDEV was connected: `open` its session, `unlock` a TDI its lost session left locked. */
interface Opener {
  open: OpenLink;
  unlock: OnTdi<void>;
}
/** Where re-establishing a broken session is: tries made, why it broke, the TDIs the break unbound. */
interface Retry {
  tries: number;
  why: string;
  released: Tdi[];
}

export interface AddRequest {
  name: string;
  control: Endpoint;
  source: string;
  functions: ScannedFunction[];
  mailboxes: ScannedMailbox[];
  faults?: FaultCounts;
}

export class Registry extends EventEmitter<{ event: [HostEvent] }> {
  readonly devices = new Map<string, DeviceRecord>();
  readonly tdevs = new Map<number, Tdev>();
  readonly tdis = new Map<number, Tdi>();
  /** Routing IDs claimed by a device, so that two devices never answer for the same function. */
  private readonly owners = new Map<number, string>();
  /** A device's add in progress: removal waits for it. */
  private readonly adding = new Map<string, Promise<unknown>>();
  /** How each connected TDEV was connected, to re-establish its session the same way. */
  private readonly openers = new Map<Tdev, Opener>();
  /** The pending re-establish try of a TDEV whose session broke. */
  private readonly retries = new Map<Tdev, NodeJS.Timeout>();

  constructor(
    private readonly log: Logger,
    /** Starts the bouncer of a new TDEV. */
    private readonly startBouncer: (plan: TdevPlan, device: string) => Promise<Bouncer>,
  ) {
    super();
  }

  /**
   * Registers a scanned device with its TDEVs and TDIs. Returns the device ID, or undefined when
   * it is refused (a routing ID already belongs to another device).
   */
  async add(req: AddRequest): Promise<string | undefined> {
    const clash = req.functions.find((f) => this.owners.has(f.rid));
    if (clash) {
      const reason = `${formatRoutingId(clash.rid)} already belongs to ${this.owners.get(clash.rid)}`;
      this.emitEvent({ event: "device-refused", control: formatEndpoint(req.control), reason });
      return undefined;
    }
    const id = this.uniqueId(req.name);
    const device: DeviceRecord = { id, ...req, state: "adding" };
    this.devices.set(id, device);
    for (const f of req.functions) this.owners.set(f.rid, id);
    const work = this.populate(device);
    this.adding.set(id, work);
    try {
      await work;
    } catch (e) {
      for (const f of req.functions) this.owners.delete(f.rid);
      this.devices.delete(id);
      const reason = `cannot start its bouncers: ${(e as Error).message}`;
      this.emitEvent({ event: "device-refused", control: formatEndpoint(req.control), reason });
      return undefined;
    } finally {
      this.adding.delete(id);
    }
    // Removed while being added: remove() finishes the job.
    return device.state === "present" ? id : undefined;
  }

  private async populate(device: DeviceRecord): Promise<void> {
    const plan = planTsm(device.functions, device.mailboxes);
    const bouncers = await Promise.allSettled(plan.tdevs.map((t) => this.startBouncer(t, device.id)));
    const failed = bouncers.find((b) => b.status === "rejected");
    if (failed) {
      for (const b of bouncers) if (b.status === "fulfilled") await b.value.close();
      throw (failed as PromiseRejectedResult).reason;
    }
    // Removal began while the bouncers were starting: nothing of this device is registered.
    if (device.state !== "adding") {
      for (const b of bouncers) if (b.status === "fulfilled") await b.value.close();
      return;
    }
    plan.tdevs.forEach((t, i) => {
      const bouncer = (bouncers[i] as PromiseFulfilledResult<Bouncer>).value;
      this.tdevs.set(t.rid, {
        ...t,
        device: device.id,
        bouncer,
        state: "unauthenticated",
        auth: null,
        ide: null,
      });
      this.emitEvent({ event: "tdev-added", bdf: formatRoutingId(t.rid), device: device.id });
    });
    for (const t of plan.tdis) this.addTdi(t, device.id);
    device.state = step(DEVICE_NEXT, device.id, device.state, "present");
    this.emitEvent({
      event: "device-added",
      device: device.id,
      control: formatEndpoint(device.control),
      functions: device.functions.length,
    });
  }

  /** Frees the device's TDIs, then its TDEVs, then the device. Idempotent. */
  async remove(id: string, reason: string): Promise<void> {
    const device = this.devices.get(id);
    if (!device || device.state === "removing") return;
    device.state = step(DEVICE_NEXT, id, device.state, "removing");
    await this.adding.get(id)?.catch(() => undefined);
    for (const tdi of [...this.tdis.values()].filter((t) => t.device === id)) this.dropTdi(tdi, reason);
    for (const tdev of [...this.tdevs.values()].filter((t) => t.device === id)) {
      this.tdevs.delete(tdev.rid);
      this.forget(tdev);
      tdev.link?.close();
      delete tdev.link;
      await tdev.bouncer.close();
      this.emitEvent({ event: "tdev-removed", bdf: formatRoutingId(tdev.rid), device: id });
    }
    for (const f of device.functions) this.owners.delete(f.rid);
    this.devices.delete(id);
    this.emitEvent({ event: "device-removed", device: id, reason });
  }

  /**
   * A PF's VFs changed (VF Enable or NumVFs written behind the host's back): its VF functions become
   * `vfs`; the TDIs of VFs that are gone are dropped (a bound one unbound, `reason` said), and the
   * host rules give TDIs to the new ones. A VF whose routing ID another device claims is left out.
   */
  replaceVfs(id: string, pf: number, vfs: ScannedFunction[], reason: string): void {
    const device = this.devices.get(id);
    if (device?.state !== "present") return;
    const mine = vfs.filter((vf) => (this.owners.get(vf.rid) ?? id) === id);
    for (const f of device.functions) if (f.pf === pf) this.owners.delete(f.rid);
    for (const vf of mine) this.owners.set(vf.rid, id);
    const others = device.functions.filter((f) => f.pf !== pf);
    const at = others.findIndex((f) => f.rid === pf) + 1;
    device.functions = [...others.slice(0, at), ...mine, ...others.slice(at)];
    const planned = new Map(planTsm(device.functions, device.mailboxes).tdis.map((t) => [t.rid, t]));
    for (const tdi of [...this.tdis.values()])
      if (tdi.device === id && !planned.has(tdi.rid)) this.dropTdi(tdi, reason);
    for (const t of planned.values()) if (!this.tdis.has(t.rid)) this.addTdi(t, id);
    this.emitEvent({ event: "vfs-changed", device: id, pf: formatRoutingId(pf), vfs: mine.length });
  }

  /** A device's fault counts as last fetched; a change is an event (faults armed, cleared, injected). */
  setFaults(id: string, counts: FaultCounts): void {
    const device = this.devices.get(id);
    if (!device) return;
    const before = device.faults;
    device.faults = counts;
    if (before?.rules !== counts.rules || before?.injected !== counts.injected)
      this.emitEvent({ event: "faults", device: id, ...counts });
  }

  /** A TDEV's bouncer could not reach its mailbox: an event, so a watcher sees it as it happens. */
  bouncerError(rid: number, reason: string): void {
    const tdev = this.tdevs.get(rid);
    if (tdev)
      this.emitEvent({ event: "bouncer-error", bdf: formatRoutingId(rid), device: tdev.device, reason });
  }

  private addTdi(t: TdiPlan, device: string): void {
    this.tdis.set(t.rid, { ...t, device, state: { kind: "unbound" }, tdispState: null });
    this.emitEvent({ event: "tdi-added", bdf: formatRoutingId(t.rid), tdev: formatRoutingId(t.tdev) });
  }

  /** Unbinds (in the registry only: the function is gone or going) and forgets a TDI. */
  private dropTdi(tdi: Tdi, reason: string): void {
    if (tdi.state.kind !== "unbound") this.setTdiState(tdi, { kind: "unbound" }, reason);
    this.tdis.delete(tdi.rid);
    this.emitEvent({ event: "tdi-removed", bdf: formatRoutingId(tdi.rid), tdev: formatRoutingId(tdi.tdev) });
  }

  /**
   * Linux pci_tsm_bind: `lock` (lock, report, verify, start) on the TDEV's held session, through
   * binding to bound(vm), or back to unbound when it rejects. Binding again to the same VM changes
   * nothing; another VM, or a bind/unbind under way, is refused "busy"; a TDEV not connected, "conflict".
   */
  async bind(rid: number, vm: VmId, lock: OnTdi<BindEvidence>): Promise<"bound" | "unchanged"> {
    const tdi = this.tdi(rid);
    const bdf = formatRoutingId(rid);
    if (tdi.state.kind === "bound" && tdi.state.vm === vm) return "unchanged";
    if (tdi.state.kind !== "unbound")
      throw new RegistryError(
        "busy",
        `TDI ${bdf} is ${tdi.state.kind} ${tdi.state.kind === "bound" ? "to" : "for"} VM ${tdi.state.vm}`,
      );
    const { link, fn } = this.connectedTdev(tdi);
    this.setTdiState(tdi, { kind: "binding", vm });
    let evidence: BindEvidence;
    try {
      evidence = await lock(link, fn);
    } catch (e) {
      if (this.still(tdi, "binding")) this.setTdiState(tdi, { kind: "unbound" }, (e as Error).message);
      throw e;
    }
    // Unbound meanwhile: the link broke or the device left, which dropped the TDEV's state too.
    if (!this.still(tdi, "binding")) throw new Error(`TDI ${bdf} was released while binding`);
    tdi.evidence = evidence;
    this.seeTdispState(tdi, "RUN");
    this.setTdiState(tdi, { kind: "bound", vm });
    return "bound";
  }

  /**
   * Undoes bind: `stop` on the held session, through unbinding to unbound, also when `stop`
   * rejects (which then rejects). Unbound already: "unchanged"; a bind/unbind under way: "busy".
   */
  async unbind(rid: number, stop: OnTdi<void>): Promise<"unbound" | "unchanged"> {
    const tdi = this.tdi(rid);
    if (tdi.state.kind === "unbound") return "unchanged";
    if (tdi.state.kind !== "bound")
      throw new RegistryError("busy", `TDI ${formatRoutingId(rid)} is ${tdi.state.kind}`);
    await this.release(tdi, stop);
    return "unbound";
  }

  /** bound ──▶ unbinding ──▶ unbound around `stop`, which runs only while the TDEV holds its link. */
  private async release(tdi: Tdi, stop: OnTdi<void>): Promise<void> {
    if (tdi.state.kind !== "bound") return;
    this.setTdiState(tdi, { kind: "unbinding", vm: tdi.state.vm });
    const link = this.tdevs.get(tdi.tdev)?.link;
    try {
      if (link) {
        await stop(link, this.functionOf(tdi));
        this.seeTdispState(tdi, "CONFIG_UNLOCKED");
      }
    } finally {
      if (this.still(tdi, "unbinding")) this.setTdiState(tdi, { kind: "unbound" });
    }
  }

  /**
   * The TDI's live TDISP state by `ask` when its TDEV is connected (a change is a tdi-state event),
   * else null.
   */
  async probeTdi(rid: number, ask: OnTdi<TdispStateName>): Promise<TdispStateName | null> {
    const tdi = this.tdi(rid);
    const tdev = this.tdevs.get(tdi.tdev);
    if (tdev?.state !== "connected" || !tdev.link) return null;
    const state = await ask(tdev.link, this.functionOf(tdi));
    if (this.tdis.get(rid) === tdi) this.seeTdispState(tdi, state);
    return state;
  }

  /** Whether the TDI is still registered and in `kind`: an operation's await may have released it. */
  private still(tdi: Tdi, kind: TdiStateKind): boolean {
    return this.tdis.get(tdi.rid) === tdi && tdi.state.kind === kind;
  }

  private tdi(rid: number): Tdi {
    const tdi = this.tdis.get(rid);
    if (!tdi) throw new RegistryError("notFound", `no TDI ${formatRoutingId(rid)}`);
    return tdi;
  }

  private functionOf(tdi: Tdi): BindFunction {
    const fn = this.devices.get(tdi.device)?.functions.find((f) => f.rid === tdi.rid);
    return fn ?? { rid: tdi.rid, bars: [] };
  }

  /** The TDI's TDEV link and function, or "conflict" when the TDEV is not connected. */
  private connectedTdev(tdi: Tdi): { link: TdevLink; fn: BindFunction } {
    const tdev = this.tdevs.get(tdi.tdev);
    const link = tdev?.state === "connected" ? tdev.link : undefined;
    if (!link) {
      const name = formatRoutingId(tdi.tdev);
      throw new RegistryError(
        "conflict",
        `TDI ${formatRoutingId(tdi.rid)}: its TDEV ${name} is ${tdev?.state ?? "gone"}, not connected; connect it first`,
      );
    }
    return { link, fn: this.functionOf(tdi) };
  }

  private seeTdispState(tdi: Tdi, state: TdispStateName): void {
    if (tdi.tdispState === state) return;
    tdi.tdispState = state;
    this.emitEvent({ event: "tdi-state", bdf: formatRoutingId(tdi.rid), tdispState: state });
  }

  private setTdiState(tdi: Tdi, to: TdiState, reason?: string): void {
    step(TDI_NEXT, formatRoutingId(tdi.rid), tdi.state.kind, to.kind);
    const vm = to.kind === "unbound" ? (tdi.state.kind === "unbound" ? null : tdi.state.vm) : to.vm;
    tdi.state = to;
    if (to.kind === "unbound") delete tdi.evidence;
    this.emitEvent({
      event: `tdi-${to.kind}`,
      bdf: formatRoutingId(tdi.rid),
      vm,
      ...(reason ? { reason } : {}),
    });
  }

  /**
   * Runs `authenticate` for a TDEV, moving it through authenticating to authenticated or failed.
   * Rejects with the failure; a TDEV already authenticating is refused with "busy".
   */
  async authenticate(rid: number, authenticate: (tdev: Tdev) => Promise<AuthResult>): Promise<AuthResult> {
    const tdev = this.tdev(rid);
    if (!TDEV_NEXT[tdev.state].includes("authenticating"))
      throw new RegistryError("busy", `TDEV ${formatRoutingId(rid)} is ${tdev.state}`);
    this.setTdevState(tdev, "authenticating");
    try {
      const result = await authenticate(tdev);
      tdev.auth = result;
      delete tdev.authError;
      this.setTdevState(tdev, "authenticated");
      return result;
    } catch (e) {
      tdev.auth = null;
      tdev.authError = (e as Error).message;
      this.setTdevState(tdev, "failed");
      throw e;
    }
  }

  /**
   * Connects an authenticated TDEV with `open`, through connecting to connected (or failed, with
   * the reason in authError). A connected TDEV is left as it is ("unchanged"). Should its session
   * break, the registry opens it again with `open` and, over the new one, `unlock`s the TDIs the
   * break unbound.
   */
  async connect(rid: number, open: OpenLink, unlock: OnTdi<void>): Promise<"connected" | "unchanged"> {
    const tdev = this.tdev(rid);
    if (tdev.state === "connected") return "unchanged";
    if (tdev.state !== "authenticated")
      throw new RegistryError("busy", `TDEV ${formatRoutingId(rid)} is ${tdev.state}, not authenticated`);
    this.openers.set(tdev, { open, unlock });
    try {
      await this.establish(tdev, open);
    } catch (e) {
      this.openers.delete(tdev);
      throw e;
    }
    return "connected";
  }

  /** connecting ──▶ connected with the link `open` gives, or failed with its reason (rejecting). */
  private async establish(tdev: Tdev, open: OpenLink): Promise<void> {
    this.setTdevState(tdev, "connecting");
    try {
      const link = await open(tdev);
      // Removed while connecting: nobody else will close the link.
      if (this.tdevs.get(tdev.rid) !== tdev) {
        link.close();
        throw new Error("the TDEV was removed while connecting");
      }
      tdev.link = link;
      tdev.ide = "secure";
      link.onBroken((reason) => this.linkBroken(tdev, link, reason));
      this.setTdevState(tdev, "connected");
    } catch (e) {
      tdev.authError = (e as Error).message;
      if (this.tdevs.get(tdev.rid) === tdev) this.setTdevState(tdev, "failed");
      throw e;
    }
  }

  /** Schedules try `retry.tries` (from 0) to re-establish the broken session of a failed TDEV. */
  private reestablishLater(tdev: Tdev, retry: Retry): void {
    const opener = this.openers.get(tdev);
    const delay = REESTABLISH_DELAYS_MS[retry.tries];
    if (!opener || delay === undefined) {
      this.openers.delete(tdev);
      tdev.authError = `${retry.why}; not re-established after ${retry.tries} tries`;
      this.log.warn({ tdev: formatRoutingId(tdev.rid), err: tdev.authError }, "held session lost");
      return;
    }
    const timer = setTimeout(() => {
      this.retries.delete(tdev);
      void this.reestablish(tdev, opener, retry);
    }, delay);
    this.retries.set(tdev, timer);
  }

  /**
   * One try: failed ──▶ connecting ──▶ connected, then the TDIs the break unbound are stopped over
   * the new session (the device left them in ERROR); or back to failed and the next try later.
   */
  private async reestablish(tdev: Tdev, { open, unlock }: Opener, retry: Retry): Promise<void> {
    // Removed, or moved on by a request of the API (authenticate, connect): that move stands.
    if (this.tdevs.get(tdev.rid) !== tdev || tdev.state !== "failed") return;
    try {
      await this.establish(tdev, open);
    } catch (e) {
      const why = `${retry.why}; then: ${(e as Error).message}`;
      if (this.tdevs.get(tdev.rid) === tdev)
        this.reestablishLater(tdev, { ...retry, tries: retry.tries + 1, why });
      return;
    }
    delete tdev.authError;
    const link = tdev.link!;
    for (const tdi of retry.released) {
      if (!this.still(tdi, "unbound")) continue;
      await unlock(link, this.functionOf(tdi)).then(
        () => this.still(tdi, "unbound") && this.seeTdispState(tdi, "CONFIG_UNLOCKED"),
        (e: unknown) =>
          this.log.warn(
            { tdi: formatRoutingId(tdi.rid), err: (e as Error).message },
            "STOP after the session was re-established failed",
          ),
      );
    }
  }

  /** Forgets how a TDEV was connected, and any re-establish try pending. */
  private forget(tdev: Tdev): void {
    clearTimeout(this.retries.get(tdev));
    this.retries.delete(tdev);
    this.openers.delete(tdev);
  }

  /**
   * Disconnects a connected TDEV: disconnecting, its bound TDIs unbound with `stop` (a failure
   * logged, the TDI unbound all the same), then authenticated, also when a step of the teardown
   * fails (which then rejects). Not connected: "unchanged"; a TDI binding or unbinding: "busy".
   */
  async disconnect(rid: number, stop: OnTdi<void>): Promise<"disconnected" | "unchanged"> {
    const tdev = this.tdev(rid);
    if (tdev.state === "connecting" || tdev.state === "disconnecting")
      throw new RegistryError("busy", `TDEV ${formatRoutingId(rid)} is ${tdev.state}`);
    const { link } = tdev;
    // Disconnected on purpose: a broken session is no longer re-established.
    this.forget(tdev);
    if (tdev.state !== "connected" || !link) return "unchanged";
    const tdis = [...this.tdis.values()].filter((t) => t.tdev === rid);
    const moving = tdis.find((t) => t.state.kind === "binding" || t.state.kind === "unbinding");
    if (moving) throw new RegistryError("busy", `TDI ${formatRoutingId(moving.rid)} is ${moving.state.kind}`);
    this.setTdevState(tdev, "disconnecting");
    for (const tdi of tdis)
      await this.release(tdi, stop).catch((e: unknown) =>
        this.log.warn(
          { tdi: formatRoutingId(tdi.rid), err: (e as Error).message },
          "STOP failed; unbound all the same",
        ),
      );
    try {
      await link.disconnect();
    } finally {
      delete tdev.link;
      tdev.ide = "insecure";
      if (this.tdevs.get(rid) === tdev) this.setTdevState(tdev, "authenticated");
    }
    return "disconnected";
  }

  /** The held session broke: the TDEV fails with the reason, its TDIs are unbound, the link dropped. */
  private linkBroken(tdev: Tdev, link: TdevLink, reason: string): void {
    // Disconnecting: the teardown is under way and reports its own failure.
    if (this.tdevs.get(tdev.rid) !== tdev || tdev.link !== link || tdev.state !== "connected") return;
    const why = `link broken: ${reason}`;
    const released = [...this.tdis.values()].filter((t) => t.tdev === tdev.rid && t.state.kind !== "unbound");
    for (const tdi of released) this.setTdiState(tdi, { kind: "unbound" }, why);
    link.close();
    delete tdev.link;
    tdev.ide = null;
    tdev.authError = why;
    this.setTdevState(tdev, "failed");
    this.reestablishLater(tdev, { tries: 0, why, released });
  }

  private tdev(rid: number): Tdev {
    const tdev = this.tdevs.get(rid);
    if (!tdev) throw new RegistryError("notFound", `no TDEV ${formatRoutingId(rid)}`);
    return tdev;
  }

  private setTdevState(tdev: Tdev, to: TdevState): void {
    tdev.state = step(TDEV_NEXT, formatRoutingId(tdev.rid), tdev.state, to);
    this.emitEvent({ event: "tdev-state", bdf: formatRoutingId(tdev.rid), state: to });
  }

  private uniqueId(name: string): string {
    if (!this.devices.has(name)) return name;
    for (let n = 2; ; n++) if (!this.devices.has(`${name}-${n}`)) return `${name}-${n}`;
  }

  private emitEvent(e: HostEvent): void {
    this.log.info(e, e.event);
    this.emit("event", e);
  }
}

export class RegistryError extends Error {
  override readonly name = "RegistryError";
  constructor(
    /** busy: another operation is under way; conflict: the TDEV cannot do it (no secured mailbox, no IDE). */
    readonly code: "notFound" | "busy" | "conflict",
    message: string,
  ) {
    super(message);
  }
}
