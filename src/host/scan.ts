/**
 * Bus scan over the control wire, the way a PCI core enumerates (PCIe r6.0 §7.5–7.6, §9.3.3): probe
 * each slot's function 0, read the header type for the multi-function bit, walk the legacy
 * capability list for the PCI Express capability (port type, DEVCAP TEE-IO) and MSI-X (where its
 * table and PBA lie, which a TDI's report must flag), walk the extended list
 * for SR-IOV and DOE. VFs are not found by probing: like Linux, the scan derives them from the PF's
 * SR-IOV registers, their vendor from the PF and their device ID from VF Device ID.
 */
import { CONTROL_MAX_PAYLOAD, type ConfigAccess, type DeviceIdentity } from "../../protocol/control.js";
import { type DoeProtocol, protocolId } from "../../protocol/doe.js";
import {
  BAR_COUNT,
  Bar,
  CAP_LIST_NEXT,
  CapId,
  CONFIG_SPACE_BYTES,
  Command,
  type ConfigWidth,
  DevCap,
  decodeExtCapHeader,
  ExtCapId,
  FIRST_EXT_CAP,
  formatRoutingId,
  Header,
  HeaderType,
  Msix,
  MsixFlags,
  msixPlace,
  NO_FUNCTION_VENDOR_ID,
  PciExp,
  PciExpFlags,
  PciExpType,
  routingId,
  Sriov,
  SriovCtrl,
  Status,
  vfRoutingId,
} from "../../protocol/pci.js";
import { hex } from "../bits.js";
import { DoeClient } from "../doe/client.js";
import type { Logger } from "../log.js";
import { type ControlClient, DoeRegisterClient } from "./control-client.js";
import type { MmioAllocator, MmioKind } from "./mmio.js";

export type ConfigReader = (rid: number, offset: number, width: ConfigWidth) => Promise<number>;
export type ConfigWriter = (rid: number, offset: number, width: ConfigWidth, value: number) => Promise<void>;

export interface SriovInfo {
  /** Config offset of the SR-IOV capability. */
  offset: number;
  enabled: boolean;
  totalVfs: number;
  numVfs: number;
  firstVfOffset: number;
  vfStride: number;
  vfDeviceId: number;
  /** The VF BARs as assignBars gave them: VF i decodes BAR n at its address + i × its size. */
  vfBars: AssignedBar[];
}

/** Where an MSI-X structure lies: BAR index (BIR) and byte offset into that BAR. */
export interface MsixPlace {
  bar: number;
  offset: number;
}

export interface MsixInfo {
  /** Config offset of the MSI-X capability. */
  offset: number;
  /** Table Size + 1: the number of vectors. */
  vectors: number;
  table: MsixPlace;
  pba: MsixPlace;
}

export interface ScannedFunction {
  rid: number;
  vendorId: number;
  deviceId: number;
  /** Device/Port type from the PCI Express capability; undefined without one. */
  portType: number | undefined;
  /** DEVCAP bit 30. */
  tee: boolean;
  multiFunction: boolean;
  /** For a VF, the routing ID of its PF. */
  pf?: number;
  sriov?: SriovInfo;
  /** Config offsets of the DOE extended capabilities, in list order. */
  doeOffsets: number[];
  /** Config offset of the IDE extended capability, when there is one. */
  ideOffset?: number;
  msix?: MsixInfo;
  /** Memory BARs, with the addresses assignBars gave them; empty until then. */
  bars: AssignedBar[];
}

/** Bounds on list walks, so a looping or corrupt list cannot hang the scan. */
const MAX_LEGACY_CAPS = 48;
const MAX_EXT_CAPS = (0x1000 - FIRST_EXT_CAP) / 4;
const SLOTS = 32;
const FUNCTIONS = 8;

/**
 * Runs config accesses in order and resolves with each read's bytes: in one control request
 * (ControlClient.cfgBatch), or one access at a time (`oneByOne`).
 */
export type ConfigBatch = (accesses: ConfigAccess[]) => Promise<Buffer[]>;

