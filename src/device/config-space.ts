/**
 * The 4 KiB config space of one function (PCIe r6.0 §7.5–7.6): bytes with per-byte write masks
 * (read-only, read-write, write-1-to-clear) and register blocks with side effects (the DOE
 * mailboxes). It is laid out from a type-0 header and two lists of capability builders, legacy ones
 * chained from 0x40 and extended ones from 0x100, so SR-IOV or IDE is one more builder.
 * Registers a device's security state depends on are watched: a write that changes one is reported
 * as a ConfigChange, for TDISP to act on.
 * Callers pass legal accesses only (checkConfigAccess in protocol/control.ts decides that).
 */
import {
  CAP_LIST_ID,
  CAP_LIST_NEXT,
  CapId,
  CONFIG_SPACE_BYTES,
  Command,
  type ConfigWidth,
  DEVSTA_RW1C,
  DevCap,
  DevCtl,
  Doe,
  ExtCapId,
  encodeExtCapHeader,
  FIRST_EXT_CAP,
  FIRST_LEGACY_CAP,
  Header,
  HeaderType,
  LEGACY_CONFIG_BYTES,
  Msix,
  MsixFlags,
  PCI_EXP_CAP_VERSION,
  PciExp,
  PciExpFlags,
  PORT_TYPES,
  SRIOV_PAGE_SHIFT,
  Sriov,
  SriovCtrl,
  Status,
} from "../../protocol/pci.js";
import { lowestBit } from "../bits.js";
import { BarArray, type BarState } from "./bars.js";
import type { BarDescription, FunctionDescription } from "./description.js";
import { type IdeStream, ideCapability } from "./ide.js";

/** The writer of accesses made in-process (tests, the device itself) rather than over the control wire. */
const CONFIG_WRITER = "cfg";

export type SriovDescription = NonNullable<FunctionDescription["sriov"]>;
export type MsixDescription = NonNullable<FunctionDescription["msix"]>;

/**
 * A config write that changed what a function decodes or how it is secured: a BAR (by index; either
 * DW of a 64-bit BAR), Memory Space Enable, MSI-X Enable or Function Mask (the table moves only with
 * its BAR), the SR-IOV settings (VF Enable, VF MSE, ARI Capable Hierarchy, NumVFs, System Page
 * Size), a VF BAR, or an IDE stream's Control register.
 */
export type ConfigChange =
  | { kind: "bar"; bar: number }
  | { kind: "memoryEnable"; enabled: boolean }
  | { kind: "msix" }
  | { kind: "sriov" }
  | { kind: "vfBar"; bar: number }
  | { kind: "ideStream"; stream: "link" | "selective"; index: number }
  /** Initiate Function Level Reset written 1 (PCIe r6.0 §6.6.2); no register is reset here. */
  | { kind: "flr" };

/** Registers whose accesses have side effects; offsets are relative to the block's base. */
export interface RegisterBlock {
  read(offset: number, width: ConfigWidth): number;
  /** `writer` names who wrote (a control connection), for blocks whose effects belong to a peer. */
  write(offset: number, width: ConfigWidth, value: number, writer: string): void;
}

interface Mapping {
  base: number;
  from: number;
  to: number;
  block: RegisterBlock;
}

/** A write-only command bit: it reads 0, so only the write itself tells it was set. */
interface Action {
  offset: number;
  width: number;
  mask: number;
  onSet: () => void;
}

interface Watch {
  offset: number;
  width: number;
  mask: number;
  onChange: (value: number, before: number) => void;
}

export interface Masks {
  /** Bits software may write. */
  rw?: number;
  /** Bits cleared by writing 1. */
  w1c?: number;
}

function putLE(buf: Buffer, offset: number, width: number, value: number): void {
  for (let i = 0; i < width; i++) buf[offset + i] = (value >>> (8 * i)) & 0xff;
}

function getLE(buf: Buffer, offset: number, width: number): number {
  let v = 0;
  for (let i = width - 1; i >= 0; i--) v = v * 256 + buf[offset + i]!;
  return v;
}

export class ConfigSpace {
  private readonly data = Buffer.alloc(CONFIG_SPACE_BYTES);
  private readonly rw = Buffer.alloc(CONFIG_SPACE_BYTES);
  private readonly w1c = Buffer.alloc(CONFIG_SPACE_BYTES);
  private readonly mappings: Mapping[] = [];
  private readonly watches: Watch[] = [];
  private readonly actions: Action[] = [];
  private readonly listeners = new Set<(change: ConfigChange) => void>();

