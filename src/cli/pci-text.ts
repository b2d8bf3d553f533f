/**
 * The text of `doe-emu lspci` and `doe-emu setpci`, as pure functions over a snapshot of config
 * space: lspci's lines and hex dumps (pciutils formats, numeric IDs instead of a pci.ids database),
 * and setpci's register expressions (`REG[+OFF][.W][=VALUE[:MASK]]`, numbers in hex as setpci reads them).
 */

import { hexDigits } from "../../protocol/hex.js";
import {
  BAR_COUNT,
  Bar,
  CAP_LIST_NEXT,
  CapId,
  Command,
  type ConfigWidth,
  DevCap,
  Doe,
  DoeCap,
  DoeCtrl,
  DoeStatus,
  decodeExtCapHeader,
  ExtCapId,
  FIRST_EXT_CAP,
  formatRoutingId,
  Header,
  IDE_SEL_CAP_ASSOC_NUM,
  Ide,
  IdeCap,
  IdeLink,
  IdeSel,
  IdeStreamCtl,
  IdeStreamState,
  IdeStreamSts,
  ideSelectiveBlockBytes,
  Msix,
  MsixFlags,
  PciExp,
  PciExpFlags,
  PciExpType,
  Sriov,
  SriovCtrl,
  Status,
} from "../../protocol/pci.js";
import { fieldOf } from "../bits.js";

// ---- capabilities ----------------------------------------------------------------------------

export interface FoundCapability {
  extended: boolean;
  id: number;
  offset: number;
  /** The extended capability's version; 0 for a legacy one. */
  version: number;
}

/** Bound on list walks, so a looping list in a snapshot cannot hang us. */
const MAX_CAPS = (0x1000 - FIRST_EXT_CAP) / 4;

/** Every capability of a config snapshot, legacy list first, each list in its order. */
export function capabilities(cfg: Buffer): FoundCapability[] {
  const found: FoundCapability[] = [];
  if (cfg.readUInt16LE(Header.STATUS) & Status.CAP_LIST) {
    let at = cfg[Header.CAPABILITY_LIST]! & 0xfc;
    for (let hops = 0; at && hops < MAX_CAPS; hops++) {
      found.push({ extended: false, id: cfg[at]!, offset: at, version: 0 });
      at = cfg[at + CAP_LIST_NEXT]! & 0xfc;
    }
  }
  if (cfg.length <= FIRST_EXT_CAP) return found;
  for (let at = FIRST_EXT_CAP, hops = 0; at && hops < MAX_CAPS; hops++) {
    const dw = cfg.readUInt32LE(at);
    if (dw === 0 || dw === 0xffff_ffff) break;
    const h = decodeExtCapHeader(dw);
    found.push({ extended: true, id: h.id, offset: at, version: h.version });
    at = h.next;
  }
  return found;
}

// ---- setpci expressions ----------------------------------------------------------------------

/** Where a setpci register is: a fixed offset, or an offset from a capability found by ID. */
export interface SetpciRegister {
  /** The register as written, for messages. */
  name: string;
  cap?: { extended: boolean; id: number };
  offset: number;
  width: ConfigWidth;
}

export interface SetpciOp {
  register: SetpciRegister;
  /** Absent for a read. The mask selects the bits written; the others keep their value. */
  write?: { value: number; mask: number };
}

const B = 1;
const W = 2;
const L = 4;
/** setpci's names of type-0 header registers, with their widths. */
const REGISTERS: Record<string, [number, ConfigWidth]> = {
  VENDOR_ID: [Header.VENDOR_ID, W],
  DEVICE_ID: [Header.DEVICE_ID, W],
  COMMAND: [Header.COMMAND, W],
  STATUS: [Header.STATUS, W],
  REVISION: [Header.REVISION_ID, B],
  CLASS_PROG: [Header.CLASS_PROG, B],
  CLASS_DEVICE: [0x0a, W],
  CACHE_LINE_SIZE: [Header.CACHE_LINE_SIZE, B],
  LATENCY_TIMER: [Header.LATENCY_TIMER, B],
  HEADER_TYPE: [Header.HEADER_TYPE, B],
  BIST: [Header.BIST, B],
  ...Object.fromEntries(
    Array.from({ length: BAR_COUNT }, (_, i) => [`BASE_ADDRESS_${i}`, [Header.BAR0 + 4 * i, L]]),
  ),
  SUBSYSTEM_VENDOR_ID: [Header.SUBSYSTEM_VENDOR_ID, W],
  SUBSYSTEM_ID: [Header.SUBSYSTEM_ID, W],
  ROM_ADDRESS: [Header.ROM_ADDRESS, L],
  CAPABILITIES: [Header.CAPABILITY_LIST, B],
  INTERRUPT_LINE: [Header.INTERRUPT_LINE, B],
  INTERRUPT_PIN: [Header.INTERRUPT_PIN, B],
};