/** A ConfigBatch over single accesses, for a path without batches (the host's API, a test's reader). */
function oneByOne(read: ConfigReader, write?: ConfigWriter): ConfigBatch {
  return async (accesses) => {
    const reads: Buffer[] = [];
    for (const a of accesses) {
      if (a.op === "write") {
        if (!write) throw new Error("config writes need a writer");
        await write(a.rid, a.offset, a.width as ConfigWidth, a.value);
        continue;
      }
      const bytes = Buffer.alloc(a.count * a.width);
      for (let i = 0; i < a.count; i++) {
        const value = await read(a.rid, a.offset + i * a.width, a.width as ConfigWidth);
        bytes.writeUIntLE(value >>> 0, i * a.width, a.width);
      }
      reads.push(bytes);
    }
    return reads;
  };
}

const readOf = (rid: number, offset: number, width: number, count = 1): ConfigAccess => ({
  op: "read",
  rid,
  offset,
  width,
  count,
});
const writeOf = (rid: number, offset: number, width: number, value: number): ConfigAccess => ({
  op: "write",
  rid,
  offset,
  width,
  value,
});

/** A reader over a config space read before: the capability walks run on it, not over the wire. */
const fromSpace =
  (space: Buffer): ConfigReader =>
  async (_rid, offset, width) =>
    space.readUIntLE(offset, width);

/** Whole config spaces per request, the most a control-wire reply holds. */
const SPACES_PER_REQUEST = Math.floor(CONTROL_MAX_PAYLOAD / CONFIG_SPACE_BYTES);

/** The whole config space of each function, a request per SPACES_PER_REQUEST of them. */
async function readSpaces(batch: ConfigBatch, rids: readonly number[]): Promise<Buffer[]> {
  const requests: Promise<Buffer[]>[] = [];
  for (let i = 0; i < rids.length; i += SPACES_PER_REQUEST)
    requests.push(
      batch(rids.slice(i, i + SPACES_PER_REQUEST).map((rid) => readOf(rid, 0, 4, CONFIG_SPACE_BYTES / 4))),
    );
  return (await Promise.all(requests)).flat();
}

/**
 * The functions among `rids` that exist, as a PCI core finds them (vendor ID not all ones): the
 * ID registers of all in one request, then the config spaces of those present.
 */
async function probeAll(batch: ConfigBatch, rids: readonly number[]): Promise<ScannedFunction[]> {
  if (rids.length === 0) return [];
  const ids = await batch(rids.map((rid) => readOf(rid, Header.VENDOR_ID, 4)));
  const present = rids.filter((_, i) => (ids[i]!.readUInt32LE(0) & 0xffff) !== NO_FUNCTION_VENDOR_ID);
  const spaces = await readSpaces(batch, present);
  const found = await Promise.all(present.map((rid, i) => probe(fromSpace(spaces[i]!), rid)));
  return found.filter((f) => f !== undefined);
}

/**
 * Scans every slot of `bus`; returns PFs in routing-ID order, each followed by its enabled VFs.
 * `batch` reads many registers per round trip (by default `read` one at a time).
 */
export async function scanBus(
  read: ConfigReader,
  bus: number,
  batch: ConfigBatch = oneByOne(read),
): Promise<ScannedFunction[]> {
  const fn0s = await probeAll(
    batch,
    Array.from({ length: SLOTS }, (_, slot) => routingId(bus, slot, 0)),
  );
  const others = await probeAll(
    batch,
    fn0s
      .filter((f) => f.multiFunction)
      .flatMap((f) => Array.from({ length: FUNCTIONS - 1 }, (_, i) => f.rid + 1 + i)),
  );
  const pfs = [...fn0s, ...others].sort((a, b) => a.rid - b.rid);
  const vfs = await Promise.all(pfs.map((pf) => scanVfs(batch, pf)));
  return pfs.flatMap((pf, i) => [pf, ...vfs[i]!]);
}

async function probe(read: ConfigReader, rid: number): Promise<ScannedFunction | undefined> {
  const ids = await read(rid, Header.VENDOR_ID, 4);
  if ((ids & 0xffff) === NO_FUNCTION_VENDOR_ID) return undefined;
  const headerType = await read(rid, Header.HEADER_TYPE, 1);
  const f: ScannedFunction = {
    rid,
    vendorId: ids & 0xffff,
    deviceId: ids >>> 16,
    portType: undefined,
    tee: false,
    multiFunction: (headerType & HeaderType.MULTI_FUNCTION) !== 0,
    doeOffsets: [],
    bars: [],
  };
  await readCapabilities(read, f);
  return f;
}

