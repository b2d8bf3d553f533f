/**
 * PCI configuration-space constants (PCIe r6.0 §7.5.1 type-0 header, §7.5.3 PCI Express capability,
 * §7.6 extended capabilities, §7.7.2 MSI-X, §7.9.24 DOE, §7.9.26 IDE, §9.3.3 SR-IOV), named after
 * Linux include/uapi/linux/pci_regs.h, and the few pure helpers every reader of config space needs.
 */
import { hexDigits } from "./hex.js";

/** A PCIe function's config space: 256 legacy bytes plus the extended space. */
export const CONFIG_SPACE_BYTES = 0x1000;
export const LEGACY_CONFIG_BYTES = 0x100;

/** Type-0 header offsets. */
export const Header = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION_ID: 0x08,
  /** 3 bytes: prog IF, sub-class, base class; read as a DW from 0x08 it is `class << 8 | revision`. */
  CLASS_PROG: 0x09,
  CACHE_LINE_SIZE: 0x0c,
  LATENCY_TIMER: 0x0d,
  HEADER_TYPE: 0x0e,
  BIST: 0x0f,
  BAR0: 0x10,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  ROM_ADDRESS: 0x30,
  CAPABILITY_LIST: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
} as const;

/** Vendor ID of an absent function; a read of any width there returns all ones. */
export const NO_FUNCTION_VENDOR_ID = 0xffff;

export const Command = { IO: 0x0001, MEMORY: 0x0002, MASTER: 0x0004, INTX_DISABLE: 0x0400 } as const;
export const Status = {
  CAP_LIST: 0x0010,
  /** The error bits software clears by writing 1 (parity, target/master aborts, SERR). */
  RW1C_ERRORS: 0xf900,
} as const;
export const HeaderType = { NORMAL: 0x00, BRIDGE: 0x01, MULTI_FUNCTION: 0x80 } as const;

/** BAR0-5 at 0x10-0x24 of a type-0 header; the SR-IOV capability's VF BAR0-5 have the same layout. */
export const BAR_COUNT = 6;
/**
 * Low bits of a memory BAR (§7.5.1.2.1): bit 0 clear (memory), [2:1] type, bit 3 prefetchable,
 * all read-only; the address bits above them are writable down to the BAR's size.
 */
export const Bar = {
  MEM_TYPE_64: 0x4,
  PREFETCH: 0x8,
  FLAG_BITS: 0xf,
  /** The type bits leave 16 bytes as the smallest memory BAR. */
  MIN_SIZE: 16,
  /** Bit 31 is the highest address bit a 32-bit BAR can leave writable. */
  MAX_SIZE_32: 2 ** 31,
} as const;

/**
 * The write masks of a memory BAR of `size` bytes (a power of two): its low DW and, for a 64-bit
 * BAR, its upper DW. Bits below the size read 0 whatever is written, so writing all ones and reading
 * back gives the size, as a host sizes a BAR.
 */
export function barAddressMasks(size: number): { low: number; high: number } {
  return {
    low: size >= 2 ** 32 ? 0 : (~(size - 1) & ~Bar.FLAG_BITS) >>> 0,
    high: ~(Math.max(size / 2 ** 32, 1) - 1) >>> 0,
  };
}

/** Legacy capability: byte 0 ID, byte 1 next pointer. Capabilities start at or above 0x40. */
export const CAP_LIST_ID = 0;
export const CAP_LIST_NEXT = 1;
export const FIRST_LEGACY_CAP = 0x40;
export const CapId = { PM: 0x01, MSI: 0x05, EXP: 0x10, MSIX: 0x11 } as const;