/** setpci's capability names (CAP_xxx legacy, ECAP_xxx extended). */
const CAPABILITY_NAMES: Record<string, { extended: boolean; id: number }> = {
  CAP_PM: { extended: false, id: CapId.PM },
  CAP_MSI: { extended: false, id: CapId.MSI },
  CAP_EXP: { extended: false, id: CapId.EXP },
  CAP_MSIX: { extended: false, id: CapId.MSIX },
  ECAP_SRIOV: { extended: true, id: ExtCapId.SRIOV },
  ECAP_ARI: { extended: true, id: ExtCapId.ARI },
  ECAP_ATS: { extended: true, id: ExtCapId.ATS },
  ECAP_PASID: { extended: true, id: ExtCapId.PASID },
  ECAP_DOE: { extended: true, id: ExtCapId.DOE },
  ECAP_IDE: { extended: true, id: ExtCapId.IDE },
};

const WIDTHS: Record<string, ConfigWidth> = { b: 1, w: 2, l: 4 };

/** A setpci number: hex, with or without 0x. */
function parseHex(text: string, what: string): number {
  if (!/^(0x)?[0-9a-f]{1,8}$/i.test(text)) throw new Error(`setpci: invalid ${what} "${text}"`);
  return Number.parseInt(text.replace(/^0x/i, ""), 16);
}

/** One setpci operation: `REG[+OFF][.W]` reads, `…=VALUE[:MASK]` writes. */
export function parseSetpciOp(text: string): SetpciOp {
  const m = /^([^=+.]+)(?:\+([^=.]+))?(?:\.([^=]*))?(?:=(.*))?$/.exec(text);
  if (!m) throw new Error(`setpci: invalid expression "${text}"`);
  const [, base = "", plus, widthText, valueText] = m;
  const upper = base.toUpperCase();
  let offset: number;
  let width: ConfigWidth | undefined;
  let cap: SetpciRegister["cap"];
  const named = REGISTERS[upper];
  const capMatch = /^(E?CAP)(?:_(.+)|(0x[0-9a-f]+|[0-9a-f]+))$/i.exec(base);
  if (named) [offset, width] = named;
  else if (CAPABILITY_NAMES[upper]) {
    cap = CAPABILITY_NAMES[upper];
    offset = 0;
  } else if (capMatch?.[3]) {
    cap = { extended: capMatch[1]!.toUpperCase() === "ECAP", id: parseHex(capMatch[3], "capability ID") };
    offset = 0;
  } else if (/^(0x)?[0-9a-f]+$/i.test(base)) offset = parseHex(base, "offset");
  else throw new Error(`setpci: unknown register ${base}`);
  if (plus !== undefined) offset += parseHex(plus, "offset");
  if (widthText !== undefined) {
    width = WIDTHS[widthText.toLowerCase()];
    if (!width) throw new Error(`setpci: invalid width "${widthText}" (.b, .w or .l)`);
  }
  if (!width) throw new Error(`setpci: missing width in "${text}" (.b, .w or .l)`);
  if (offset % width !== 0 || offset + width > 0x1000)
    throw new Error(`setpci: offset 0x${offset.toString(16)} is not a .${widthName(width)} register`);
  const register: SetpciRegister = { name: text.split("=")[0]!, offset, width, ...(cap ? { cap } : {}) };
  if (valueText === undefined) return { register };
  const [v, mask, ...rest] = valueText.split(":");
  if (rest.length || v === undefined) throw new Error(`setpci: invalid value "${valueText}"`);
  const full = width === 4 ? 0xffff_ffff : (1 << (width * 8)) - 1;
  const value = parseHex(v, "value");
  const m2 = mask === undefined ? full : parseHex(mask, "mask");
  if (value > full || m2 > full)
    throw new Error(`setpci: value "${valueText}" does not fit in .${widthName(width)}`);
  return { register, write: { value, mask: m2 } };
}

