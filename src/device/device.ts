/**
 * One emulated device: its mailboxes (each a TCP endpoint), its config space behind the control
 * endpoint, and optionally its hotplug announcement to a host. Usable in-process (tests, fixture)
 * and as the body of the `doe-emu device` process.
 */
import { type DoeProtocol, DoeType, PCI_SIG_VENDOR_ID } from "../../protocol/doe.js";
import { formatRoutingId, routingId } from "../../protocol/pci.js";
import type { Logger } from "../log.js";
import type { PcapCapture } from "../net/capture.js";
import type { Endpoint, FramedServer } from "../net/framed.js";
import { once } from "../once.js";
import { Provisioning } from "../spdm/provisioning.js";
import { SpdmResponder } from "../spdm/responder.js";
import { responderConfig } from "../spdm/responder-settings.js";
import { CertificateSlots } from "../spdm/responder-slots.js";
import type { KeyLog } from "../spdm/session.js";
import { announce } from "./announce.js";
import { startControlServer } from "./control-server.js";
import { CxlIdeKmEngine } from "./cxl-ide-km.js";
import { CxlTspEngine } from "./cxl-tsp.js";
import { DEFAULT_MAILBOX_PORT, type DeviceDescription } from "./description.js";
import { ideKmEngine, spdmHandler, tdispEngine } from "./fault-injection.js";
import { FaultSet } from "./faults.js";
import { IdeKmEngine } from "./ide-km.js";
import { Mailbox } from "./mailbox.js";
import { startMailboxEndpoint } from "./mailbox-endpoint.js";
import { DeviceModel } from "./model.js";
import { type PciSigEngines, pciSigHandler } from "./pcisig-vdm.js";
import { TdispEngine } from "./tdisp.js";

export interface DeviceOptions {
  description: DeviceDescription;
  /** Address every endpoint binds to. */
  ip?: string;
  /** Port of the first mailbox (overrides the description); later mailboxes without a port take any free one. */
  port?: number;
  controlPort?: number;
  /** The host's hotplug endpoint to announce this device to. */
  host?: Endpoint;
  log: Logger;
  /** Called once when a peer sends SHUTDOWN. */
  onShutdown?: () => void;
  /** Records every mailbox connection (`--pcap`). */
  capture?: PcapCapture;
  /** Where each established session's secret goes (`--keylog`). */
  keyLog?: KeyLog;
  /** Where SET_CERTIFICATE / SET_KEY_PAIR_INFO state persists (`--state-dir`); in memory without. */
  stateDir?: string;
  /** What an `exit` fault does; default: the device stops (the CLI exits the process instead). */
  onFaultExit?: () => void;
}

export interface MailboxInfo {
  /** "bb:dd.f/i": the function and the mailbox's index on it. */
  id: string;
  functionIndex: number;
  index: number;
  endpoint: Endpoint;
  protocols: DoeProtocol[];
}

export interface RunningDevice {
  name: string;
  mailboxes: MailboxInfo[];
  control: Endpoint;
  model: DeviceModel;
  tdisp: TdispEngine;
  /** The CXL TSP engine, when the description has `cxlTsp` (served at function 0). */
  cxlTsp?: CxlTspEngine;
  /** The fault rules, from the description and the control wire. */
  faults: FaultSet;
  /** Closes every endpoint and connection; idempotent. */
  stop(): Promise<void>;
}

