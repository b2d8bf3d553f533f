/** `n` as unsigned hex, zero-padded to `digits` (no prefix): the one formatter for IDs, registers and bytes. */
export const hexDigits = (n: number, digits: number): string => (n >>> 0).toString(16).padStart(digits, "0");
