/**
 * The host's MMIO space: a 32-bit window for 32-bit BARs and a 64-bit window for 64-bit ones, given
 * out first-fit with natural alignment (a BAR decodes an address range aligned to its size, PCIe
 * r6.0 §7.5.1.2.1). Regions belong to an owner and are released all together when it goes, so a
 * device that is removed and added again finds its space again.
 */
export type MmioKind = "mem32" | "mem64";

export interface MmioWindow {
  base: bigint;
  size: bigint;
}

export type MmioWindows = Record<MmioKind, MmioWindow>;

/** 256 MiB below 4 GiB, where x86 firmware puts 32-bit MMIO; 64 GiB at 256 GiB for 64-bit BARs. */
export const DEFAULT_MMIO_WINDOWS: MmioWindows = {
  mem32: { base: 0xe000_0000n, size: 0x1000_0000n },
  mem64: { base: 0x40_0000_0000n, size: 0x10_0000_0000n },
};

interface Region {
  base: bigint;
  size: bigint;
  owner: unknown;
}

const alignUp = (x: bigint, align: bigint) => ((x + align - 1n) / align) * align;

export class MmioAllocator {
  /** Regions given out, per window, in address order. */
  private readonly used: Record<MmioKind, Region[]> = { mem32: [], mem64: [] };

  constructor(readonly windows: MmioWindows = DEFAULT_MMIO_WINDOWS) {}

  /**
   * The lowest address in the window, aligned to `align` (a power of two; a BAR's own size by
   * default, a VF BAR region's per-VF size), where `size` bytes are free; undefined when none is.
   */
  allocate(owner: unknown, kind: MmioKind, size: bigint, align: bigint = size): bigint | undefined {
    if (size <= 0n || align <= 0n || (align & (align - 1n)) !== 0n)
      throw new RangeError(`cannot allocate ${size} bytes aligned to ${align}`);
    const { base, size: windowSize } = this.windows[kind];
    const used = this.used[kind];
    let at = alignUp(base, align);
    let i = 0;
    for (; i < used.length; i++) {
      const r = used[i]!;
      if (at + size <= r.base) break;
      if (r.base + r.size > at) at = alignUp(r.base + r.size, align);
    }
    if (at + size > base + windowSize) return undefined;
    used.splice(i, 0, { base: at, size, owner });
    return at;
  }

  /** Releases every region of `owner`. */
  release(owner: unknown): void {
    for (const kind of ["mem32", "mem64"] as const)
      this.used[kind] = this.used[kind].filter((r) => r.owner !== owner);
  }

  /** Bytes given out in each window. */
  inUse(): Record<MmioKind, bigint> {
    const sum = (rs: Region[]) => rs.reduce((n, r) => n + r.size, 0n);
    return { mem32: sum(this.used.mem32), mem64: sum(this.used.mem64) };
  }
}
