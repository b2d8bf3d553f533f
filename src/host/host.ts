/**
 * The TSM host (`doe-emu host`): finds devices (control endpoints given up front, and hotplug
 * announcements), scans each one, registers its TDEVs and TDIs, watches it, and removes it when
 * its announce connection closes or it stays unreachable past a timeout. Usable in-process.
 *
 * One DeviceLink per device, with explicit states:
 *   connecting ──▶ scanning ──▶ registered ──▶ closed
 *        └────────────┴──────────────────────────▲   (a failure or a removal at any point)
 * A device given up front that is absent or gone is retried on every tick, so re-adding works
 * for it as it does for a device that announces itself again.
 */
import {
  CONTROL_MAX_PAYLOAD,
  type ConfigAccess,
  type ControlMessage,
  type DeviceIdentity,
  decodeControlFrame,
} from "../../protocol/control.js";
import { type ConfigWidth, formatRoutingId, Header } from "../../protocol/pci.js";
import { type Logger, silentLogger } from "../log.js";
import type { PcapCapture } from "../net/capture.js";
import {
  type Endpoint,
  type FramedConnection,
  FramedServer,
  formatEndpoint,
  sameEndpoint,
} from "../net/framed.js";
import { once } from "../once.js";
import type { KeyLog } from "../spdm/session.js";
import { type ApiServer, GIVEN_SOURCE, startApi } from "./api.js";
import { authenticateTdev } from "./authenticate.js";
import {
  type BindFunction,
  interfaceState,
  lockAndStart,
  stopInterface,
  type TdispStateName,
} from "./bind.js";
import { Bouncer } from "./bouncer.js";
import { connectTdev, type TdevLink } from "./connect.js";
import { ControlClient } from "./control-client.js";
import { countFaults, type DeviceFaults } from "./faults-api.js";
import { DEFAULT_MMIO_WINDOWS, MmioAllocator, type MmioWindows } from "./mmio.js";
import { type AuthResult, Registry, RegistryError, type VmId } from "./registry.js";
import { assignBars, discoverMailboxes, rescanVfs, scanBus } from "./scan.js";

export interface HostDevice {
  control: Endpoint;
  /** How the host learned of it, shown in events: "topology" or "flag". */
  source: string;
}

export interface HostOptions {
  log?: Logger;
  /** Management API address; port 0 picks a free one. Default 127.0.0.1:0. */
  api?: Endpoint;
  /** Hotplug endpoint for device announcements; none when absent. */
  hotplug?: Endpoint;
  /** Devices to attach by their control endpoints. */
  devices?: HostDevice[];
  /** Address the TDEV bounce endpoints bind to. */
  bounceHost?: string;
  /** Per-request timeout on the control wire and DOE discovery. */
  requestTimeoutMs?: number;
  /** How often each device is checked (and absent given devices retried). */
  probeIntervalMs?: number;
  /** A device that has not answered for this long is removed. */
  unreachableTimeoutMs?: number;
  /** How long the bouncer, and authentication, wait for a mailbox to answer one object. */
  bounceTimeoutMs?: number;
  /** DER of the root certificate a device's chain must end in when authenticated. */
  trustRoot?: Uint8Array;
  /** How long an API client may take to send one whole request (default 10 s). */
  apiRequestTimeoutMs?: number;
  /** How many API connections may be open at once (default API_MAX_CONNECTIONS, src/host/api.ts). */
  apiMaxConnections?: number;
  /** Where BARs are assigned; each window defaults to DEFAULT_MMIO_WINDOWS' (src/host/mmio.ts). */
  mmioWindows?: Partial<MmioWindows>;
  /** Records every bouncer connection (`--pcap`). */
  capture?: PcapCapture;
  /** Where the secrets of the sessions the host holds go (`--keylog`). */
  keyLog?: KeyLog;
}