const widthName = (w: ConfigWidth) => ({ 1: "b", 2: "w", 4: "l" })[w];

/** The config offset of a register in a function whose config snapshot is `cfg`. */
export function resolveRegister(r: SetpciRegister, cfg: Buffer, rid: number): number {
  if (!r.cap) return r.offset;
  const { extended, id } = r.cap;
  const found = capabilities(cfg).find((c) => c.extended === extended && c.id === id);
  if (!found)
    throw new Error(
      `setpci: ${formatRoutingId(rid)}: ${extended ? "extended " : ""}capability 0x${id.toString(16)} not found`,
    );
  return found.offset + r.offset;
}

/** The value a value:mask write leaves: the masked bits from `value`, the rest from `old`. */
export const applyMask = (old: number, value: number, mask: number): number =>
  ((old & ~mask) | (value & mask)) >>> 0;

/** A read as setpci prints it: hex, zero-padded to the width. */
export const formatSetpciValue = (value: number, width: ConfigWidth): string =>
  (value >>> 0).toString(16).padStart(width * 2, "0");

// ---- lspci -------------------------------------------------------------------------------------

const CLASS_NAMES: Record<number, string> = {
  0: "Non-VGA unclassified device",
  256: "SCSI storage controller",
  262: "SATA controller",
  264: "Non-Volatile memory controller",
  512: "Ethernet controller",
  519: "Infiniband controller",
  640: "Network controller",
  768: "VGA compatible controller",
  770: "3D controller",
  896: "Display controller",
  1025: "Multimedia audio controller",
  1027: "Audio device",
  1408: "Memory controller",
  1536: "Host bridge",
  1540: "PCI bridge",
  1664: "Bridge",
  2176: "System peripheral",
  2880: "Co-processor",
  3075: "USB controller",
  3077: "SMBus",
  4224: "Encryption controller",
  4480: "Signal processing controller",
  4608: "Processing accelerators",
};
const BASE_CLASS_NAMES: Record<number, string> = {
  1: "Mass storage controller",
  2: "Network controller",
  3: "Display controller",
  4: "Multimedia controller",
  5: "Memory controller",
  6: "Bridge",
  7: "Communication controller",
  8: "Generic system peripheral",
  11: "Processor",
  12: "Serial bus controller",
  16: "Encryption controller",
  17: "Signal processing controller",
  18: "Processing accelerators",
};

const flag = (name: string, on: boolean | number) => `${name}${on ? "+" : "-"}`;
const flags = (word: number, bits: [string, number][]) =>
  bits.map(([name, mask]) => flag(name, word & mask)).join(" ");

/** The class's name, or "Class cccc" as lspci prints a class it has no name for. */
export function className(classCode: number): string {
  const cls = classCode >>> 8;
  return CLASS_NAMES[cls] ?? BASE_CLASS_NAMES[cls >>> 8] ?? `Class ${hexDigits(cls, 4)}`;
}

/** lspci's first line of a function: `bb:dd.f Class: Vendor vvvv Device dddd (rev rr)`; `-n` prints the numbers. */
export function formatFunctionLine(rid: number, cfg: Buffer, numeric: boolean): string {
  const classCode = cfg.readUInt32LE(Header.REVISION_ID) >>> 8;
  const vendor = hexDigits(cfg.readUInt16LE(Header.VENDOR_ID), 4);
  const device = hexDigits(cfg.readUInt16LE(Header.DEVICE_ID), 4);
  const rev = cfg[Header.REVISION_ID]!;
  const progIf = classCode & 0xff;
  const head = numeric
    ? `${hexDigits(classCode >>> 8, 4)}: ${vendor}:${device}`
    : `${className(classCode)}: Vendor ${vendor} Device ${device}`;
  return `${formatRoutingId(rid)} ${head}${rev ? ` (rev ${hexDigits(rev, 2)})` : ""}${progIf ? ` (prog-if ${hexDigits(progIf, 2)})` : ""}`;
}

/** lspci -x/-xxx/-xxxx: `oo: xx xx …` 16 bytes a line. */
export function formatHexDump(cfg: Buffer, bytes: number): string[] {
  const lines: string[] = [];
  for (let at = 0; at < bytes; at += 16)
    lines.push(
      `${hexDigits(at, 2)}:${[...cfg.subarray(at, at + 16)].map((b) => ` ${hexDigits(b, 2)}`).join("")}`,
    );
  return lines;
}

