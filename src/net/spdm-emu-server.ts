/**
 * The server side of the mailbox wire: DMTF spdm-emu's socket protocol (protocol/socket.ts),
 * transport PCI_DOE, as both a device's mailbox endpoint and the host's bouncer speak it. Frames of
 * one connection are handled strictly in order: while a NORMAL or OOB frame waits for its answer,
 * later frames wait too; an answer given at once goes out within the same read.
 */
import {
  commandName,
  decodeEncapKeyUpdate,
  SocketCommand,
  type SocketFrame,
  TEST_SERVER_HELLO,
  TransportType,
} from "../../protocol/socket.js";
import type { Logger } from "../log.js";
import type { FramedConnection } from "./framed.js";

export interface SpdmEmuHandlers {
  /** One DOE object in; call `reply` once with the answer object, or an empty buffer for "none". */
  normal(payload: Buffer, reply: (object: Buffer) => void): void;
  /** A SHUTDOWN or CONTINUE was echoed and the connection is ending. */
  end?(command: "SHUTDOWN" | "CONTINUE"): void;
  /**
   * OOB_ENCAP_KEY_UPDATE (the session ID, or 0 when none is given); call `done` once to echo it.
   * Without it the command is unknown.
   */
  encapKeyUpdate?(sessionId: number, done: () => void): void;
  /** OOB_ENCAP_ENDPOINT_INFO; call `done` once to echo it. Without it the command is only acknowledged. */
  encapEndpointInfo?(done: () => void): void;
}

const EMPTY: Buffer = Buffer.alloc(0);
/** Frames read but not yet handled, per connection, before reading from the peer stops. */
const MAX_PENDING_FRAMES = 32;

export function serveSpdmEmu(conn: FramedConnection, log: Logger, handlers: SpdmEmuHandlers): void {
  const pending: SocketFrame[] = [];
  let waiting = false;
  let pumping = false;
  /** SHUTDOWN, CONTINUE or an unknown command ended the session: later frames are dropped. */
  let ended = false;
  conn.on("frame", (frame) => {
    pending.push(frame);
    if (pending.length >= MAX_PENDING_FRAMES) conn.holdReading(true);
    pump();
  });

  const reply = (command: number, payload: Buffer = EMPTY) =>
    conn.send({ command, transport: TransportType.PCI_DOE, payload });

  /** Later frames wait until the returned callback answers this one with `command`. */
  function answerLater(command: number): (payload?: Buffer) => void {
    waiting = true;
    return (payload = EMPTY) => {
      reply(command, payload);
      waiting = false;
      pump();
    };
  }

  function pump(): void {
    if (pumping) return;
    pumping = true;
    while (!waiting && pending.length > 0) handleFrame(pending.shift()!);
    if (pending.length < MAX_PENDING_FRAMES) conn.holdReading(false);
    pumping = false;
  }

  function handleFrame(frame: SocketFrame): void {
    if (ended || conn.closed) return;
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
        handlers.normal(frame.payload, answerLater(SocketCommand.NORMAL));
        return;
      // Echoed as spdm_responder_emu does, with no payload (a request may follow through encapsulation).
      case SocketCommand.OOB_ENCAP_ENDPOINT_INFO:
        if (handlers.encapEndpointInfo) handlers.encapEndpointInfo(answerLater(frame.command));
        else reply(frame.command);
        return;
      case SocketCommand.CONTINUE:
      case SocketCommand.SHUTDOWN: {
        const name = frame.command === SocketCommand.SHUTDOWN ? "SHUTDOWN" : "CONTINUE";
        log.info(`${name} received`);
        ended = true;
        reply(frame.command);
        conn.end();
        handlers.end?.(name);
        return;
      }
      case SocketCommand.OOB_ENCAP_KEY_UPDATE:
        if (!handlers.encapKeyUpdate) break;
        handlers.encapKeyUpdate(decodeEncapKeyUpdate(frame.payload), answerLater(frame.command));
        return;
    }
    // Every case that handles its command returned.
    log.warn({ command: commandName(frame.command) }, "unknown command; closing connection");
    ended = true;
    reply(SocketCommand.UNKNOWN);
    conn.end();
  }
}