export interface Host {
  api: Endpoint;
  hotplug: Endpoint | undefined;
  registry: Registry;
  /** Runs SPDM authentication through the TDEV's CMA mailbox and stores the result. */
  authenticate(rid: number): Promise<AuthResult>;
  /** Authenticates, then holds a session and a Secure IDE stream (connect.ts); a connected TDEV: "unchanged". */
  connect(rid: number): Promise<"connected" | "unchanged">;
  /** Unbinds its bound TDIs, then ends what connect set up; a TDEV not connected: "unchanged". */
  disconnect(rid: number): Promise<"disconnected" | "unchanged">;
  /** Locks, verifies and starts the TDI over its TDEV's held session (bind.ts); same VM again: "unchanged". */
  bind(rid: number, vm: VmId): Promise<"bound" | "unchanged">;
  /** Stops a bound TDI; unbound already: "unchanged". */
  unbind(rid: number): Promise<"unbound" | "unchanged">;
  /** The TDI's live TDISP state while its TDEV is connected, else null. */
  probeTdi(rid: number): Promise<TdispStateName | null>;
  /** Attaches a device by its control endpoint as a given one (POST /v1/devices); given already: no change. */
  addDevice(control: Endpoint): void;
  /** Closes every endpoint, connection and timer; removes every device. Idempotent. */
  stop(): Promise<void>;
}

/** Devices announced at once on the hotplug endpoint. */
const HOTPLUG_MAX_DEVICES = 1024;

type LinkState = "connecting" | "scanning" | "registered" | "closed";

interface HostContext {
  log: Logger;
  registry: Registry;
  requestTimeoutMs: number;
  unreachableTimeoutMs: number;
  /** BAR space; a link's regions are its own, released when it closes. */
  mmio: MmioAllocator;
}

class DeviceLink {
  state: LinkState = "connecting";
  private control: ControlClient | undefined;
  private deviceId: string | undefined;
  private lastOk = Date.now();
  private vfCheck: Promise<void> = Promise.resolve();
  /** The liveness probe under way; close() waits for it. */
  private probing: Promise<string | undefined> | undefined;
  /** Resolves when the link is closed, whatever closed it. */
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    private readonly ctx: HostContext,
    readonly endpoint: Endpoint,
    private readonly source: string,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Connects, scans and registers. Resolves false if the device could not be added. */
  async attach(known?: DeviceIdentity): Promise<boolean> {
    const log = this.ctx.log.child({ control: formatEndpoint(this.endpoint) });
    let added = false;
    try {
      this.control = await ControlClient.connect(this.endpoint, {
        timeoutMs: this.ctx.requestTimeoutMs,
        connectTimeoutMs: this.ctx.requestTimeoutMs,
      });
      this.control.onClose(() => void this.check());
      // Closed while connecting: close() found no client to close then.
      if (this.isClosed()) {
        this.control.close();
        return false;
      }
      this.state = "scanning";
      const identity = known ?? (await this.control.identity());
      const control = this.control;
      const read = (rid: number, off: number, w: ConfigWidth) => control.cfgRead(rid, off, w);
      const batch = (accesses: ConfigAccess[]) => control.cfgBatch(accesses);
      const functions = await scanBus(read, identity.bus, batch);
      await assignBars(batch, functions, this.ctx.mmio, this, log);
      const mailboxes = await discoverMailboxes(functions, identity, control, {
        timeoutMs: this.ctx.requestTimeoutMs,
        log,
      });
      // Rules from its description count from the start; a device without fault support shows none.
      const faults = await control.faultList().then(countFaults, () => undefined);
      if (this.isClosed()) return false;
      const id = await this.ctx.registry.add({
        name: identity.name,
        control: this.endpoint,
        source: this.source,
        functions,
        mailboxes,
        faults,
      });
      if (this.isClosed() || id === undefined) {
        if (id !== undefined) await this.ctx.registry.remove(id, "detached while being added");
        await this.close("not added");
        return false;
      }
      this.deviceId = id;
      this.state = "registered";
      this.lastOk = Date.now();
      added = true;
      return true;
    } catch (e) {
      log.debug({ err: (e as Error).message }, "attach failed");
      await this.close("attach failed");
      return false;
    } finally {
      // A link closed while attaching may have claimed BAR space after close() released it.
      if (!added) this.ctx.mmio.release(this);
    }
  }

  /** Whether this link's device is registered under `id`. */
  isDevice(id: string): boolean {
    return this.state === "registered" && this.deviceId === id;
  }