/** MSI-X capability register offsets, from the capability (§7.7.2). */
export const Msix = {
  /** Message Control. */
  FLAGS: 0x02,
  /** Table Offset/Table BIR: [2:0] BIR, [31:3] the QWORD-aligned offset into that BAR. */
  TABLE: 0x04,
  /** PBA Offset/PBA BIR, laid out as TABLE. */
  PBA: 0x08,
  SIZEOF: 0x0c,
  ENTRY_SIZE: 16,
  MAX_TABLE_SIZE: 2048,
  /** The highest offset the 32-bit Offset/BIR registers can hold. */
  MAX_OFFSET: 0xffff_fff8,
} as const;
/** A Table or PBA Offset/BIR register's value as the BAR index (BIR) and byte offset into that BAR. */
export const msixPlace = (v: number): { bar: number; offset: number } => ({
  bar: v & 0x7,
  offset: (v & ~0x7) >>> 0,
});
/** Message Control: Table Size (N-1, read-only), Function Mask and MSI-X Enable. */
export const MsixFlags = { QSIZE: 0x07ff, MASKALL: 0x4000, ENABLE: 0x8000 } as const;
/** Bytes of the Pending Bit Array of `vectors` vectors: one bit each, in whole QWORDs. */
export const msixPbaBytes = (vectors: number): number => Math.ceil(vectors / 64) * 8;

/** PCI Express capability register offsets, from the capability. */
export const PciExp = {
  FLAGS: 0x02,
  DEVCAP: 0x04,
  DEVCTL: 0x08,
  DEVSTA: 0x0a,
  LNKCAP: 0x0c,
  LNKCTL: 0x10,
  LNKSTA: 0x12,
  DEVCAP2: 0x24,
  DEVCTL2: 0x28,
  LNKCAP2: 0x2c,
  LNKCTL2: 0x30,
  LNKSTA2: 0x32,
  /** Size of a version-2 capability of an endpoint (PCI_CAP_EXP_ENDPOINT_SIZEOF_V2). */
  SIZEOF_V2: 0x3c,
} as const;

/** Version of the PCI Express capability layout (2 since PCIe 2.0). */
export const PCI_EXP_CAP_VERSION = 2;
export const PciExpFlags = { VERSION_MASK: 0x000f, TYPE_SHIFT: 4, TYPE_MASK: 0x00f0 } as const;

/** Device/Port type, PCIe Capabilities bits [7:4]. */
export const PciExpType = {
  ENDPOINT: 0x0,
  LEGACY_ENDPOINT: 0x1,
  ROOT_PORT: 0x4,
  UPSTREAM: 0x5,
  DOWNSTREAM: 0x6,
  PCI_BRIDGE: 0x7,
  PCIE_BRIDGE: 0x8,
  RC_END: 0x9,
  RC_EC: 0xa,
} as const;

/** Description names for the PCIe Device/Port types a function may have. */
export const PORT_TYPES = {
  endpoint: PciExpType.ENDPOINT,
  "legacy-endpoint": PciExpType.LEGACY_ENDPOINT,
  "root-port": PciExpType.ROOT_PORT,
  "switch-upstream": PciExpType.UPSTREAM,
  "switch-downstream": PciExpType.DOWNSTREAM,
  "rc-integrated-endpoint": PciExpType.RC_END,
} as const;

export const DevCap = {
  /** Role-based error reporting; every PCIe 1.1+ function sets it. */
  RBER: 0x0000_8000,
  FLR: 0x1000_0000,
  /** TEE-IO Supported (PCI_EXP_DEVCAP_TEE). */
  TEE: 0x4000_0000,
} as const;

export const DevCtl = {
  /** Initiate Function Level Reset; reads as 0. */
  BCR_FLR: 0x8000,
} as const;
/** Device Status error bits [3:0], write 1 to clear. */
export const DEVSTA_RW1C = 0x000f;

/** Extended capability header: [15:0] ID, [19:16] version, [31:20] next offset. */
export const FIRST_EXT_CAP = 0x100;
export const ExtCapId = {
  SRIOV: 0x0010,
  ARI: 0x000e,
  ATS: 0x000f,
  PASID: 0x001b,
  DVSEC: 0x0023,
  DOE: 0x002e,
  DEV3: 0x002f,
  IDE: 0x0030,
} as const;

export interface ExtCapHeader {
  id: number;
  version: number;
  /** Offset of the next extended capability; 0 ends the list. */
  next: number;
}

export function encodeExtCapHeader(h: ExtCapHeader): number {
  return ((h.next << 20) | ((h.version & 0xf) << 16) | (h.id & 0xffff)) >>> 0;
}

/** As Linux reads it: the next offset is masked to a DW boundary (`(hdr >> 20) & 0xffc`). */
export function decodeExtCapHeader(dw: number): ExtCapHeader {
  return { id: dw & 0xffff, version: (dw >>> 16) & 0xf, next: (dw >>> 20) & 0xffc };
}