/** Fills in what the capability lists say: PCIe type and TEE-IO, MSI-X, SR-IOV, DOE, IDE. */
async function readCapabilities(read: ConfigReader, f: ScannedFunction): Promise<void> {
  const { rid } = f;
  if ((await read(rid, Header.STATUS, 2)) & Status.CAP_LIST) {
    let at = (await read(rid, Header.CAPABILITY_LIST, 1)) & 0xfc;
    for (let hops = 0; at && hops < MAX_LEGACY_CAPS; hops++) {
      const id = await read(rid, at, 1);
      if (id === CapId.EXP && f.portType === undefined) {
        const flags = await read(rid, at + PciExp.FLAGS, 2);
        f.portType = (flags & PciExpFlags.TYPE_MASK) >> PciExpFlags.TYPE_SHIFT;
        f.tee = ((await read(rid, at + PciExp.DEVCAP, 4)) & DevCap.TEE) !== 0;
      }
      if (id === CapId.MSIX && !f.msix) f.msix = await readMsix(read, rid, at);
      at = (await read(rid, at + CAP_LIST_NEXT, 1)) & 0xfc;
    }
  }
  // Extended capabilities exist only for PCIe functions.
  if (f.portType === undefined) return;
  for (let at = FIRST_EXT_CAP, hops = 0; at && hops < MAX_EXT_CAPS; hops++) {
    const dw = await read(rid, at, 4);
    if (dw === 0 || dw === 0xffff_ffff) break;
    const h = decodeExtCapHeader(dw);
    if (h.id === ExtCapId.DOE) f.doeOffsets.push(at);
    if (h.id === ExtCapId.IDE) f.ideOffset = at;
    // A VF has no SR-IOV capability of its own; one that shows one is ignored, as Linux does.
    if (h.id === ExtCapId.SRIOV && f.pf === undefined) f.sriov = await readSriov(read, rid, at);
    at = h.next;
  }
}

async function readMsix(read: ConfigReader, rid: number, at: number): Promise<MsixInfo> {
  const place = async (reg: number): Promise<MsixPlace> => msixPlace(await read(rid, at + reg, 4));
  return {
    offset: at,
    vectors: ((await read(rid, at + Msix.FLAGS, 2)) & MsixFlags.QSIZE) + 1,
    table: await place(Msix.TABLE),
    pba: await place(Msix.PBA),
  };
}

async function readSriov(read: ConfigReader, rid: number, base: number): Promise<SriovInfo> {
  const r = (off: number) => read(rid, base + off, 2);
  const totalVfs = await r(Sriov.TOTAL_VF);
  return {
    offset: base,
    enabled: ((await r(Sriov.CTRL)) & SriovCtrl.VFE) !== 0,
    totalVfs,
    numVfs: Math.min(await r(Sriov.NUM_VF), totalVfs),
    firstVfOffset: await r(Sriov.VF_OFFSET),
    vfStride: await r(Sriov.VF_STRIDE),
    vfDeviceId: await r(Sriov.VF_DID),
    vfBars: [],
  };
}

/** VF `i`'s slice of its PF's VF BARs. */
const vfBarsAt = (s: SriovInfo, i: number): AssignedBar[] =>
  s.vfBars.map((b) => ({
    ...b,
    address: b.address === undefined ? undefined : b.address + BigInt(i) * b.size,
  }));

/**
 * Re-reads a PF's VF Enable and NumVFs (two config reads). When either changed since the scan, the
 * PF's SR-IOV record is refreshed (offset and stride follow NumVFs) and its VFs as they are now are
 * returned, with their slices of the VF BARs the host assigned; otherwise undefined.
 */
