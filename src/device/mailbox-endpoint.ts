/**
 * A mailbox's TCP endpoint (the mailbox wire): the spdm-emu socket protocol with transport PCI_DOE
 * in front of a Mailbox; SHUTDOWN ends the device process.
 */
import type { Logger } from "../log.js";
import { type FramedConnection, FramedServer } from "../net/framed.js";
import { serveSpdmEmu } from "../net/spdm-emu-server.js";
import type { Mailbox } from "./mailbox.js";

export interface MailboxEndpointOptions {
  mailbox: Mailbox;
  host: string;
  port: number;
  log: Logger;
  /** Called after a SHUTDOWN frame has been echoed. */
  onShutdown: () => void;
}

const EMPTY: Buffer = Buffer.alloc(0);

export function startMailboxEndpoint(opts: MailboxEndpointOptions): Promise<FramedServer> {
  const { mailbox, log } = opts;
  return FramedServer.listen({
    host: opts.host,
    port: opts.port,
    log,
    onConnection: (conn) => serveConnection(conn, mailbox, log.child({ conn: conn.peer }), opts.onShutdown),
  });
}

function serveConnection(
  conn: FramedConnection,
  mailbox: Mailbox,
  log: Logger,
  onShutdown: () => void,
): void {
  const origin = `tcp:${conn.peer}`;
  log.info("connected");
  conn.once("close", () => log.info("disconnected"));
  serveSpdmEmu(conn, log, {
    // No object from the mailbox: an empty NORMAL frame, so a socket peer is never left waiting.
    normal: (payload, reply) => mailbox.submit(payload, origin, (response) => reply(response ?? EMPTY)),
    end: (command) => {
      if (command === "SHUTDOWN") onShutdown();
    },
  });
}
