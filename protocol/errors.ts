/**
 * The one error every decoder throws. `field` names what was wrong, `offset` is the byte offset
 * (within the buffer handed to the decoder) where it sits, `reason` says why in words.
 */
export class DecodeError extends Error {
  override readonly name = "DecodeError";
  constructor(
    readonly field: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${field} at byte ${offset}: ${reason}`);
  }
}

/** Throws DecodeError unless `buf` holds at least `need` bytes from `offset`. */
export function requireBytes(buf: Uint8Array, offset: number, need: number, field: string): void {
  if (buf.length - offset < need) {
    throw new DecodeError(field, offset, `needs ${need} bytes, ${Math.max(0, buf.length - offset)} left`);
  }
}