  /** The device's fault rules over its control wire; each call refreshes the counts the topology shows. */
  faults(): DeviceFaults {
    const control = this.liveControl();
    const refreshed = async <T>(result: T) => {
      await this.refreshFaults();
      return result;
    };
    return {
      add: async (rule) => refreshed(await control.faultAdd(rule)),
      list: () => this.refreshFaults(),
      clear: async () => refreshed(await control.faultClear()),
    };
  }

  /** Fetches the fault rules and keeps their counts in the device's record. */
  private async refreshFaults(): Promise<Record<string, unknown>[]> {
    const rules = await this.liveControl().faultList();
    this.ctx.registry.setFaults(this.deviceId!, countFaults(rules));
    return rules;
  }

  /** Whether this link's device is registered and has function `rid`. */
  owns(rid: number): boolean {
    const device = this.state === "registered" ? this.ctx.registry.devices.get(this.deviceId!) : undefined;
    return device?.functions.some((f) => f.rid === rid) ?? false;
  }

  /**
   * Brings the registry's VFs in line with each SR-IOV PF's VF Enable and NumVFs (scan.ts
   * rescanVfs), on every probe and before the host acts on a function. One check at a time; a
   * failed one changes nothing (the probe judges reachability).
   */
  followVfs(): Promise<void> {
    this.vfCheck = this.vfCheck.then(async () => {
      const device = this.deviceId === undefined ? undefined : this.ctx.registry.devices.get(this.deviceId);
      const control = this.control;
      if (!device || !control || control.closed) return;
      const read = (rid: number, off: number, w: ConfigWidth) => control.cfgRead(rid, off, w);
      try {
        for (const pf of device.functions.filter((f) => f.sriov)) {
          const vfs = await rescanVfs(read, pf, (accesses) => control.cfgBatch(accesses));
          const why = `VF Enable/NumVFs of ${formatRoutingId(pf.rid)} changed`;
          if (vfs) this.ctx.registry.replaceVfs(device.id, pf.rid, vfs, why);
        }
      } catch (e) {
        this.ctx.log.debug({ device: device.id, err: (e as Error).message }, "VF check failed");
      }
    });
    return this.vfCheck;
  }

  /** The control connection, for the API's config accesses; while it is down the probe reconnects it. */
  liveControl(): ControlClient {
    if (!this.control || this.control.closed)
      throw new Error(`control endpoint ${formatEndpoint(this.endpoint)} is not connected`);
    return this.control;
  }

  private isClosed(): boolean {
    return this.state === "closed";
  }

  /** One liveness check: a config read of the device's first function, reconnecting if needed. */
  async check(): Promise<void> {
    if (this.state !== "registered" || this.probing) return;
    this.probing = this.probe();
    const unreachable = await this.probing;
    this.probing = undefined;
    if (unreachable) await this.close(unreachable);
  }

  /** Resolves with why the device counts as unreachable, or undefined while it does not. */
  private async probe(): Promise<string | undefined> {
    try {
      if (!this.control || this.control.closed) {
        this.control?.close();
        this.control = await ControlClient.connect(this.endpoint, {
          timeoutMs: this.ctx.requestTimeoutMs,
          connectTimeoutMs: this.ctx.requestTimeoutMs,
        });
        // The link closed while reconnecting: nobody else will close this client.
        if (this.state !== "registered") {
          this.control.close();
          return undefined;
        }
      }
      const record = this.ctx.registry.devices.get(this.deviceId!);
      const first = record?.functions[0];
      if (first) await this.control.cfgRead(first.rid, Header.VENDOR_ID, 2);
      this.lastOk = Date.now();
      await this.followVfs();
      // Counts move only while rules exist: a device without any costs no more requests.
      if (record?.faults?.rules) await this.refreshFaults();
    } catch (e) {
      const silentFor = Date.now() - this.lastOk;
      if (silentFor >= this.ctx.unreachableTimeoutMs)
        return `unreachable for ${silentFor} ms: ${(e as Error).message}`;
    }
    return undefined;
  }

  /** Removes the device (TDIs, then TDEVs) and drops the control connection. Idempotent. */
  async close(reason: string): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    this.control?.close();
    // A probe under way ends first, so that no reconnect outlives the removal.
    await this.probing;
    if (this.deviceId !== undefined) await this.ctx.registry.remove(this.deviceId, reason);
    this.ctx.mmio.release(this);
    this.resolveClosed();
  }
}