/** lspci's size: bytes, or K/M/G when a whole multiple. */
export function formatSize(size: bigint): string {
  const units = ["", "K", "M", "G", "T", "P", "E"];
  let u = 0;
  while (size >= 1024n && size % 1024n === 0n && u < units.length - 1) {
    size /= 1024n;
    u++;
  }
  return `${size}${units[u]}`;
}

export interface BarView {
  index: number;
  /** Address bits, both DWs of a 64-bit BAR. */
  address: bigint;
  is64: boolean;
  prefetchable: boolean;
  /** Memory decode off in Command (lspci's "[disabled]"). */
  disabled?: boolean;
  /** An address the function's own BAR register does not hold, as a VF's (lspci's "[virtual]"). */
  virtual?: boolean;
  size?: bigint;
}

/** `Region n: Memory at a (64-bit, prefetchable) [disabled] [size=1M]`; `wide` prints 16 digits as lspci's SR-IOV lines do. */
export function formatBarLine(b: BarView, wide = false): string {
  const digits = wide && b.is64 ? 16 : 8;
  const type = `${b.is64 ? "64-bit" : "32-bit"}, ${b.prefetchable ? "" : "non-"}prefetchable`;
  // A VF's decode is the PF's SR-IOV MSE, so lspci says only "[virtual]" there.
  const tags = b.virtual ? " [virtual]" : b.disabled ? " [disabled]" : "";
  const size = b.size ? ` [size=${formatSize(b.size)}]` : "";
  return `Region ${b.index}: Memory at ${b.address.toString(16).padStart(digits, "0")} (${type})${tags}${size}`;
}

/** The memory BARs of six BAR registers at `at` (the header's, or the SR-IOV VF BARs). */
export function readBars(cfg: Buffer, at: number, sizes: readonly (bigint | undefined)[] = []): BarView[] {
  const bars: BarView[] = [];
  for (let i = 0; i < BAR_COUNT; i++) {
    const low = cfg.readUInt32LE(at + 4 * i);
    // I/O BARs are never described; an all-zero register is an unimplemented BAR.
    if (low & 1 || (low === 0 && !sizes[i])) continue;
    const is64 = (low & Bar.MEM_TYPE_64) !== 0;
    const high = is64 && i + 1 < BAR_COUNT ? cfg.readUInt32LE(at + 4 * (i + 1)) : 0;
    bars.push({
      index: i,
      address: (BigInt(high) << 32n) | BigInt((low & ~Bar.FLAG_BITS) >>> 0),
      is64,
      prefetchable: (low & Bar.PREFETCH) !== 0,
      ...(sizes[i] ? { size: sizes[i] } : {}),
    });
    if (is64) i++;
  }
  return bars;
}

const PORT_TYPE_NAMES: Record<number, string> = {
  [PciExpType.ENDPOINT]: "Endpoint",
  [PciExpType.LEGACY_ENDPOINT]: "Legacy Endpoint",
  [PciExpType.ROOT_PORT]: "Root Port (Slot-)",
  [PciExpType.UPSTREAM]: "Upstream Port",
  [PciExpType.DOWNSTREAM]: "Downstream Port (Slot-)",
  [PciExpType.RC_END]: "Root Complex Integrated Endpoint",
};

const EXT_CAP_NAMES: Record<number, string> = {
  [ExtCapId.SRIOV]: "Single Root I/O Virtualization (SR-IOV)",
  [ExtCapId.ARI]: "Alternative Routing-ID Interpretation (ARI)",
  [ExtCapId.ATS]: "Address Translation Service (ATS)",
  [ExtCapId.PASID]: "Process Address Space ID (PASID)",
  [ExtCapId.DOE]: "Data Object Exchange",
  [ExtCapId.IDE]: "Integrity & Data Encryption",
};

/**
 * lspci -vv's lines under the function line: Control, Status, Regions, then each capability,
 * tab-indented as lspci does. `bars` are the function's BARs (readBars, with sizes when known).
 */
