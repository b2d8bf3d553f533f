/**
 * A mailbox's TCP endpoint (W1): the spdm-emu socket protocol with transport PCI_DOE in front of a
 * Mailbox. Frames of one connection are handled strictly in order, so replies never overtake.
 */
import {
  commandName,
  SocketCommand,
  type SocketFrame,
  TEST_SERVER_HELLO,
  TransportType,
} from "../../protocol/socket.js";
import type { Logger } from "../log.js";
import { type FramedConnection, FramedServer } from "../net/framed.js";
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

/**
 * Serves one connection. Frames are handled strictly in order: while a NORMAL frame waits for the
 * mailbox, later frames wait too. A mailbox that answers at once is answered within the same read.
 */
function serveConnection(
  conn: FramedConnection,
  mailbox: Mailbox,
  log: Logger,
  onShutdown: () => void,
): void {
  const origin = `tcp:${conn.peer}`;
  const pending: SocketFrame[] = [];
  let waiting = false;
  let pumping = false;
  log.info("connected");
  conn.once("close", () => log.info("disconnected"));
  conn.on("frame", (frame) => {
    pending.push(frame);
    pump();
  });

  const reply = (command: number, payload: Buffer = EMPTY) =>
    conn.send({ command, transport: TransportType.PCI_DOE, payload });

  function pump(): void {
    if (pumping) return;
    pumping = true;
    while (!waiting && pending.length > 0) handleFrame(pending.shift()!);
    pumping = false;
  }

  function handleFrame(frame: SocketFrame): void {
    if (conn.closed) return;
    if (frame.transport !== TransportType.PCI_DOE) {
      log.warn({ transport: frame.transport }, "transport type is not PCI_DOE; closing connection");
      conn.destroy();
      return;
    }
    switch (frame.command) {
      case SocketCommand.TEST:
        reply(SocketCommand.TEST, TEST_SERVER_HELLO);
        return;
      case SocketCommand.NORMAL:
        waiting = true;
        mailbox.submit(frame.payload, origin, (response) => {
          // No object from the mailbox: an empty NORMAL frame, so a socket peer is never left waiting.
          reply(SocketCommand.NORMAL, response ?? EMPTY);
          waiting = false;
          pump();
        });
        return;
      case SocketCommand.CONTINUE:
        reply(SocketCommand.CONTINUE);
        conn.end();
        return;
      case SocketCommand.SHUTDOWN:
        reply(SocketCommand.SHUTDOWN);
        conn.end();
        log.info("SHUTDOWN received");
        onShutdown();
        return;
      default:
        log.warn({ command: commandName(frame.command) }, "unknown command; closing connection");
        reply(SocketCommand.UNKNOWN);
        conn.end();
    }
  }
}