export async function rescanVfs(
  read: ConfigReader,
  pf: ScannedFunction,
  batch: ConfigBatch,
): Promise<ScannedFunction[] | undefined> {
  const s = pf.sriov;
  if (!s) return undefined;
  const enabled = ((await read(pf.rid, s.offset + Sriov.CTRL, 2)) & SriovCtrl.VFE) !== 0;
  const numVfs = Math.min(await read(pf.rid, s.offset + Sriov.NUM_VF, 2), s.totalVfs);
  if (enabled === s.enabled && numVfs === s.numVfs) return undefined;
  const now: SriovInfo = { ...(await readSriov(read, pf.rid, s.offset)), vfBars: s.vfBars };
  pf.sriov = now;
  const vfs = await scanVfs(batch, pf);
  vfs.forEach((vf, i) => {
    vf.bars = vfBarsAt(now, i);
  });
  return vfs;
}

/** A PF's enabled VFs, their config spaces read together. */
async function scanVfs(batch: ConfigBatch, pf: ScannedFunction): Promise<ScannedFunction[]> {
  const s = pf.sriov;
  if (!s?.enabled) return [];
  const rids: number[] = [];
  for (let i = 0; i < s.numVfs; i++) {
    const rid = vfRoutingId(pf.rid, s.firstVfOffset, s.vfStride, i);
    if (rid > 0xffff) break;
    rids.push(rid);
  }
  const spaces = await readSpaces(batch, rids);
  return Promise.all(
    rids.map(async (rid, i) => {
      const vf: ScannedFunction = {
        rid,
        vendorId: pf.vendorId,
        deviceId: s.vfDeviceId,
        portType: undefined,
        tee: false,
        multiFunction: false,
        pf: pf.rid,
        doeOffsets: [],
        bars: [],
      };
      await readCapabilities(fromSpace(spaces[i]!), vf);
      return vf;
    }),
  );
}

// ---- BAR sizing ------------------------------------------------------------------------------

export interface SizedBar {
  index: number;
  is64: boolean;
  prefetchable: boolean;
  size: bigint;
}

/**
 * Sizes the six memory BARs at `at` (the header's, or the SR-IOV VF BARs) as Linux
 * pci_read_bases/__pci_read_base do: memory decode off, then for each BAR save it, write all ones,
 * read the mask back, restore it (both DWs of a 64-bit BAR); a mask of 0 is an unimplemented BAR.
 * These are config writes: a locked TDI sees them.
 */
export function sizeBars(
  read: ConfigReader,
  write: ConfigWriter,
  rid: number,
  at: number = Header.BAR0,
): Promise<SizedBar[]> {
  return sizeBarsBy(oneByOne(read, write), rid, at);
}

/**
 * sizeBars in two batches: Command and the six BARs read (the values to restore), then every write
 * and mask read in Linux's order. Every BAR register is probed, as Linux's loop does (the high DW
 * of a 64-bit BAR as part of its low one).
 */
async function sizeBarsBy(batch: ConfigBatch, rid: number, at: number): Promise<SizedBar[]> {
  const [command, saved] = await batch([readOf(rid, Header.COMMAND, 2), readOf(rid, at, 4, BAR_COUNT)]);
  const cmd = command!.readUInt16LE(0);
  const masks = await batch([
    writeOf(rid, Header.COMMAND, 2, cmd & ~Command.MEMORY),
    ...Array.from({ length: BAR_COUNT }, (_, i) => [
      writeOf(rid, at + 4 * i, 4, 0xffff_ffff),
      readOf(rid, at + 4 * i, 4),
      writeOf(rid, at + 4 * i, 4, saved!.readUInt32LE(4 * i)),
    ]).flat(),
    writeOf(rid, Header.COMMAND, 2, cmd),
  ]);
  const mask = (i: number) => masks[i]!.readUInt32LE(0);
  const bars: SizedBar[] = [];
  for (let i = 0; i < BAR_COUNT; i++) {
    const low = mask(i);
    // I/O BARs are never emulated.
    if (low === 0 || low & 1) continue;
    const is64 = (low & Bar.MEM_TYPE_64) !== 0 && i + 1 < BAR_COUNT;
    const high = is64 ? mask(i + 1) : 0xffff_ffff;
    const both = (BigInt(high) << 32n) | BigInt((low & ~Bar.FLAG_BITS) >>> 0);
    bars.push({
      index: i,
      is64,
      prefetchable: (low & Bar.PREFETCH) !== 0,
      size: (~both & (2n ** 64n - 1n)) + 1n,
    });
    if (is64) i++;
  }
  return bars;
}