export function formatVerbose(cfg: Buffer, bars: readonly BarView[]): string[] {
  const cmd = cfg.readUInt16LE(Header.COMMAND);
  const sta = cfg.readUInt16LE(Header.STATUS);
  const out = [
    `\tControl: ${flags(cmd, [
      ["I/O", Command.IO],
      ["Mem", Command.MEMORY],
      ["BusMaster", Command.MASTER],
      ["SpecCycle", 0x8],
      ["MemWINV", 0x10],
      ["VGASnoop", 0x20],
      ["ParErr", 0x40],
      ["Stepping", 0x80],
      ["SERR", 0x100],
      ["FastB2B", 0x200],
      ["DisINTx", Command.INTX_DISABLE],
    ])}`,
    `\tStatus: ${flags(sta, [
      ["Cap", Status.CAP_LIST],
      ["66MHz", 0x20],
      ["UDF", 0x40],
      ["FastB2B", 0x80],
      ["ParErr", 0x100],
    ])} DEVSEL=${["fast", "medium", "slow", "??"][(sta >> 9) & 3]} ${flags(sta, [
      [">TAbort", 0x800],
      ["<TAbort", 0x1000],
      ["<MAbort", 0x2000],
      [">SERR", 0x4000],
      ["<PERR", 0x8000],
      ["INTx", 0x8],
    ])}`,
  ];
  const disabled = !(cmd & Command.MEMORY);
  for (const b of bars) out.push(`\t${formatBarLine({ ...b, disabled })}`);
  for (const c of capabilities(cfg)) out.push(...(c.extended ? extCapLines(cfg, c) : capLines(cfg, c)));
  return out;
}

function capLines(cfg: Buffer, c: FoundCapability): string[] {
  const at = c.offset;
  const head = `\tCapabilities: [${hexDigits(at, 2)}] `;
  const w = (off: number) => cfg.readUInt16LE(at + off);
  const dw = (off: number) => cfg.readUInt32LE(at + off);
  switch (c.id) {
    case CapId.PM:
      return [`${head}Power Management version ${w(2) & 7}`];
    case CapId.MSI:
      return [
        `${head}MSI: ${flag("Enable", w(2) & 1)} Count=${1 << ((w(2) >> 4) & 7)}/${1 << ((w(2) >> 1) & 7)} ${flag("Maskable", w(2) & 0x100)} ${flag("64bit", w(2) & 0x80)}`,
      ];
    case CapId.EXP: {
      const fl = w(PciExp.FLAGS);
      const type = fieldOf(fl, PciExpFlags.TYPE_MASK);
      const devcap = dw(PciExp.DEVCAP);
      return [
        `${head}Express (v${fl & PciExpFlags.VERSION_MASK}) ${PORT_TYPE_NAMES[type] ?? `Unknown type ${type}`}, MSI ${hexDigits((fl >> 9) & 0x1f, 2)}`,
        `\t\tDevCap:\tMaxPayload ${128 << (devcap & 7)} bytes, PhantFunc ${(devcap >> 3) & 3}`,
        `\t\t\t${flags(devcap, [
          ["ExtTag", 0x20],
          ["AttnBtn", 0x1000],
          ["AttnInd", 0x2000],
          ["PwrInd", 0x4000],
          ["RBE", DevCap.RBER],
          ["FLReset", DevCap.FLR],
        ])} SlotPowerLimit 0W ${flag("TEE-IO", devcap & DevCap.TEE)}`,
      ];
    }
    case CapId.MSIX: {
      const fl = w(Msix.FLAGS);
      const where = (reg: number) => `BAR=${dw(reg) & 7} offset=${hexDigits(dw(reg) & ~7, 8)}`;
      return [
        `${head}MSI-X: ${flag("Enable", fl & MsixFlags.ENABLE)} Count=${(fl & MsixFlags.QSIZE) + 1} ${flag("Masked", fl & MsixFlags.MASKALL)}`,
        `\t\tVector table: ${where(Msix.TABLE)}`,
        `\t\tPBA: ${where(Msix.PBA)}`,
      ];
    }
    default:
      return [`${head}Capability ID 0x${hexDigits(c.id, 2)}`];
  }
}

