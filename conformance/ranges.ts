/** Guest ranges as vm-memory walks them, shared by the memory cases and the reference adapter. */

/**
 * The pieces of [addr, addr+len), one per region, when regions that touch cover all of it
 * (vm-memory Bytes::read/write walk get_slices across touching regions); undefined when some
 * byte is outside memory. A zero-length access is no piece at all, wherever it points.
 */
export const regionPieces = (
  regions: readonly { readonly base: bigint; readonly end: bigint }[],
  addr: bigint,
  len: bigint,
): { addr: bigint; len: bigint }[] | undefined => {
  const out: { addr: bigint; len: bigint }[] = [];
  let at = addr;
  const end = addr + len;
  while (at < end) {
    const r = regions.find((x) => x.base <= at && at < x.end);
    if (r === undefined) return undefined;
    const n = (r.end < end ? r.end : end) - at;
    out.push({ addr: at, len: n });
    at += n;
  }
  return out;
};