export async function startDevice(opts: DeviceOptions): Promise<RunningDevice> {
  const { description: desc, log } = opts;
  const ip = opts.ip ?? "127.0.0.1";
  const servers: FramedServer[] = [];
  const mailboxes: Mailbox[][] = [];
  const endpoints: Endpoint[][] = [];
  const infos: MailboxInfo[] = [];
  const functionUsers: SessionUsers[] = [];
  const functionEngines: PciSigEngines[] = [];
  const responders: SpdmResponder[] = [];
  const onShutdown = once(() => opts.onShutdown?.());
  const closeAll = async () => {
    await Promise.all(servers.map((s) => s.close()));
  };

  // The device's SPDM identity, shared by its mailboxes; bad key or certificate files fail here.
  const described = responderConfig(desc.spdm);
  const spdmSlots = CertificateSlots.fromSettings(desc.spdm.slots, described.asym);
  const provisioning = new Provisioning(spdmSlots, opts.stateDir);
  const spdmConfig = { ...described, keyLog: opts.keyLog, provisioning };
  const faults = new FaultSet(log.child({ endpoint: "faults" }), desc.faults);
  let stopDevice: () => Promise<void> = closeAll;
  const onFaultExit = opts.onFaultExit ?? (() => void stopDevice());

  try {
    let first = true;
    for (const [fi, fn] of desc.functions.entries()) {
      const fnMailboxes: Mailbox[] = [];
      const fnEndpoints: Endpoint[] = [];
      const rid = routingId(desc.bus, desc.device, fn.function);
      const bdf = formatRoutingId(rid);
      // One SPDM endpoint per function, as a device's DSM is: every mailbox of the function (socket
      // endpoint and registers alike) reaches the same connection state and sessions, so CMA on one
      // mailbox and secured CMA on another work together.
      // The function's IDE-KM, TDISP, CXL IDE-KM and CXL TSP engines, installed once the device model exists.
      const engines: PciSigEngines = {};
      functionEngines.push(engines);
      const responder = new SpdmResponder(
        spdmConfig,
        spdmSlots,
        log.child({ function: bdf, protocol: "spdm" }),
        pciSigHandler(engines, log.child({ function: bdf, protocol: "vdm" })),
      );
      const users = new SessionUsers(() => {
        if (responder.sessionCount > 0) responder.endSessions("the function's last SPDM peer left");
      });
      functionUsers.push(users);
      responders.push(responder);
      for (const [mi, mb] of fn.mailboxes.entries()) {
        const id = `${bdf}/${mi}`;
        const mlog = log.child({ mailbox: id });
        // Control connections become the function's peers by sending through its registers.
        const mailbox = new Mailbox(mb.protocols, mlog, (origin) => users.join(origin));
        mailbox.register(
          { vendorId: PCI_SIG_VENDOR_ID, type: DoeType.CMA_SPDM },
          spdmHandler(responder, faults, rid, mi),
        );
        mailbox.register({ vendorId: PCI_SIG_VENDOR_ID, type: DoeType.SECURED_CMA_SPDM }, (req) =>
          responder.handleSecured(req.payload),
        );
        const port =
          first && opts.port !== undefined ? opts.port : (mb.port ?? (first ? DEFAULT_MAILBOX_PORT : 0));
        first = false;
        const server = await startMailboxEndpoint({
          mailbox,
          host: ip,
          port,
          log: mlog,
          onShutdown,
          peers: users,
          capture: opts.capture,
          captureLabel: `${bdf}-mb${mi}`,
          // Echoed whether or not anything was armed, as spdm_responder_emu does.
          encapKeyUpdate: (sessionId, done) => {
            responder.requestKeyUpdate(sessionId);
            done();
          },
          encapEndpointInfo: (done) => {
            responder.requestEndpointInfo();
            done();
          },
          faults: { set: faults, rid, mailbox: mi, exit: onFaultExit },
        });
        servers.push(server);
        fnMailboxes.push(mailbox);
        fnEndpoints.push(server.address);
        infos.push({
          id,
          functionIndex: fi,
          index: mi,
          endpoint: server.address,
          protocols: [...mb.protocols],
        });
      }
      mailboxes.push(fnMailboxes);
      endpoints.push(fnEndpoints);
    }
    const model = new DeviceModel(desc, mailboxes, endpoints, undefined, faults);
    // A PF's Function Level Reset is the reset CERT_INSTALL_RESET_CAP's pending installs and
    // SET_KEY_PAIR_RESET_CAP's key-pair changes wait for (the functions share one SPDM identity);
    // a restart is the other (Provisioning's constructor).
    const pfRids = new Set(desc.functions.map((f) => routingId(desc.bus, desc.device, f.function)));
    model.onConfigChange((rid, change) => {
      if (change.kind === "flr" && pfRids.has(rid) && provisioning.reset())
        log.info(
          { function: formatRoutingId(rid) },
          "Function Level Reset: pending certificate installs and key-pair changes done",
        );
    });
    const tdisp = new TdispEngine(model, log.child({ protocol: "tdisp" }));
    for (const [fi, fn] of desc.functions.entries()) {
      const rid = routingId(desc.bus, desc.device, fn.function);
      const engines = functionEngines[fi]!;
      if (fn.ide) {
        const ideKm = new IdeKmEngine(
          model,
          rid,
          fn.ide.portIndex,
          log.child({ function: formatRoutingId(rid), protocol: "ide-km" }),
        );
        engines.IDE_KM = ideKmEngine((message) => ideKm.handle(message), faults, rid);
      }
      if (fn.cxl?.ide) {
        const cxlIdeKm = new CxlIdeKmEngine(
          rid,
          fn.cxl.ide,
          log.child({ function: formatRoutingId(rid), protocol: "cxl-ide-km" }),
        );
        engines.CXL_IDE_KM = (message) => cxlIdeKm.handle(message);
      }
      // One TDISP engine for the device, taking requests at each TDEV function (docs/ARCHITECTURE.md).
      if (tdisp.servesAt(rid)) {
        engines.TDISP = tdispEngine(tdisp, faults, rid);
        responders[fi]!.onSessionEnd((sessionId) => tdisp.sessionEnded(rid, sessionId));
      }
    }
    // CXL TSP at function 0, its state per SPDM connection of that function's responder.
    const cxlTsp = desc.cxlTsp && new CxlTspEngine(desc.cxlTsp, log.child({ protocol: "cxl-tsp" }));
    if (cxlTsp) {
      const f0 = desc.functions.findIndex((f) => f.function === 0);
      functionEngines[f0]!.CXL_TSP = (message, ctx) => cxlTsp.handle(message, ctx);
      responders[f0]!.onNewConnection(() => cxlTsp.connectionReset());
    }
    const control = await startControlServer({
      model,
      faults,
      host: ip,
      port: opts.controlPort ?? 0,
      log: log.child({ endpoint: "control" }),
      // A control connection may have driven any function's DOE registers.
      onClose: (writer) => {
        for (const users of functionUsers) users.leave(writer);
      },
    });
    servers.push(control);
    const announcement = opts.host
      ? await announce({
          host: opts.host,
          control: control.address,
          model,
          log: log.child({ endpoint: "announce" }),
        })
      : undefined;
    stopDevice = once(async () => {
      announcement?.close();
      await closeAll();
    });
    return {
      name: desc.name,
      mailboxes: infos,
      control: control.address,
      model,
      tdisp,
      cxlTsp,
      faults,
      stop: stopDevice,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/**
 * Who can still reach a function's SPDM sessions. Sessions belong to the function, as a device's
 * security manager holds them, not to one connection: they end on END_SESSION, when the device
 * stops, or when the function's last peer leaves. Its peers are the open connections to its
 * mailboxes (joined when accepted, `tcp:…`) and the control connections that have sent a DOE
 * object through its registers (joined then, `cfg:…`); each leaves when its connection closes. So a
 * session opened through the registers lives as long as the control connection that opened it,
 * whatever socket peers come and go. Peers join only while connected, never after they left.
 */
class SessionUsers {
  private readonly peers = new Set<string>();

  constructor(private readonly idle: () => void) {}

  join(origin: string): void {
    this.peers.add(origin);
  }

  leave(origin: string): void {
    if (this.peers.delete(origin) && this.peers.size === 0) this.idle();
  }
}
