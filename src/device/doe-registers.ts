/**
 * The register face of one DOE mailbox (PCIe r6.0 §6.30, §7.9.24), driving the same Mailbox engine
 * as the TCP endpoint. Behaviour follows QEMU hw/pci/pcie_doe.c, except that the engine is async:
 * Busy stays set while the object is processed, and a host polls Status for Data Object Ready.
 */
import { DOE_MAX_DW } from "../../protocol/doe.js";
import { type ConfigWidth, Doe, DoeCtrl, DoeStatus } from "../../protocol/pci.js";
import { type Logger, silentLogger } from "../log.js";
import type { RegisterBlock } from "./config-space.js";
import { doeSite } from "./fault-injection.js";
import type { FaultSet } from "./faults.js";
import type { Mailbox } from "./mailbox.js";

export class DoeRegisters implements RegisterBlock {
  private written: number[] = [];
  private response: Buffer | undefined;
  private readIndex = 0;
  private busy = false;
  private error = false;
  /** Bumped by Abort and Go, so a response of an aborted object is recognised and dropped. */
  private generation = 0;

  constructor(
    private readonly mailbox: Mailbox,
    private readonly log: Logger = silentLogger,
    /** The device's fault rules and where these registers sit (a `busy` fault holds Busy). */
    private readonly faults?: { set: FaultSet; rid: number; mailbox: number },
  ) {}

  get status(): number {
    return (
      ((this.busy ? DoeStatus.BUSY : 0) |
        (this.error ? DoeStatus.ERROR : 0) |
        (this.response ? DoeStatus.DATA_OBJECT_READY : 0)) >>>
      0
    );
  }

  read(offset: number, width: ConfigWidth): number {
    const shift = (offset & 3) * 8;
    let dw = 0;
    switch (offset & ~3) {
      case Doe.STATUS:
        dw = this.status;
        break;
      case Doe.READ:
        // The mailbox registers are DW-only; the current DW is visible only while Ready && !Error.
        if (width === 4 && this.response && !this.error) dw = this.response.readUInt32LE(this.readIndex * 4);
        break;
      // Capabilities: no interrupt support. Control: Abort and Go read 0, and Interrupt Enable is
      // hardwired to 0 without interrupt support. Write Mailbox reads 0.
    }
    return width === 4 ? dw : (dw >>> shift) & ((1 << (width * 8)) - 1);
  }

  /** `writer` becomes the origin of the object a Go sends, so its sessions belong to that peer. */
  write(offset: number, width: ConfigWidth, value: number, writer: string): void {
    const dw = (value << ((offset & 3) * 8)) >>> 0;
    switch (offset & ~3) {
      case Doe.CTRL:
        if (dw & DoeCtrl.ABORT) this.abort();
        else if (dw & DoeCtrl.GO) this.go(writer);
        break;
      case Doe.WRITE:
        if (width === 4) this.append(dw);
        break;
      case Doe.READ:
        if (width === 4) this.advance();
        break;
    }
  }

  private append(dw: number): void {
    if (this.busy) {
      this.log.debug("DOE write mailbox written while busy; ignored");
      return;
    }
    if (this.written.length >= DOE_MAX_DW) {
      this.log.warn("DOE write mailbox overflow (more than 2^18 DW); error set");
      this.error = true;
      return;
    }
    this.written.push(dw);
  }

  private go(origin: string): void {
    if (this.busy || this.error) {
      this.log.debug({ busy: this.busy, error: this.error }, "DOE Go ignored");
      return;
    }
    const words = this.written;
    this.written = [];
    // A new object supersedes a response the host never finished reading.
    this.response = undefined;
    this.readIndex = 0;
    // PCIe r6 6.30.1: a DW count that disagrees with the header's Length is silently discarded.
    const lengthField = (words[1] ?? 0) & (DOE_MAX_DW - 1);
    const lengthDw = lengthField === 0 ? DOE_MAX_DW : lengthField;
    if (words.length < 2 || words.length !== lengthDw) {
      this.log.warn(
        { written: words.length, lengthDw },
        "DOE object discarded: DW count differs from its Length",
      );
      return;
    }
    const object = Buffer.alloc(words.length * 4);
    for (const [i, w] of words.entries()) object.writeUInt32LE(w, i * 4);
    const generation = ++this.generation;
    this.busy = true;
    const exchange = () => {
      if (generation !== this.generation) return; // aborted meanwhile
      // Mailbox.exchange never rejects: a failed handler is an undefined (discarded) response.
      void this.mailbox.exchange(object, origin).then((rsp) => {
        if (generation !== this.generation) return;
        this.busy = false;
        this.response = rsp;
      });
    };
    const f = this.faults;
    const fault = f?.set.armed
      ? f.set.take({ ...doeSite(object, f.rid, f.mailbox), layer: "registers" })
      : undefined;
    if (fault) setTimeout(exchange, fault.ms);
    else exchange();
  }

  /** The host's ack of the current DW: after the last one the mailbox resets; past the end is an error. */
  private advance(): void {
    if (!this.response || this.error) {
      this.error = true;
      return;
    }
    this.readIndex++;
    if (this.readIndex * 4 === this.response.length) {
      this.response = undefined;
      this.readIndex = 0;
    }
  }

  private abort(): void {
    this.generation++;
    this.busy = false;
    this.error = false;
    this.written = [];
    this.response = undefined;
    this.readIndex = 0;
  }
}