function extCapLines(cfg: Buffer, c: FoundCapability): string[] {
  const at = c.offset;
  const name = EXT_CAP_NAMES[c.id] ?? `Extended Capability ID 0x${c.id.toString(16)}`;
  const out = [`\tCapabilities: [${hexDigits(at, 3)} v${c.version}] ${name}`];
  const w = (off: number) => cfg.readUInt16LE(at + off);
  const dw = (off: number) => cfg.readUInt32LE(at + off);
  if (c.id === ExtCapId.DOE) {
    out.push(
      `\t\tDOECap: ${flag("IntSup", dw(Doe.CAP) & DoeCap.INT_SUP)}`,
      `\t\tDOECtl: ${flag("IntEn", dw(Doe.CTRL) & DoeCtrl.INT_EN)}`,
      `\t\tDOESta: ${flags(dw(Doe.STATUS), [
        ["Busy", DoeStatus.BUSY],
        ["IntSta", DoeStatus.INT_STATUS],
        ["Error", DoeStatus.ERROR],
        ["ObjectReady", DoeStatus.DATA_OBJECT_READY],
      ])}`,
    );
  } else if (c.id === ExtCapId.SRIOV) {
    out.push(
      `\t\tIOVCtl:\t${flags(w(Sriov.CTRL), [
        ["Enable", SriovCtrl.VFE],
        ["Migration", SriovCtrl.VFM],
        ["Interrupt", SriovCtrl.INTR],
        ["MSE", SriovCtrl.MSE],
        ["ARIHierarchy", SriovCtrl.ARI],
      ])}`,
      `\t\tInitial VFs: ${w(Sriov.INITIAL_VF)}, Total VFs: ${w(Sriov.TOTAL_VF)}, Number of VFs: ${w(Sriov.NUM_VF)}, Function Dependency Link: ${hexDigits(cfg[at + Sriov.FUNC_LINK]!, 2)}`,
      `\t\tVF offset: ${w(Sriov.VF_OFFSET)}, stride: ${w(Sriov.VF_STRIDE)}, Device ID: ${hexDigits(w(Sriov.VF_DID), 4)}`,
      `\t\tSupported Page Size: ${hexDigits(dw(Sriov.SUP_PGSIZE), 8)}, System Page Size: ${hexDigits(dw(Sriov.SYS_PGSIZE), 8)}`,
      ...readBars(cfg, at + Sriov.BAR0).map((b) => `\t\t${formatBarLine(b, true)}`),
    );
  } else if (c.id === ExtCapId.IDE) out.push(...ideLines(cfg, at));
  return out;
}

function ideLines(cfg: Buffer, at: number): string[] {
  const cap = cfg.readUInt32LE(at + Ide.CAP);
  const links = cap & IdeCap.LINK ? fieldOf(cap, IdeCap.LINK_TC_NUM) + 1 : 0;
  const selective = cap & IdeCap.SELECTIVE ? fieldOf(cap, IdeCap.SEL_NUM) + 1 : 0;
  const out = [
    `\t\tIDECap: Lnk=${links} Sel=${selective} ${flags(cap, [
      ["FlowThru", IdeCap.FLOWTHROUGH],
      ["PartHdr", IdeCap.PARTIAL_HEADER_ENC],
      ["Aggr", IdeCap.AGGREGATION],
      ["PCRC", IdeCap.PCRC],
      ["IDE_KM", IdeCap.IDE_KM],
      ["SelCfg", IdeCap.SEL_CFG],
      ["TeeLim", IdeCap.TEE_LIMITED],
    ])}`,
  ];
  const stream = (kind: string, n: number, ctl: number, sts: number) => {
    const state = fieldOf(sts, IdeStreamSts.STATE);
    const stateName =
      state === IdeStreamState.SECURE
        ? "Secure"
        : state === IdeStreamState.INSECURE
          ? "Insecure"
          : `State ${state}`;
    out.push(
      `\t\t${kind}#${n} Ctl: ${flag("En", ctl & IdeStreamCtl.ENABLE)} TC${fieldOf(ctl, IdeStreamCtl.TC)} ID${fieldOf(ctl, IdeStreamCtl.ID)}`,
      `\t\t${kind}#${n} Sta: ${stateName} ${flag("IdeFail", sts & IdeStreamSts.IDE_FAIL)}`,
    );
  };
  let block = at + Ide.LINK_STREAM_0;
  for (let i = 0; i < links; i++, block += Ide.LINK_BLOCK_SIZE)
    stream("LinkIDE", i, cfg.readUInt32LE(block + IdeLink.CTL), cfg.readUInt32LE(block + IdeLink.STS));
  for (let i = 0; i < selective && block + IdeSel.ADDR_0 <= cfg.length; i++) {
    stream("SelectiveIDE", i, cfg.readUInt32LE(block + IdeSel.CTL), cfg.readUInt32LE(block + IdeSel.STS));
    block += ideSelectiveBlockBytes(cfg.readUInt32LE(block + IdeSel.CAP) & IDE_SEL_CAP_ASSOC_NUM);
  }
  return out;
}