// ---- BAR assignment --------------------------------------------------------------------------

export interface AssignedBar {
  index: number;
  type: MmioKind;
  prefetchable: boolean;
  size: bigint;
  /** Undefined when the window had no room for it. */
  address: bigint | undefined;
}

/**
 * Sizes and assigns the memory BARs of each PF, and its SR-IOV VF BARs, as a PCI core does: each
 * BAR gets a naturally aligned region of its window, VF BAR n one of TotalVFs × its size aligned to
 * its size (as Linux sriov_init reserves), which VF i decodes at base + i × size. The addresses are written over the
 * control wire, then Memory Space Enable is set on each PF whose BARs all got room, and VF MSE when
 * VFs are enabled and their BARs all got room (Linux pci_enable_resources refuses a function with
 * an unassigned BAR). A BAR with no room stays unassigned, with a warning. Fills in `bars` of each
 * function; the regions belong to `owner` in the allocator.
 */
export async function assignBars(
  batch: ConfigBatch,
  functions: readonly ScannedFunction[],
  mmio: MmioAllocator,
  owner: unknown,
  log: Logger,
): Promise<void> {
  /**
   * Sizes and allocates the BARs at `at`, then writes their addresses and reads `enable`'s register
   * in one request; sets `bit` in it when every BAR got room.
   */
  const assign = async (
    rid: number,
    at: number,
    count: bigint,
    enable: { offset: number; bit: number } | undefined,
  ): Promise<AssignedBar[]> => {
    const bars: AssignedBar[] = [];
    const writes: ConfigAccess[] = [];
    for (const b of await sizeBarsBy(batch, rid, at)) {
      const type: MmioKind = b.is64 ? "mem64" : "mem32";
      const address = mmio.allocate(owner, type, b.size * count, b.size);
      bars.push({ index: b.index, type, prefetchable: b.prefetchable, size: b.size, address });
      if (address === undefined) {
        log.warn(
          { bdf: formatRoutingId(rid), bar: b.index, at, size: hex(b.size * count), type },
          "no room in the MMIO window; the BAR stays unassigned",
        );
        continue;
      }
      const reg = at + 4 * b.index;
      writes.push(writeOf(rid, reg, 4, Number(address & 0xffff_ffffn)));
      if (b.is64) writes.push(writeOf(rid, reg + 4, 4, Number(address >> 32n)));
    }
    // Linux pci_enable_resources refuses a function with an unassigned BAR.
    const on = enable && bars.every((b) => b.address !== undefined) ? enable : undefined;
    const [before] = await batch([...writes, ...(on ? [readOf(rid, on.offset, 2)] : [])]);
    if (on) await batch([writeOf(rid, on.offset, 2, before!.readUInt16LE(0) | on.bit)]);
    return bars;
  };
  for (const pf of functions) {
    if (pf.pf !== undefined) continue;
    pf.bars = await assign(pf.rid, Header.BAR0, 1n, { offset: Header.COMMAND, bit: Command.MEMORY });
    const s = pf.sriov;
    if (!s || s.totalVfs === 0) continue;
    const vfMse = s.enabled ? { offset: s.offset + Sriov.CTRL, bit: SriovCtrl.MSE } : undefined;
    s.vfBars = await assign(pf.rid, s.offset + Sriov.BAR0, BigInt(s.totalVfs), vfMse);
    // scanVfs lists a PF's VFs in VF order.
    functions
      .filter((f) => f.pf === pf.rid)
      .forEach((vf, i) => {
        vf.bars = vfBarsAt(s, i);
      });
  }
}

// ---- DOE discovery ---------------------------------------------------------------------------

/**
 * Runs DOE discovery on every DOE capability found: over the mailbox's TCP endpoint named by the
 * identity, or through the DOE registers when the identity names none. A mailbox whose discovery
 * fails is kept with no protocols, so it carries nothing.
 */