/** DOE extended capability register offsets, from the capability header (PCIe r6.0 §7.9.24). */
export const Doe = {
  CAP: 0x04,
  CTRL: 0x08,
  STATUS: 0x0c,
  WRITE: 0x10,
  READ: 0x14,
  SIZEOF: 0x18,
  /** QEMU advertises version 1; Linux then sends discovery version 0. */
  CAP_VERSION: 1,
} as const;
export const DoeCap = { INT_SUP: 0x0000_0001, INT_MSG_NUM: 0x0000_0ffe } as const;
export const DoeCtrl = { ABORT: 0x0000_0001, INT_EN: 0x0000_0002, GO: 0x8000_0000 } as const;
export const DoeStatus = {
  BUSY: 0x0000_0001,
  INT_STATUS: 0x0000_0002,
  ERROR: 0x0000_0004,
  DATA_OBJECT_READY: 0x8000_0000,
} as const;

/** SR-IOV extended capability register offsets (PCIe r6.0 §9.3.3). */
export const Sriov = {
  CAP: 0x04,
  CTRL: 0x08,
  STATUS: 0x0a,
  INITIAL_VF: 0x0c,
  TOTAL_VF: 0x0e,
  NUM_VF: 0x10,
  FUNC_LINK: 0x12,
  VF_OFFSET: 0x14,
  VF_STRIDE: 0x16,
  VF_DID: 0x1a,
  SUP_PGSIZE: 0x1c,
  SYS_PGSIZE: 0x20,
  BAR0: 0x24,
  VFM: 0x3c,
  SIZEOF: 0x40,
} as const;
export const SriovCtrl = { VFE: 0x0001, VFM: 0x0002, INTR: 0x0004, MSE: 0x0008, ARI: 0x0010 } as const;
/** System Page Size: bit n set selects pages of 2^(n+12) bytes; VF BARs decode whole pages (§9.3.3.13). */
export const SRIOV_PAGE_SHIFT = 12;

/**
 * IDE extended capability (PCIe r6.0 §7.9.26): Capability and Control, then one Link IDE register
 * block per traffic class, then the Selective IDE stream register blocks, each with its address
 * association blocks. Offsets from the capability header, and from each block.
 */
export const Ide = {
  CAP: 0x04,
  CTL: 0x08,
  LINK_STREAM_0: 0x0c,
  LINK_BLOCK_SIZE: 8,
  CAP_VERSION: 1,
  /** At most 8 traffic classes have Link IDE streams and 256 selective streams; 15 address blocks each. */
  MAX_LINK_STREAMS: 8,
  MAX_SELECTIVE_STREAMS: 256,
  MAX_ADDRESS_BLOCKS: 15,
} as const;
export const IdeCap = {
  LINK: 0x0000_0001,
  SELECTIVE: 0x0000_0002,
  FLOWTHROUGH: 0x0000_0004,
  PARTIAL_HEADER_ENC: 0x0000_0008,
  AGGREGATION: 0x0000_0010,
  PCRC: 0x0000_0020,
  IDE_KM: 0x0000_0040,
  SEL_CFG: 0x0000_0080,
  /** Supported algorithms; 0 is AES-GCM-256 with a 96-bit MAC, the only one defined. */
  ALG: 0x0000_1f00,
  /** Link IDE traffic classes, minus one. */
  LINK_TC_NUM: 0x0000_e000,
  /** Selective IDE streams, minus one. */
  SEL_NUM: 0x00ff_0000,
  /** TEE-Limited Stream Supported (r6.1). */
  TEE_LIMITED: 0x0100_0000,
} as const;
/** Link and Selective IDE Stream Control share these fields; DEFAULT and TEE_LIMITED are selective only. */
export const IdeStreamCtl = {
  ENABLE: 0x0000_0001,
  ALG: 0x0007_c000,
  TC: 0x0038_0000,
  DEFAULT: 0x0040_0000,
  TEE_LIMITED: 0x0080_0000,
  ID: 0xff00_0000,
} as const;
/** Link and Selective IDE Stream Status. */
export const IdeStreamSts = { STATE: 0x0000_000f, IDE_FAIL: 0x8000_0000 } as const;
export const IdeStreamState = { INSECURE: 0, SECURE: 2 } as const;
/** Offsets in a Link IDE register block. */
export const IdeLink = { CTL: 0x00, STS: 0x04 } as const;
/** Offsets in a Selective IDE stream register block; address association block n is at ADDR_0 + 12n. */
export const IdeSel = {
  CAP: 0x00,
  CTL: 0x04,
  STS: 0x08,
  RID_1: 0x0c,
  RID_2: 0x10,
  ADDR_0: 0x14,
  ADDR_BLOCK_SIZE: 12,
} as const;
/** Selective IDE Stream Capability: the number of address association register blocks. */
export const IDE_SEL_CAP_ASSOC_NUM = 0x0000_000f;
export const IdeRid1 = { LIMIT: 0x00ff_ff00 } as const;
export const IdeRid2 = { VALID: 0x0000_0001, BASE: 0x00ff_ff00, SEG: 0xff00_0000 } as const;
/** IDE Address Association Register 1; registers 2 and 3 are the limit's and the base's upper 32 bits. */
export const IdeAddr1 = { VALID: 0x0000_0001, BASE_LOW: 0x000f_ff00, LIMIT_LOW: 0xfff0_0000 } as const;

