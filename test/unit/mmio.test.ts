import { describe, expect, it } from "vitest";
import { DEFAULT_MMIO_WINDOWS, MmioAllocator } from "../../src/host/mmio.js";

const windows = {
  mem32: { base: 0xe000_0000n, size: 0x10_0000n },
  mem64: { base: 0x40_0000_0000n, size: 0x4000_0000n },
};

describe("MMIO allocator", () => {
  it("defaults to a 256 MiB 32-bit window at 0xe0000000 and a 64 GiB 64-bit window at 256 GiB", () => {
    expect(DEFAULT_MMIO_WINDOWS).toEqual({
      mem32: { base: 0xe000_0000n, size: 0x1000_0000n },
      mem64: { base: 0x40_0000_0000n, size: 0x10_0000_0000n },
    });
  });

  it("aligns each region to its size, first fit, in the window of its kind", () => {
    const mmio = new MmioAllocator(windows);
    expect(mmio.allocate("a", "mem32", 0x1000n)).toBe(0xe000_0000n);
    expect(mmio.allocate("a", "mem32", 0x10_000n)).toBe(0xe001_0000n);
    // The hole left by alignment is used by a smaller region.
    expect(mmio.allocate("a", "mem32", 0x2000n)).toBe(0xe000_2000n);
    expect(mmio.allocate("a", "mem64", 0x20_0000n)).toBe(0x40_0000_0000n);
    expect(mmio.allocate("a", "mem64", 0x4000n)).toBe(0x40_0020_0000n);
    expect(mmio.inUse()).toEqual({ mem32: 0x13000n, mem64: 0x20_4000n });
  });

  it("refuses what does not fit, and alignments that are not powers of two", () => {
    const mmio = new MmioAllocator(windows);
    expect(mmio.allocate("a", "mem32", 0x20_0000n)).toBeUndefined();
    expect(mmio.allocate("a", "mem32", 0x8_0000n)).toBe(0xe000_0000n);
    expect(mmio.allocate("a", "mem32", 0x8_0000n)).toBe(0xe008_0000n);
    expect(mmio.allocate("a", "mem32", 0x10n)).toBeUndefined();
    expect(mmio.allocate("a", "mem64", 0x4000_0000n)).toBe(0x40_0000_0000n);
    expect(() => mmio.allocate("a", "mem64", 0x3000n)).toThrow(RangeError);
  });

  it("aligns a VF BAR region (TotalVFs × the VF BAR size) to the VF BAR size", () => {
    const mmio = new MmioAllocator(windows);
    expect(mmio.allocate("a", "mem32", 0x1000n)).toBe(0xe000_0000n);
    // 3 VFs × 16 KiB: aligned to 16 KiB, not to the 48 KiB total.
    expect(mmio.allocate("a", "mem32", 3n * 0x4000n, 0x4000n)).toBe(0xe000_4000n);
    expect(mmio.allocate("a", "mem32", 0x4000n)).toBe(0xe001_0000n);
  });

  it("releases all of an owner's regions, so the space is given out again", () => {
    const mmio = new MmioAllocator(windows);
    mmio.allocate("a", "mem32", 0x1000n);
    expect(mmio.allocate("b", "mem32", 0x1000n)).toBe(0xe000_1000n);
    mmio.allocate("b", "mem64", 0x1000n);
    mmio.release("a");
    expect(mmio.allocate("c", "mem32", 0x1000n)).toBe(0xe000_0000n);
    mmio.release("b");
    mmio.release("c");
    expect(mmio.inUse()).toEqual({ mem32: 0n, mem64: 0n });
    for (let i = 0; i < 1000; i++) {
      expect(mmio.allocate(i, "mem32", 0x8_0000n)).toBe(0xe000_0000n);
      mmio.release(i);
    }
  });
});
