/**
 * The byte pattern the real-guest transfers carry (the same formula as vlab-xfer.c): byte i
 * of a stream is (i * 131 + (i >> 9)) & 0xff. It does not repeat every 256 bytes, so a
 * block dropped, doubled or moved shows at its offset.
 */
export const patternAt = (i: number): number => (Math.imul(i, 131) + Math.floor(i / 512)) & 0xff;

/** Fills `buf` with the pattern from stream offset `offset`. */
export const fillPattern = (buf: Uint8Array, offset: number): void => {
  for (let k = 0; k < buf.length; k++) buf[k] = patternAt(offset + k);
};

/** The stream offset of the first byte of `buf` (at `offset`) that is not the pattern, or -1. */
export const checkPattern = (buf: Uint8Array, offset: number): number => {
  for (let k = 0; k < buf.length; k++) if (buf[k] !== patternAt(offset + k)) return offset + k;
  return -1;
};
