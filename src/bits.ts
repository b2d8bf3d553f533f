/**
 * Bit-field vocabulary shared by the protocol engines, so that each word means one thing:
 * `maskOf` turns a list of bits into a mask, `bitIndices` a mask into the indices of its set bits.
 */
import { hexDigits } from "../protocol/hex.js";

/** The OR of `bits` (e.g. a list of one-hot algorithm bits, or `1 << slot` values). */
export const maskOf = (bits: Iterable<number>): number => {
  let m = 0;
  for (const b of bits) m |= b;
  return m;
};

/** Indices of the set bits of `mask` below `width` (e.g. slot numbers in a slot mask). */
export const bitIndices = (mask: number, width = 8): number[] =>
  [...Array(width).keys()].filter((i) => (mask >>> i) & 1);

/** The lowest set bit of a 32-bit `mask`, as an unsigned number (2^31 for bit 31). */
export const lowestBit = (mask: number): number => (mask & -mask) >>> 0;

/** The value of the field `mask` selects in 32-bit `flags`, shifted down (e.g. PSK_CAP's two bits). */
export const fieldOf = (flags: number, mask: number): number => ((flags & mask) >>> 0) / lowestBit(mask);

/** The inverse of fieldOf: `value` shifted into the field `mask` selects. */
export const toField = (value: number, mask: number): number => value * lowestBit(mask);

/** True for 0 and for a value with exactly one bit set (an algorithm selection must be one). */
export const isOneHotOrZero = (x: number): boolean => (x & (x - 1)) === 0;

/** The key of the entry of `table` (a suites.ts algorithm table) whose `bit` is `bit`; none for 0. */
export const byBit = <T extends Record<string, { bit: number }>>(table: T, bit: number) =>
  (Object.keys(table) as (keyof T & string)[]).find((k) => bit !== 0 && table[k]!.bit === bit);

/** `0x1f` — a flag word or code as logs and errors show it. */
export const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** `0xfffeffff` — a 32-bit value (session IDs) as logs show it, always 8 digits. */
export const hex32 = (n: number): string => `0x${hexDigits(n, 8)}`;
