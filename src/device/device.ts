/**
 * One emulated device: its mailboxes (each a TCP endpoint), its config space behind the control
 * endpoint, and optionally its hotplug announcement to a host. Usable in-process (tests, fixture)
 * and as the body of the `doe-emu device` process.
 */
import { type DoeProtocol, DoeType, PCI_SIG_VENDOR_ID } from "../../protocol/doe.js";
import { formatRoutingId, routingId } from "../../protocol/pci.js";
import type { Logger } from "../log.js";
import type { Endpoint, FramedConnection, FramedServer } from "../net/framed.js";
import { SpdmResponder } from "../spdm/responder.js";
import { responderConfig } from "../spdm/responder-settings.js";
import { CertificateSlots } from "../spdm/responder-slots.js";
import { announce } from "./announce.js";
import { startControlServer } from "./control-server.js";
import { DEFAULT_MAILBOX_PORT, type DeviceDescription } from "./description.js";
import { Mailbox } from "./mailbox.js";
import { startMailboxEndpoint } from "./mailbox-endpoint.js";
import { DeviceModel } from "./model.js";

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
  let shutdownCalled = false;
  const onShutdown = () => {
    if (shutdownCalled) return;
    shutdownCalled = true;
    opts.onShutdown?.();
  };
  const closeAll = async () => {
    await Promise.all(servers.map((s) => s.close()));
  };

  // The device's SPDM identity, shared by its mailboxes; bad key or certificate files fail here.
  const spdmConfig = responderConfig(desc.spdm);
  const spdmSlots = CertificateSlots.fromSettings(desc.spdm.slots, spdmConfig.asym);

  try {
    let first = true;
    for (const [fi, fn] of desc.functions.entries()) {
      const fnMailboxes: Mailbox[] = [];
      const fnEndpoints: Endpoint[] = [];
      const fnServers: FramedServer[] = [];
      const bdf = formatRoutingId(routingId(desc.bus, desc.device, fn.function));
      // One SPDM endpoint per function, as a device's DSM is: every mailbox of the function (socket
      // endpoint and registers alike) reaches the same connection state and sessions, so CMA on one
      // mailbox and secured CMA on another work together.
      const responder = new SpdmResponder(
        spdmConfig,
        spdmSlots,
        log.child({ function: bdf, protocol: "spdm" }),
      );
      const watch = onLastClose(fnServers, () => {
        if (responder.sessionCount > 0)
          responder.endSessions("the function's last mailbox connection closed");
      });
      for (const [mi, mb] of fn.mailboxes.entries()) {
        const id = `${bdf}/${mi}`;
        const mlog = log.child({ mailbox: id });
        const mailbox = new Mailbox(mb.protocols, mlog);
        mailbox.register({ vendorId: PCI_SIG_VENDOR_ID, type: DoeType.CMA_SPDM }, (req) => {
          watch();
          return responder.handle(req.payload);
        });
        mailbox.register({ vendorId: PCI_SIG_VENDOR_ID, type: DoeType.SECURED_CMA_SPDM }, (req) => {
          watch();
          return responder.handleSecured(req.payload);
        });
        const port =
          first && opts.port !== undefined ? opts.port : (mb.port ?? (first ? DEFAULT_MAILBOX_PORT : 0));
        first = false;
        const server = await startMailboxEndpoint({ mailbox, host: ip, port, log: mlog, onShutdown });
        servers.push(server);
        fnServers.push(server);
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
    const model = new DeviceModel(desc, mailboxes, endpoints);
    const control = await startControlServer({
      model,
      host: ip,
      port: opts.controlPort ?? 0,
      log: log.child({ endpoint: "control" }),
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
    let stopped: Promise<void> | undefined;
    return {
      name: desc.name,
      mailboxes: infos,
      control: control.address,
      model,
      stop: () => {
        stopped ??= (async () => {
          announcement?.close();
          await closeAll();
        })();
        return stopped;
      },
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/**
 * Calls `idle` whenever the last open connection of `servers` closes. Sessions belong to the
 * function, not to a connection (responder-sessions.ts): they end when nobody is connected any
 * more, not when one of several connections goes. The returned function, called per request,
 * watches the connections that opened since; a closing connection hands the watch to the others.
 */
function onLastClose(servers: readonly FramedServer[], idle: () => void): () => void {
  const watched = new WeakSet<FramedConnection>();
  const open = () => servers.reduce((n, s) => n + s.connections.size, 0);
  const watchAll = () => {
    for (const server of servers) {
      for (const c of server.connections) {
        if (watched.has(c)) continue;
        watched.add(c);
        // The server drops a closed connection from its set before this runs (its listener came first).
        c.once("close", () => (open() === 0 ? idle() : watchAll()));
      }
    }
  };
  return watchAll;
}
