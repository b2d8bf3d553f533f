/**
 * A device as its control endpoint sees it: one config space per function, addressed by routing ID,
 * each with one DOE capability per mailbox, and the identity that tells a host which mailbox
 * endpoint sits behind each DOE capability. VFs answer at the routing IDs their PF's SR-IOV
 * registers give, for as long as those registers enable them.
 */
import { checkConfigAccess, type DeviceIdentity, type MailboxIdentity } from "../../protocol/control.js";
import { allOnes, routingId, Sriov, SriovCtrl, vfIndexAt, vfRoutingId } from "../../protocol/pci.js";
import { type Logger, silentLogger } from "../log.js";
import type { Endpoint } from "../net/framed.js";
import { type ConfigSpace, functionConfigSpace, vfConfigSpace } from "./config-space.js";
import type { DeviceDescription, FunctionDescription } from "./description.js";
import { DoeRegisters } from "./doe-registers.js";
import type { Mailbox } from "./mailbox.js";

/** A PF with SR-IOV: where its capability sits, so its registers can be read. */
interface SriovPf {
  rid: number;
  fn: FunctionDescription;
  space: ConfigSpace;
  base: number;
}

export class DeviceModel {
  private readonly spaces = new Map<number, ConfigSpace>();
  private readonly sriovPfs: SriovPf[] = [];
  /** VF config spaces, made on first access; dropped when found disabled, so re-enabling resets them. */
  private readonly vfSpaces = new Map<number, ConfigSpace>();
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
      const { space, doeOffsets, sriovOffset } = functionConfigSpace(fn, functions.length > 1, registers);
      this.spaces.set(rid, space);
      if (sriovOffset !== undefined) this.sriovPfs.push({ rid, fn, space, base: sriovOffset });
      doeOffsets.forEach((doeCapOffset, mi) => {
        const { host, port } = fnEndpoints[mi]!;
        this.mailboxIds.push({ rid, doeCapOffset, mailbox: mi, host, port });
      });
    });
  }

  /** Routing IDs of the functions that exist now: PFs in description order, then enabled VFs. */
  get routingIds(): number[] {
    const vfs = this.sriovPfs.flatMap((pf) => {
      const s = this.placement(pf);
      if (!s.enabled) return [];
      return Array.from({ length: s.numVfs }, (_, vf) =>
        vfRoutingId(pf.rid, s.firstVfOffset, s.vfStride, vf),
      );
    });
    return [...this.spaces.keys(), ...vfs.filter((rid) => rid <= 0xffff)];
  }

  /** Throws ControlError for an illegal access; a missing function reads as all ones, as on PCI. */
  configRead(rid: number, offset: number, width: number): number {
    checkConfigAccess(offset, width);
    return this.spaceAt(rid)?.read(offset, width) ?? allOnes(width);
  }

  /** Throws ControlError for an illegal access; a write to a missing function goes nowhere. */
  configWrite(rid: number, offset: number, width: number, value: number, writer?: string): void {
    checkConfigAccess(offset, width);
    this.spaceAt(rid)?.write(offset, width, value, writer);
  }

  private spaceAt(rid: number): ConfigSpace | undefined {
    const pf = this.spaces.get(rid);
    if (pf) return pf;
    for (const p of this.sriovPfs) {
      const vf = vfIndexAt(rid, p.rid, this.placement(p));
      if (vf === undefined) continue;
      let space = this.vfSpaces.get(rid);
      if (!space) {
        space = vfConfigSpace(p.fn, p.space.read(p.base + Sriov.VF_DID, 2));
        this.vfSpaces.set(rid, space);
      }
      return space;
    }
    this.vfSpaces.delete(rid);
    return undefined;
  }

  private placement(pf: SriovPf) {
    const reg = (off: number) => pf.space.read(pf.base + off, 2);
    return {
      enabled: (reg(Sriov.CTRL) & SriovCtrl.VFE) !== 0,
      // NumVFs above TotalVFs is undefined in the spec; the device offers no more than TotalVFs.
      numVfs: Math.min(reg(Sriov.NUM_VF), reg(Sriov.TOTAL_VF)),
      firstVfOffset: reg(Sriov.VF_OFFSET),
      vfStride: reg(Sriov.VF_STRIDE),
    };
  }

  identity(): DeviceIdentity {
    return {
      name: this.description.name,
      bus: this.description.bus,
      mailboxes: this.mailboxIds.map((m) => ({ ...m })),
    };
  }
}