/** Bytes of a Selective IDE stream register block with `addressBlocks` address association blocks. */
export const ideSelectiveBlockBytes = (addressBlocks: number): number =>
  IdeSel.ADDR_0 + IdeSel.ADDR_BLOCK_SIZE * addressBlocks;

/** Bytes of an IDE extended capability with the given register blocks. */
export const ideCapabilityBytes = (linkStreams: number, selectiveStreams: number, addressBlocks: number) =>
  Ide.LINK_STREAM_0 +
  Ide.LINK_BLOCK_SIZE * linkStreams +
  selectiveStreams * ideSelectiveBlockBytes(addressBlocks);

/** Routing ID: bus[15:8], device[7:3], function[2:0]. */
export const routingId = (bus: number, device: number, fn: number): number =>
  ((bus & 0xff) << 8) | ((device & 0x1f) << 3) | (fn & 0x7);

/**
 * Routing ID of VF `vf` (0-based) of the PF at `pfRid`, as Linux pci_iov_virtfn_bus/devfn compute
 * it; it may spill onto following bus numbers, and past 0xffff it names no function.
 */
export const vfRoutingId = (pfRid: number, firstVfOffset: number, vfStride: number, vf: number): number =>
  pfRid + firstVfOffset + vfStride * vf;

/** The SR-IOV registers that place a PF's VFs. */
export interface SriovPlacement {
  /** VF Enable in SR-IOV Control. */
  enabled: boolean;
  numVfs: number;
  firstVfOffset: number;
  vfStride: number;
}

/** Which VF of the PF at `pfRid` answers at `rid`, or undefined when none of its enabled VFs does. */
export function vfIndexAt(rid: number, pfRid: number, s: SriovPlacement): number | undefined {
  if (!s.enabled || s.numVfs === 0) return undefined;
  const delta = rid - (pfRid + s.firstVfOffset);
  if (delta < 0) return undefined;
  const vf = s.vfStride === 0 ? (delta === 0 ? 0 : -1) : delta / s.vfStride;
  return Number.isInteger(vf) && vf >= 0 && vf < s.numVfs ? vf : undefined;
}

/** "bb:dd.f", as lspci prints it. */
export const formatRoutingId = (rid: number): string =>
  `${hexDigits(rid >> 8, 2)}:${hexDigits((rid >> 3) & 0x1f, 2)}.${rid & 0x7}`;

/** The inverse of formatRoutingId ("bb:dd.f", hex bus and device); undefined for anything else. */
export function parseRoutingId(text: string): number | undefined {
  const m = /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/.exec(text);
  if (!m) return undefined;
  const device = Number.parseInt(m[2]!, 16);
  return device > 0x1f ? undefined : routingId(Number.parseInt(m[1]!, 16), device, Number(m[3]));
}

export type ConfigWidth = 1 | 2 | 4;

/** All ones of `width` bytes: what a read of an absent function returns. */
export const allOnes = (width: ConfigWidth): number => (width === 4 ? 0xffff_ffff : (1 << (width * 8)) - 1);
