/**
 * pcap captures of the mailbox wire (`--pcap DIR`): one file per TCP connection, in the format
 * DMTF spdm-dump reads (protocol/pcap.ts, link type PCI_DOE): every NORMAL frame's DOE object,
 * both directions, in the order this end sent and received them, with microsecond wall-clock
 * timestamps. Each record goes out in one synchronous write, so a process killed at any moment
 * leaves a file whose whole records all decode. Capturing must never take the process down: the
 * first failed write (disk full, directory gone) is logged once and ends all capturing.
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import {
  encodePcapHeader,
  encodePcapRecord,
  LinkType,
  PCAP_MAX_SPDM_DUMP_SNAPLEN,
} from "../../protocol/pcap.js";
import { SocketCommand, type SocketFrame, TransportType } from "../../protocol/socket.js";
import type { Logger } from "../log.js";
import type { FramedConnection } from "./framed.js";

export interface CaptureOptions {
  dir: string;
  /** The process kind that starts each file name ("device", "host", "requester"). */
  process: string;
  /** Longest record kept; longer objects are cut, their real length kept (default 65536, spdm-dump's limit). */
  snaplen?: number;
  log: Logger;
}

/** Wall-clock microseconds that never go backwards: Date.now() once, the monotonic clock since. */
function microsecondClock(): () => bigint {
  const epochUs = BigInt(Date.now()) * 1000n;
  const start = process.hrtime.bigint();
  return () => epochUs + (process.hrtime.bigint() - start) / 1000n;
}

/** A process's capture directory: names the files and owns the one "stop on failure" switch. */
export class PcapCapture {
  readonly snaplen: number;
  private readonly log: Logger;
  private readonly counts = new Map<string, number>();
  private readonly now = microsecondClock();
  private failed = false;

  constructor(private readonly opts: CaptureOptions) {
    this.snaplen = opts.snaplen ?? PCAP_MAX_SPDM_DUMP_SNAPLEN;
    if (!Number.isInteger(this.snaplen) || this.snaplen < 1 || this.snaplen > 0xffffffff)
      throw new RangeError(`pcap snaplen ${this.snaplen} is not 1..2^32-1`);
    this.log = opts.log.child({ capture: opts.dir });
    mkdirSync(opts.dir, { recursive: true });
  }

  get stopped(): boolean {
    return this.failed;
  }

  /**
   * Records `conn` into `<process>-<pid>-<label>-c<n>.pcap` (n counts this label's connections
   * from 1) until it closes. `label` names the function and mailbox, e.g. "01-00.0-mb0".
   */
  attach(conn: FramedConnection, label: string): void {
    if (this.failed) return;
    const n = (this.counts.get(label) ?? 0) + 1;
    this.counts.set(label, n);
    const name = `${this.opts.process}-${process.pid}-${label.replace(/[^\w.-]/g, "-")}-c${n}.pcap`;
    const path = join(this.opts.dir, name);
    let fd: number | undefined;
    try {
      fd = openSync(path, "w");
      this.write(fd, encodePcapHeader({ snaplen: this.snaplen, linkType: LinkType.PCI_DOE }));
    } catch (e) {
      this.fail(e, path);
    }
    if (fd === undefined || this.failed) return;
    const file = fd;
    this.log.debug({ file: name }, "capturing connection");
    conn.tap = (frame) => this.record(file, name, frame);
    conn.once("close", () => {
      conn.tap = undefined;
      try {
        closeSync(file);
      } catch {
        // Already failed and closed, or the descriptor is gone: nothing left to keep.
      }
    });
  }

  private record(fd: number, name: string, frame: SocketFrame): void {
    // Only DOE objects are the conversation: TEST, SHUTDOWN and empty "no answer" frames are socket-level.
    if (this.failed || frame.command !== SocketCommand.NORMAL || frame.transport !== TransportType.PCI_DOE)
      return;
    const object = frame.payload;
    if (object.length === 0) return;
    const data = object.length > this.snaplen ? object.subarray(0, this.snaplen) : object;
    if (data !== object)
      this.log.warn(
        { file: name, bytes: object.length, snaplen: this.snaplen },
        "DOE object longer than the pcap snaplen: record truncated (orig_len keeps its length)",
      );
    try {
      this.write(fd, encodePcapRecord({ timeUs: this.now(), data, origLen: object.length }));
    } catch (e) {
      this.fail(e, join(this.opts.dir, name));
    }
  }

  private write(fd: number, bytes: Buffer): void {
    const written = writeSync(fd, bytes);
    if (written !== bytes.length) throw new Error(`short write: ${written} of ${bytes.length} bytes`);
  }

  private fail(e: unknown, path: string): void {
    if (this.failed) return;
    this.failed = true;
    this.log.error({ file: path, err: (e as Error).message }, "pcap capture failed; capturing stopped");
  }
}