export async function startHost(opts: HostOptions = {}): Promise<Host> {
  const log = opts.log ?? silentLogger;
  const probeIntervalMs = opts.probeIntervalMs ?? 1000;
  const bounceTimeoutMs = opts.bounceTimeoutMs ?? 2000;
  const links = new Set<DeviceLink>();
  let stopping = false;

  const registry = new Registry(log, (plan, device) =>
    Bouncer.start({
      targets: { cma: plan.cma?.endpoint, secured: plan.secured?.endpoint },
      host: opts.bounceHost ?? "127.0.0.1",
      timeoutMs: bounceTimeoutMs,
      log: log.child({ bounce: plan.rid, device }),
      capture: opts.capture,
      captureLabel: `${formatRoutingId(plan.rid)}-bounce`,
      // A mailbox that fails may mean the device is gone: check it now rather than on the next tick.
      onUpstreamError: (reason) => {
        registry.bouncerError(plan.rid, reason);
        const control = registry.devices.get(device)?.control;
        if (!control) return;
        for (const l of links) if (sameEndpoint(l.endpoint, control)) void l.check();
      },
    }),
  );
  const ctx: HostContext = {
    log,
    registry,
    requestTimeoutMs: opts.requestTimeoutMs ?? 1000,
    unreachableTimeoutMs: opts.unreachableTimeoutMs ?? 3000,
    mmio: new MmioAllocator({ ...DEFAULT_MMIO_WINDOWS, ...opts.mmioWindows }),
  };

  /** Starts a link; it leaves `links` when it closes. */
  const link = (endpoint: Endpoint, source: string, identity?: DeviceIdentity): DeviceLink => {
    const l = new DeviceLink(ctx, endpoint, source);
    links.add(l);
    void l.closed.then(() => links.delete(l));
    void l.attach(identity);
    return l;
  };

  // Devices given (up front, or later through the API): one link at a time each, re-linked on a tick while absent.
  const given = (opts.devices ?? []).map((d) => ({ ...d, link: undefined as DeviceLink | undefined }));
  const relink = () => {
    for (const g of given) if (!g.link || g.link.state === "closed") g.link = link(g.control, g.source);
  };
  relink();
  const addDevice = (control: Endpoint) => {
    if (stopping || given.some((g) => sameEndpoint(g.control, control))) return;
    given.push({ control, source: GIVEN_SOURCE, link: undefined });
    relink();
  };
  const tick = setInterval(() => {
    relink();
    for (const l of links) void l.check();
  }, probeIntervalMs);

  let hotplug: FramedServer | undefined;
  let api: ApiServer | undefined;
  const stopHost = once(async () => {
    stopping = true;
    clearInterval(tick);
    await hotplug?.close();
    await api?.close();
    await Promise.all([...links].map((l) => l.close("host stopping")));
  });
  const authenticate = (rid: number) =>
    registry.authenticate(rid, (tdev) =>
      authenticateTdev(tdev, { timeoutMs: bounceTimeoutMs, trustRoot: opts.trustRoot }),
    );
  const stop = (link: TdevLink, fn: BindFunction) => stopInterface(link, fn.rid);
  const connect = async (rid: number) => {
    const tdev = registry.tdevs.get(rid);
    if (!tdev) throw new RegistryError("notFound", `no TDEV ${formatRoutingId(rid)}`);
    if (tdev.state === "connected") return "unchanged" as const;
    const bdf = formatRoutingId(rid);
    const mailbox = tdev.secured?.endpoint;
    if (!mailbox) throw new RegistryError("conflict", `TDEV ${bdf} has no secured CMA/SPDM mailbox endpoint`);
    const device = registry.devices.get(tdev.device);
    const ideOffset = device?.functions.find((f) => f.rid === rid)?.ideOffset;
    if (!device || ideOffset === undefined)
      throw new RegistryError("conflict", `TDEV ${bdf} has no IDE capability`);
    await authenticate(rid);
    return registry.connect(
      rid,
      () =>
        connectTdev(rid, {
          mailbox,
          control: device.control,
          ideOffset,
          timeoutMs: bounceTimeoutMs,
          trustRoot: opts.trustRoot,
          keyLog: opts.keyLog,
        }),
      stop,
    );
  };
  const linkOf = (rid: number): DeviceLink => {
    const owner = [...links].find((l) => l.owns(rid));
    if (!owner) throw new RegistryError("notFound", `no function ${formatRoutingId(rid)}`);
    return owner;
  };
  const configRead = (rid: number, offset: number, width: ConfigWidth) =>
    linkOf(rid).liveControl().cfgRead(rid, offset, width);
  // A write may enable or disable VFs: the registry follows at once rather than on the next probe.
  const configWrite = async (rid: number, offset: number, width: ConfigWidth, value: number) => {
    const link = linkOf(rid);
    await link.liveControl().cfgWrite(rid, offset, width, value);
    await link.followVfs();
  };
  /**
   * The host re-checks VFs before it binds, so that it never binds a TDI whose VF is gone nor misses
   * one just enabled (any device's: a new VF is no device's function yet).
   */
  const followAllVfs = () => Promise.all([...links].map((l) => l.followVfs()));
  const faults = (device: string): DeviceFaults => {
    const owner = [...links].find((l) => l.isDevice(device));
    if (!owner) throw new RegistryError("notFound", `no device ${device}`);
    return owner.faults();
  };
  const tsm = {
    registry,
    authenticate,
    connect,
    disconnect: (rid: number) => registry.disconnect(rid, stop),
    bind: async (rid: number, vm: VmId) => {
      await followAllVfs();
      return registry.bind(rid, vm, lockAndStart);
    },
    unbind: (rid: number) => registry.unbind(rid, stop),
    probeTdi: (rid: number) => registry.probeTdi(rid, (link, fn) => interfaceState(link, fn.rid)),
    configRead,
    configWrite,
    addDevice,
    faults,
  };
  try {
    if (opts.hotplug) {
      hotplug = await FramedServer.listen({
        ...opts.hotplug,
        maxPayload: CONTROL_MAX_PAYLOAD,
        // One connection per announced device, held while it is present: the bound is on devices,
        // and a topology of hundreds of devices in namespaces announces them all here.
        maxConnections: HOTPLUG_MAX_DEVICES,
        log,
        onConnection: (conn) => {
          if (stopping) conn.destroy();
          else onAnnounceConnection(conn, log, (control, identity) => link(control, "hotplug", identity));
        },
      });
    }
    api = await startApi({
      ...(opts.api ?? { host: "127.0.0.1", port: 0 }),
      tsm,
      log,
      requestTimeoutMs: opts.apiRequestTimeoutMs,
      maxConnections: opts.apiMaxConnections,
    });
    return { ...tsm, api: api.address, hotplug: hotplug?.address, stop: stopHost };
  } catch (e) {
    await stopHost();
    throw e;
  }
}

