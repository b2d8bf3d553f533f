/**
 * A mailbox's TCP endpoint (the mailbox wire): the spdm-emu socket protocol with transport PCI_DOE
 * in front of a Mailbox; SHUTDOWN ends the device process.
 */
import type { Logger } from "../log.js";
import type { PcapCapture } from "../net/capture.js";
import { type FramedConnection, FramedServer } from "../net/framed.js";
import { type SpdmEmuHandlers, serveSpdmEmu } from "../net/spdm-emu-server.js";
import { applyDoeFault, doeSite } from "./fault-injection.js";
import type { FaultSet } from "./faults.js";
import type { Mailbox } from "./mailbox.js";

export interface MailboxEndpointOptions {
  mailbox: Mailbox;
  host: string;
  port: number;
  log: Logger;
  /** Called after a SHUTDOWN frame has been echoed. */
  onShutdown: () => void;
  /** Told of each connection, by its origin as the mailbox sees it, when it is accepted and when it closes. */
  peers?: { join(origin: string): void; leave(origin: string): void };
  /** Records each connection into its own pcap file, named by `captureLabel` (function and mailbox). */
  capture?: PcapCapture;
  captureLabel?: string;
  /** spdm-emu's OOB_ENCAP_KEY_UPDATE for a session of the mailbox's SPDM responder. */
  encapKeyUpdate?: SpdmEmuHandlers["encapKeyUpdate"];
  /** spdm-emu's OOB_ENCAP_ENDPOINT_INFO for the mailbox's SPDM responder. */
  encapEndpointInfo?: SpdmEmuHandlers["encapEndpointInfo"];
  /** The device's fault rules, where this mailbox sits, and what an `exit` fault does. */
  faults?: { set: FaultSet; rid: number; mailbox: number; exit: () => void };
}

const EMPTY: Buffer = Buffer.alloc(0);

export function startMailboxEndpoint(opts: MailboxEndpointOptions): Promise<FramedServer> {
  const { log } = opts;
  return FramedServer.listen({
    host: opts.host,
    port: opts.port,
    log,
    onConnection: (conn) => serveConnection(conn, opts, log.child({ conn: conn.peer })),
  });
}

function serveConnection(conn: FramedConnection, opts: MailboxEndpointOptions, log: Logger): void {
  const { mailbox, onShutdown } = opts;
  const origin = `tcp:${conn.peer}`;
  log.info("connected");
  opts.capture?.attach(conn, opts.captureLabel ?? "mailbox");
  opts.peers?.join(origin);
  conn.once("close", () => {
    log.info("disconnected");
    opts.peers?.leave(origin);
  });
  serveSpdmEmu(conn, log, {
    // No object from the mailbox: an empty NORMAL frame, so a socket peer is never left waiting.
    normal: (payload, reply) => {
      const submit = (done: (response: Buffer | undefined) => void) => mailbox.submit(payload, origin, done);
      const f = opts.faults;
      const fault = f?.set.armed ? f.set.take(doeSite(payload, f.rid, f.mailbox)) : undefined;
      if (!fault) return submit((response) => reply(response ?? EMPTY));
      applyDoeFault(fault, { submit, reply, close: () => conn.destroy(), exit: f!.exit });
    },
    end: (command) => {
      if (command === "SHUTDOWN") onShutdown();
    },
    encapKeyUpdate: opts.encapKeyUpdate,
    encapEndpointInfo: opts.encapEndpointInfo,
  });
}