export async function discoverMailboxes(
  functions: readonly ScannedFunction[],
  identity: DeviceIdentity,
  control: ControlClient,
  opts: { timeoutMs: number; log: Logger },
): Promise<ScannedMailbox[]> {
  const jobs = functions.flatMap((f) =>
    f.doeOffsets.map(async (capOffset): Promise<ScannedMailbox> => {
      const id = identity.mailboxes.find((m) => m.rid === f.rid && m.doeCapOffset === capOffset);
      const endpoint = id ? { host: id.host, port: id.port } : undefined;
      try {
        let protocols: DoeProtocol[];
        if (endpoint) {
          const doe = await DoeClient.connect(endpoint, { timeoutMs: opts.timeoutMs });
          doe.close();
          protocols = doe.protocols;
        } else {
          const regs = new DoeRegisterClient(control, f.rid, capOffset, { timeoutMs: opts.timeoutMs });
          await regs.abort();
          protocols = await regs.discover();
        }
        return { rid: f.rid, capOffset, endpoint, protocols };
      } catch (e) {
        opts.log.warn(
          { bdf: formatRoutingId(f.rid), capOffset, err: (e as Error).message },
          "DOE discovery failed; the mailbox is left out",
        );
        return { rid: f.rid, capOffset, endpoint, protocols: [] };
      }
    }),
  );
  return Promise.all(jobs);
}

// ---- TDEV / TDI rules ------------------------------------------------------------------------

/** A DOE mailbox of a function, with what discovery found on it. */
export interface ScannedMailbox {
  rid: number;
  capOffset: number;
  /** Where its mailbox endpoint listens, from the device identity; undefined if the identity names none. */
  endpoint: { host: string; port: number } | undefined;
  protocols: DoeProtocol[];
}

export interface TdevPlan {
  rid: number;
  /** First mailbox of the function listing CMA/SPDM (0001:01), as pci_find_doe_mailbox picks. */
  cma: ScannedMailbox | undefined;
  /** First mailbox of the function listing secured CMA/SPDM (0001:02). */
  secured: ScannedMailbox | undefined;
}

export interface TdiPlan {
  rid: number;
  /** Routing ID of the TDEV this TDI belongs to. */
  tdev: number;
}

const CMA = "0001:01";
const SECURED_CMA = "0001:02";

const functionNumber = (rid: number) => rid & 0x7;

/**
 * The host rules (docs/ARCHITECTURE.md): a TDEV for each PCIe endpoint that is not a VF, has
 * TEE-IO, and is PF0 of an SR-IOV device or a function without SR-IOV (any function number, as the
 * RFC PCI TSM patches had it; mainline Linux later narrowed it to function 0); a TDI for each such
 * function; a TDI for each VF whose PF0 has a TDEV, bound to that TDEV. Nothing else.
 */
export function planTsm(
  functions: readonly ScannedFunction[],
  mailboxes: readonly ScannedMailbox[],
): { tdevs: TdevPlan[]; tdis: TdiPlan[] } {
  const isTdev = (f: ScannedFunction) =>
    f.pf === undefined &&
    f.portType === PciExpType.ENDPOINT &&
    f.tee &&
    (!f.sriov || functionNumber(f.rid) === 0);
  const firstListing = (rid: number, id: string) =>
    mailboxes.find((m) => m.rid === rid && m.protocols.some((p) => protocolId(p) === id));
  const tdevs: TdevPlan[] = functions
    .filter(isTdev)
    .map((f) => ({ rid: f.rid, cma: firstListing(f.rid, CMA), secured: firstListing(f.rid, SECURED_CMA) }));
  const tdevRids = new Set(tdevs.map((t) => t.rid));
  const tdis: TdiPlan[] = [];
  for (const f of functions) {
    if (tdevRids.has(f.rid)) tdis.push({ rid: f.rid, tdev: f.rid });
    else if (f.pf !== undefined) {
      // PF0: function 0 of the PF's slot (devfn with the function bits cleared).
      const pf0 = f.pf & ~0x7;
      if (tdevRids.has(pf0)) tdis.push({ rid: f.rid, tdev: pf0 });
    }
  }
  return { tdevs, tdis };
}
