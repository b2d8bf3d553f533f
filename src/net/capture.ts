/**
 * pcap captures of the mailbox wire (`--pcap DIR`): one file per TCP connection, in the format
 * DMTF spdm-dump reads (protocol/pcap.ts, link type PCI_DOE): every NORMAL frame's DOE object,
 * both directions, in the order this end sent and received them, with microsecond wall-clock
 * timestamps. Records are written whole with synchronous writes, so a process killed at any moment
 * leaves a file whose records all decode. To cost one system call per round trip rather than two,
 * a record waits for the next one (a request for its response) and both go in one write; a record
 * still waiting is written when the connection closes or the process exits, so only SIGKILL loses
 * it (the last request, unanswered). Capturing must never take the process down: the first failed
 * write (disk full, directory gone) is logged once and ends all capturing.
 */
import { closeSync, mkdirSync, openSync, writevSync } from "node:fs";
import { join } from "node:path";
// Imported: Node 20's global performance is an accessor, paid on every record.
import { performance } from "node:perf_hooks";
import {
  encodePcapHeader,
  encodePcapRecordHeader,
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

/** Wall-clock microseconds that never go backwards: the process's start time plus the monotonic clock. */
const microseconds = () => Math.floor((performance.timeOrigin + performance.now()) * 1000);

/** One connection's file and the record waiting for its partner. */
interface CaptureFile {
  fd: number;
  name: string;
  waiting: Buffer[];
}

/** A process's capture directory: names the files and owns the one "stop on failure" switch. */
export class PcapCapture {
  readonly snaplen: number;
  private readonly log: Logger;
  private readonly counts = new Map<string, number>();
  private failed = false;
  private readonly open = new Set<CaptureFile>();

  constructor(private readonly opts: CaptureOptions) {
    this.snaplen = opts.snaplen ?? PCAP_MAX_SPDM_DUMP_SNAPLEN;
    if (!Number.isInteger(this.snaplen) || this.snaplen < 1 || this.snaplen > 0xffffffff)
      throw new RangeError(`pcap snaplen ${this.snaplen} is not 1..2^32-1`);
    this.log = opts.log.child({ capture: opts.dir });
    mkdirSync(opts.dir, { recursive: true });
    process.once("exit", () => {
      for (const file of this.open) this.flush(file);
    });
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
    const file: CaptureFile = { fd, name, waiting: [] };
    this.open.add(file);
    this.log.debug({ file: name }, "capturing connection");
    conn.tap = (frame) => this.record(file, frame);
    conn.once("close", () => {
      conn.tap = undefined;
      this.flush(file);
      this.open.delete(file);
      try {
        closeSync(fd);
      } catch {
        // Already failed and closed, or the descriptor is gone: nothing left to keep.
      }
    });
  }

  private record(file: CaptureFile, frame: SocketFrame): void {
    // Only DOE objects are the conversation: TEST, SHUTDOWN and empty "no answer" frames are socket-level.
    if (this.failed || frame.command !== SocketCommand.NORMAL || frame.transport !== TransportType.PCI_DOE)
      return;
    const object = frame.payload;
    if (object.length === 0) return;
    const data = object.length > this.snaplen ? object.subarray(0, this.snaplen) : object;
    if (data !== object)
      this.log.warn(
        { file: file.name, bytes: object.length, snaplen: this.snaplen },
        "DOE object longer than the pcap snaplen: record truncated (orig_len keeps its length)",
      );
    const record = [encodePcapRecordHeader(microseconds(), data.length, object.length), data];
    if (file.waiting.length === 0) file.waiting = record;
    else this.flush(file, record);
  }

  /** Writes the waiting record, and `record` after it, in one writev (whole records or nothing). */
  private flush(file: CaptureFile, record: Buffer[] = []): void {
    const parts = [...file.waiting, ...record];
    file.waiting = [];
    if (parts.length === 0 || this.failed) return;
    try {
      this.write(file.fd, ...parts);
    } catch (e) {
      this.fail(e, join(this.opts.dir, file.name));
    }
  }

  private write(fd: number, ...parts: Buffer[]): void {
    const written = writevSync(fd, parts);
    const length = parts.reduce((n, p) => n + p.length, 0);
    if (written !== length) throw new Error(`short write: ${written} of ${length} bytes`);
  }

  private fail(e: unknown, path: string): void {
    if (this.failed) return;
    this.failed = true;
    this.log.error({ file: path, err: (e as Error).message }, "pcap capture failed; capturing stopped");
  }
}