  /** Sets a register's reset value and which of its bits are writable; unset bits are read-only. */
  define(offset: number, width: number, value: number, masks: Masks = {}): void {
    putLE(this.data, offset, width, value);
    putLE(this.rw, offset, width, masks.rw ?? 0);
    putLE(this.w1c, offset, width, masks.w1c ?? 0);
  }

  /** The device's own update of a register (a status), whatever its write masks say. */
  set(offset: number, width: number, value: number): void {
    putLE(this.data, offset, width, value);
  }

  /** Calls `onChange` after a write changes any bit of `mask` in the register at `offset` (at most a DW). */
  watch(offset: number, width: number, mask: number, onChange: Watch["onChange"]): void {
    this.watches.push({ offset, width, mask, onChange });
  }

  /** Calls `onSet` when a write to the register at `offset` carries a 1 in any bit of `mask`. */
  onWriteOne(offset: number, width: number, mask: number, onSet: () => void): void {
    this.actions.push({ offset, width, mask, onSet });
  }

  /** Listens to the changes the watches report; returns the way to stop. */
  onChange(listener: (change: ConfigChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(change: ConfigChange): void {
    for (const listener of this.listeners) listener(change);
  }

  /** Routes accesses to [base + from, base + to) to `block`, with offsets relative to `base`. DW-aligned bounds. */
  mapRegisters(base: number, from: number, to: number, block: RegisterBlock): void {
    this.mappings.push({ base, from: base + from, to: base + to, block });
  }

  read(offset: number, width: ConfigWidth): number {
    const m = this.mappingAt(offset);
    return m ? m.block.read(offset - m.base, width) : getLE(this.data, offset, width);
  }

  /**
   * `count` consecutive registers of `width` bytes from `offset`, little-endian into `into` at `at`:
   * as many reads, but the unmapped runs copied whole (their reads have no effects), so a host's
   * 4 KiB scan runs no per-register loop hot enough to make V8 optimise it (+4 MiB in every device).
   */
  readInto(offset: number, width: ConfigWidth, count: number, into: Buffer, at: number): void {
    for (const end = offset + count * width; offset < end; ) {
      // A mapped register is read as read() reads it; an unmapped run goes up to the next mapping,
      // whose DW-aligned bounds keep it whole registers.
      const mapped = this.mappingAt(offset) !== undefined;
      const next = mapped
        ? offset + width
        : this.mappings.reduce((n, m) => (m.from > offset && m.from < n ? m.from : n), end);
      if (mapped) into.writeUIntLE(this.read(offset, width) >>> 0, at, width);
      else this.data.copy(into, at, offset, next);
      at += next - offset;
      offset = next;
    }
  }

  /** As PCI hardware does: read-only bits keep their value, RW bits take the new one, RW1C bits clear on 1. */
  write(offset: number, width: ConfigWidth, value: number, writer = CONFIG_WRITER): void {
    const m = this.mappingAt(offset);
    if (m) {
      m.block.write(offset - m.base, width, value, writer);
      return;
    }
    const watched = this.watches.filter((w) => offset < w.offset + w.width && w.offset < offset + width);
    const before = watched.map((w) => getLE(this.data, w.offset, w.width));
    for (let i = 0; i < width; i++) {
      const at = offset + i;
      const v = (value >>> (8 * i)) & 0xff;
      const rw = this.rw[at]!;
      this.data[at] = ((this.data[at]! & ~rw) | (v & rw)) & ~(v & this.w1c[at]!);
    }
    watched.forEach((w, i) => {
      const after = getLE(this.data, w.offset, w.width);
      if ((after ^ before[i]!) & w.mask) w.onChange(after, before[i]!);
    });
    for (const a of this.actions) {
      // The bytes of this access that fall in the action's register, at their place in it.
      let written = 0;
      for (let i = 0; i < width; i++) {
        const at = offset + i - a.offset;
        if (at >= 0 && at < a.width) written |= ((value >>> (8 * i)) & 0xff) << (8 * at);
      }
      if (written & a.mask) a.onSet();
    }
  }

  /** Accesses are aligned and at most a DW, and mappings DW-aligned, so an access is wholly in or out. */
  private mappingAt(offset: number): Mapping | undefined {
    return this.mappings.find((m) => offset >= m.from && offset < m.to);
  }
}

/** A capability's body; the layout writes its ID and next pointer (and version, if extended). */
export interface CapabilityBuilder {
  id: number;
  size: number;
  /** Defines the registers after the header; `base` is the capability's config offset. */
  init(space: ConfigSpace, base: number): void;
}

export interface ExtendedCapabilityBuilder extends CapabilityBuilder {
  version: number;
}

export interface HeaderFields {
  vendorId: number;
  deviceId: number;
  revision: number;
  classCode: number;
  multiFunction: boolean;
  /** Memory BARs; a VF's header has none of its own (its PF's VF BARs place it). */
  bars: readonly BarDescription[];
}

export interface BuiltConfigSpace {
  space: ConfigSpace;
  /** Config offset of each extended capability, in the order given. */
  extendedOffsets: number[];
}

const align4 = (n: number) => (n + 3) & ~3;

function defineHeader(space: ConfigSpace, h: HeaderFields, hasCaps: boolean): void {
  space.define(Header.VENDOR_ID, 2, h.vendorId);
  space.define(Header.DEVICE_ID, 2, h.deviceId);
  // The bits a driver toggles; the function has no I/O space.
  space.define(Header.COMMAND, 2, 0, { rw: Command.MEMORY | Command.MASTER | Command.INTX_DISABLE });
  new BarArray(space, Header.BAR0, h.bars).define((bar) => bar.size);
  space.define(Header.STATUS, 2, hasCaps ? Status.CAP_LIST : 0, { w1c: Status.RW1C_ERRORS });
  space.define(Header.REVISION_ID, 1, h.revision);
  space.define(Header.CLASS_PROG, 3, h.classCode);
  space.define(Header.CACHE_LINE_SIZE, 1, 0, { rw: 0xff });
  space.define(Header.HEADER_TYPE, 1, HeaderType.NORMAL | (h.multiFunction ? HeaderType.MULTI_FUNCTION : 0));
  space.define(Header.INTERRUPT_LINE, 1, 0, { rw: 0xff });
}

/** Lays out the header, then legacy capabilities chained from 0x40 and extended ones from 0x100. */
export function buildConfigSpace(
  header: HeaderFields,
  legacy: readonly CapabilityBuilder[],
  extended: readonly ExtendedCapabilityBuilder[],
): BuiltConfigSpace {
  const space = new ConfigSpace();
  defineHeader(space, header, legacy.length > 0);

  const legacyOffsets = place(legacy, FIRST_LEGACY_CAP, LEGACY_CONFIG_BYTES, "legacy");
  space.define(Header.CAPABILITY_LIST, 1, legacyOffsets[0] ?? 0);
  legacy.forEach((cap, i) => {
    const base = legacyOffsets[i]!;
    space.define(base + CAP_LIST_ID, 1, cap.id);
    space.define(base + CAP_LIST_NEXT, 1, legacyOffsets[i + 1] ?? 0);
    cap.init(space, base);
  });

  // With no extended capability the DW at 0x100 stays 0, which means "none".
  const extendedOffsets = place(extended, FIRST_EXT_CAP, CONFIG_SPACE_BYTES, "extended");
  extended.forEach((cap, i) => {
    const base = extendedOffsets[i]!;
    space.define(
      base,
      4,
      encodeExtCapHeader({ id: cap.id, version: cap.version, next: extendedOffsets[i + 1] ?? 0 }),
    );
    cap.init(space, base);
  });
  return { space, extendedOffsets };
}

function place(caps: readonly CapabilityBuilder[], start: number, end: number, what: string): number[] {
  const offsets: number[] = [];
  let at = start;
  for (const cap of caps) {
    offsets.push(at);
    at = align4(at + cap.size);
  }
  if (at > end)
    throw new RangeError(
      `${what} capabilities need ${at - start} bytes from 0x${start.toString(16)}, past 0x${end.toString(16)}`,
    );
  return offsets;
}

/** PCI Express capability, version 2, of an endpoint-like function. */
export function pciExpressCapability(fn: Pick<FunctionDescription, "portType" | "teeIo">): CapabilityBuilder {
  return {
    id: CapId.EXP,
    size: PciExp.SIZEOF_V2,
    init(space, base) {
      space.define(
        base + PciExp.FLAGS,
        2,
        PCI_EXP_CAP_VERSION | (PORT_TYPES[fn.portType] << PciExpFlags.TYPE_SHIFT),
      );
      space.define(base + PciExp.DEVCAP, 4, DevCap.RBER | DevCap.FLR | (fn.teeIo ? DevCap.TEE : 0));
      // Bit 15 (Initiate FLR) is left out of the mask so it reads 0; writing it 1 is reported, for
      // TDISP (a reset TDI returns to CONFIG_UNLOCKED), but resets no register.
      space.define(base + PciExp.DEVCTL, 2, 0, { rw: 0x7fff & ~DevCtl.BCR_FLR });
      space.onWriteOne(base + PciExp.DEVCTL, 2, DevCtl.BCR_FLR, () => space.notify({ kind: "flr" }));
      space.define(base + PciExp.DEVSTA, 2, 0, { w1c: DEVSTA_RW1C });
      // A x1 link at 2.5 GT/s, trained: what lspci and ASPM code expect to find.
      space.define(base + PciExp.LNKCAP, 4, 0x11);
      space.define(base + PciExp.LNKCTL, 2, 0, { rw: 0x01c3 });
      space.define(base + PciExp.LNKSTA, 2, 0x11);
    },
  };
}

/**
 * MSI-X capability (PCIe r6.0 §7.7.2): Table Size, Table and PBA Offset/BIR read-only, MSI-X Enable
 * and Function Mask writable. The table and PBA themselves live in BAR memory, not modelled here.
 */
export function msixCapability(msix: MsixDescription): CapabilityBuilder {
  return {
    id: CapId.MSIX,
    size: Msix.SIZEOF,
    init(space, base) {
      const control = MsixFlags.ENABLE | MsixFlags.MASKALL;
      space.define(base + Msix.FLAGS, 2, msix.tableSize - 1, { rw: control });
      space.define(base + Msix.TABLE, 4, (msix.table.offset | msix.table.bar) >>> 0);
      space.define(base + Msix.PBA, 4, (msix.pba.offset | msix.pba.bar) >>> 0);
      space.watch(base + Msix.FLAGS, 2, control, () => space.notify({ kind: "msix" }));
    },
  };
}

/** One DOE extended capability whose registers are `block` (a DoeRegisters). */
export function doeCapability(block: RegisterBlock): ExtendedCapabilityBuilder {
  return {
    id: ExtCapId.DOE,
    version: Doe.CAP_VERSION,
    size: Doe.SIZEOF,
    init(space, base) {
      space.mapRegisters(base, Doe.CAP, Doe.SIZEOF, block);
    },
  };
}

/** Bytes of one page of the System Page Size register's value (bit n: 2^(n+12)); 4 KiB if none is set. */
const systemPageBytes = (pageSizeRegister: number) =>
  (lowestBit(pageSizeRegister) || 1) * 2 ** SRIOV_PAGE_SHIFT;

/**
 * Each VF's aperture of a VF BAR: the described size, but at least one system page, since every
 * VF's BAR must decode whole pages of the System Page Size the host chose (PCIe r6.0 §9.3.3.13-14).
 */
const vfBarSize = (space: ConfigSpace, base: number) => (bar: BarDescription) =>
  Math.max(bar.size, systemPageBytes(space.read(base + Sriov.SYS_PGSIZE, 4)));

/** The VF BARs of the SR-IOV capability at `base`, as programmed: VF n's BAR is at address + n × size. */
export const readVfBars = (space: ConfigSpace, base: number, sriov: SriovDescription): BarState[] =>
  new BarArray(space, base + Sriov.BAR0, sriov.vfBars).read(vfBarSize(space, base));

/**
 * SR-IOV extended capability of a PF (PCIe r6.0 §9.3.3). The registers are the VFs' state: a
 * VF exists while VF Enable is set and its index is below NumVFs (see DeviceModel). NumVFs, VF
 * Enable, VF MSE, System Page Size and the VF BARs are writable, as a PF driver writes them; VF
 * migration is not offered.
 */
export function sriovCapability(
  sriov: SriovDescription,
  pf: { function: number; deviceId: number },
): ExtendedCapabilityBuilder {
  return {
    id: ExtCapId.SRIOV,
    version: 1,
    size: Sriov.SIZEOF,
    init(space, base) {
      space.define(base + Sriov.CTRL, 2, sriov.vfEnable ? SriovCtrl.VFE : 0, {
        rw: SriovCtrl.VFE | SriovCtrl.MSE | SriovCtrl.ARI,
      });
      space.define(base + Sriov.INITIAL_VF, 2, sriov.totalVfs);
      space.define(base + Sriov.TOTAL_VF, 2, sriov.totalVfs);
      space.define(base + Sriov.NUM_VF, 2, sriov.numVfs, { rw: 0xffff });
      space.define(base + Sriov.FUNC_LINK, 1, pf.function);
      space.define(base + Sriov.VF_OFFSET, 2, sriov.firstVfOffset);
      space.define(base + Sriov.VF_STRIDE, 2, sriov.vfStride);
      space.define(base + Sriov.VF_DID, 2, sriov.vfDeviceId ?? pf.deviceId);
      // 4 KiB to 4 MiB pages supported; the system page size starts at 4 KiB.
      space.define(base + Sriov.SUP_PGSIZE, 4, 0x553);
      space.define(base + Sriov.SYS_PGSIZE, 4, 0x1, { rw: 0xffff_ffff });
      const vfBars = new BarArray(space, base + Sriov.BAR0, sriov.vfBars);
      vfBars.define(vfBarSize(space, base));
      vfBars.watch((bar) => ({ kind: "vfBar", bar }));
      const changed = () => space.notify({ kind: "sriov" });
      space.watch(base + Sriov.CTRL, 2, SriovCtrl.VFE | SriovCtrl.MSE | SriovCtrl.ARI, changed);
      space.watch(base + Sriov.NUM_VF, 2, 0xffff, changed);
      // A new page size resizes the VF BARs, as a host sizes them after choosing it.
      space.watch(base + Sriov.SYS_PGSIZE, 4, 0xffff_ffff, () => {
        vfBars.define(vfBarSize(space, base));
        changed();
      });
    },
  };
}

export interface FunctionConfigSpace {
  space: ConfigSpace;
  /** Config offset of the DOE capability of each mailbox, in mailbox order. */
  doeOffsets: number[];
  /** Config offset of the SR-IOV capability, when the function has one. */
  sriovOffset?: number;
  /** The IDE capability's streams, Link IDE streams first; none without IDE. */
  ideStreams: readonly IdeStream[];
  /** Config offset of the IDE capability, when the function has one. */
  ideOffset?: number;
}

/**
 * The config space of a described function: its BARs, PCI Express and MSI-X capabilities, one DOE
 * capability per register block given, then SR-IOV and IDE. Writes to the BARs and Memory Space
 * Enable are watched here, those of capabilities by their builders.
 */
export function functionConfigSpace(
  fn: FunctionDescription,
  multiFunction: boolean,
  doe: readonly RegisterBlock[],
): FunctionConfigSpace {
  const ide = fn.ide ? ideCapability(fn.ide) : undefined;
  const { space, extendedOffsets } = buildConfigSpace(
    {
      vendorId: fn.vendorId,
      deviceId: fn.deviceId,
      revision: fn.revision,
      classCode: fn.classCode,
      multiFunction,
      bars: fn.bars,
    },
    [pciExpressCapability(fn), ...(fn.msix ? [msixCapability(fn.msix)] : [])],
    // DOE first, so a function's mailboxes keep their offsets whether or not it has SR-IOV or IDE.
    [...doe.map(doeCapability), ...(fn.sriov ? [sriovCapability(fn.sriov, fn)] : []), ...(ide ? [ide] : [])],
  );
  new BarArray(space, Header.BAR0, fn.bars).watch((bar) => ({ kind: "bar", bar }));
  space.watch(Header.COMMAND, 2, Command.MEMORY, (command) =>
    space.notify({ kind: "memoryEnable", enabled: (command & Command.MEMORY) !== 0 }),
  );
  const sriovOffset = fn.sriov ? extendedOffsets[doe.length] : undefined;
  const ideOffset = ide ? extendedOffsets[doe.length + (fn.sriov ? 1 : 0)] : undefined;
  return {
    space,
    doeOffsets: extendedOffsets.slice(0, doe.length),
    ...(sriovOffset ? { sriovOffset } : {}),
    ideStreams: ide?.streams ?? [],
    ...(ideOffset ? { ideOffset } : {}),
  };
}

/**
 * A VF's config space: a type-0 header with the PF's vendor, the VF Device ID and the PF's class and
 * no BARs (its memory is its share of the PF's VF BARs, PCIe r6.0 §9.3.4), and a PCI Express
 * capability (endpoint, TEE-IO as its PF); no DOE.
 */
export function vfConfigSpace(pf: FunctionDescription, vfDeviceId: number): ConfigSpace {
  return buildConfigSpace(
    {
      vendorId: pf.vendorId,
      deviceId: vfDeviceId,
      revision: pf.revision,
      classCode: pf.classCode,
      multiFunction: false,
      bars: [],
    },
    [pciExpressCapability({ portType: "endpoint", teeIo: pf.teeIo })],
    [],
  ).space;
}
