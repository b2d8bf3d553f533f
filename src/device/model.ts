/**
 * A device as its control endpoint sees it: one config space per function, addressed by routing ID,
 * each with one DOE capability per mailbox, and the identity that tells a host which mailbox
 * endpoint sits behind each DOE capability.
 */
import { checkConfigAccess, type DeviceIdentity, type MailboxIdentity } from "../../protocol/control.js";
import { allOnes, routingId } from "../../protocol/pci.js";
import { type Logger, silentLogger } from "../log.js";
import type { Endpoint } from "../net/framed.js";
import { type ConfigSpace, functionConfigSpace } from "./config-space.js";
import type { DeviceDescription } from "./description.js";
import { DoeRegisters } from "./doe-registers.js";
import type { Mailbox } from "./mailbox.js";

export class DeviceModel {
  private readonly spaces = new Map<number, ConfigSpace>();
  private readonly mailboxIds: MailboxIdentity[] = [];

  /** `mailboxes` and `endpoints` are indexed [function index][mailbox index], as in the description. */
  constructor(
    readonly description: DeviceDescription,
    mailboxes: readonly (readonly Mailbox[])[],
    endpoints: readonly (readonly Endpoint[])[],
    log: Logger = silentLogger,
  ) {
    const { bus, device, functions } = description;
    functions.forEach((fn, fi) => {
      const fnMailboxes = mailboxes[fi] ?? [];
      const fnEndpoints = endpoints[fi] ?? [];
      if (fnMailboxes.length !== fn.mailboxes.length || fnEndpoints.length !== fn.mailboxes.length) {
        throw new Error(
          `function ${fn.function} describes ${fn.mailboxes.length} mailboxes, got ${fnMailboxes.length} mailboxes and ${fnEndpoints.length} endpoints`,
        );
      }
      const rid = routingId(bus, device, fn.function);
      const registers = fnMailboxes.map((m, mi) => new DoeRegisters(m, log.child({ rid, mailbox: mi })));
      const { space, doeOffsets } = functionConfigSpace(fn, functions.length > 1, registers);
      this.spaces.set(rid, space);
      doeOffsets.forEach((doeCapOffset, mi) => {
        const { host, port } = fnEndpoints[mi]!;
        this.mailboxIds.push({ rid, doeCapOffset, mailbox: mi, host, port });
      });
    });
  }

  /** Routing IDs of the functions that exist, in description order. */
  get routingIds(): number[] {
    return [...this.spaces.keys()];
  }

  /** Throws ControlError for an illegal access; a missing function reads as all ones, as on PCI. */
  configRead(rid: number, offset: number, width: number): number {
    checkConfigAccess(offset, width);
    return this.spaces.get(rid)?.read(offset, width) ?? allOnes(width);
  }

  /** Throws ControlError for an illegal access; a write to a missing function goes nowhere. */
  configWrite(rid: number, offset: number, width: number, value: number): void {
    checkConfigAccess(offset, width);
    this.spaces.get(rid)?.write(offset, width, value);
  }

  identity(): DeviceIdentity {
    return {
      name: this.description.name,
      bus: this.description.bus,
      mailboxes: this.mailboxIds.map((m) => ({ ...m })),
    };
  }
}