/**
 * A hotplug connection carries one ANNOUNCE; the device stays as long as the connection does.
 * Anything else on it closes the connection.
 */
function onAnnounceConnection(
  conn: FramedConnection,
  log: Logger,
  link: (control: Endpoint, identity: DeviceIdentity) => DeviceLink,
): void {
  let device: DeviceLink | undefined;
  conn.once("close", () => void device?.close("announce connection closed"));
  conn.on("frame", (frame) => {
    let msg: ControlMessage;
    try {
      msg = decodeControlFrame(frame);
    } catch (e) {
      log.warn(
        { peer: conn.peer, err: (e as Error).message },
        "malformed frame on the hotplug port; closing",
      );
      conn.destroy();
      return;
    }
    if (msg.kind !== "announce" || device) {
      log.warn({ peer: conn.peer, kind: msg.kind }, "expected one ANNOUNCE on the hotplug port; closing");
      conn.destroy();
      return;
    }
    // A device bound to a wildcard address is reached where its announce came from.
    const wildcard = msg.control.host === "0.0.0.0" || msg.control.host === "::";
    const host = wildcard ? (conn.socket.remoteAddress ?? "127.0.0.1") : msg.control.host;
    device = link({ host, port: msg.control.port }, msg.identity);
    // Dropped by the host (refused, unreachable): closing its announce connection tells the device.
    void device.closed.then(() => conn.destroy());
  });
}
