/**
 * Memory BARs (PCIe r6.0 §7.5.1.2.1), in a type-0 header or in the SR-IOV capability's VF BAR
 * array, which behave the same (§9.3.3.14). A BAR's writable bits are its address bits at and above
 * its size; its type bits are read-only. So a host sizes a BAR by writing all ones and reading back
 * the size mask with the type bits, then writes an address and reads it back.
 */
import { Bar, barAddressMasks } from "../../protocol/pci.js";
import type { ConfigChange, ConfigSpace } from "./config-space.js";
import type { BarDescription } from "./description.js";

/** A BAR as the host programmed it. */
export interface BarState extends BarDescription {
  /** Bytes decoded: the described size, or more for a VF BAR under a larger system page. */
  size: number;
  /** The address written (0 before the host assigns one); 64 bits, hence a bigint. */
  address: bigint;
}

const DW = 4;

/** The BAR registers of `bars` in the array of six DWs at `base`. */
export class BarArray {
  constructor(
    private readonly space: ConfigSpace,
    private readonly base: number,
    readonly bars: readonly BarDescription[],
  ) {}

  /**
   * Defines the registers to decode `size(bar)` bytes each. The address bits already written and
   * still writable are kept, so an array can be resized in place.
   */
  define(size: (bar: BarDescription) => number): void {
    for (const bar of this.bars) {
      const at = this.at(bar.index);
      const { low, high } = barAddressMasks(size(bar));
      const flags = (bar.type === "mem64" ? Bar.MEM_TYPE_64 : 0) | (bar.prefetchable ? Bar.PREFETCH : 0);
      this.space.define(at, DW, (flags | (this.space.read(at, DW) & low)) >>> 0, { rw: low });
      if (bar.type === "mem64")
        this.space.define(at + DW, DW, (this.space.read(at + DW, DW) & high) >>> 0, { rw: high });
    }
  }

  /** The BARs with the addresses written to them, each decoding `size(bar)` bytes. */
  read(size: (bar: BarDescription) => number): BarState[] {
    return this.bars.map((bar) => {
      const at = this.at(bar.index);
      const low = BigInt((this.space.read(at, DW) & ~Bar.FLAG_BITS) >>> 0);
      const high = bar.type === "mem64" ? BigInt(this.space.read(at + DW, DW)) : 0n;
      return { ...bar, size: size(bar), address: (high << 32n) | low };
    });
  }

  /** Reports a write that changes either DW of a BAR as `change(index)`. */
  watch(change: (index: number) => ConfigChange): void {
    for (const bar of this.bars) {
      const at = this.at(bar.index);
      for (const dw of bar.type === "mem64" ? [at, at + DW] : [at])
        this.space.watch(dw, DW, 0xffff_ffff, () => this.space.notify(change(bar.index)));
    }
  }

  private at(index: number): number {
    return this.base + DW * index;
  }
}
