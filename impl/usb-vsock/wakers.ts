/**
 * Parking fibers on a set of wakers: the one waiting primitive the filler, the endpoint and
 * the simulated link share. A fiber parks until some state it waits on changes; whoever
 * changes that state wakes the whole set, and each woken fiber re-checks its condition.
 */
import { Effect } from "effect";

export type Waker = () => void;

/** Parks the calling fiber on `list` until woken (or interrupted, which unregisters it). */
export const park = (list: Set<Waker>): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const w: Waker = () => {
      list.delete(w);
      resume(Effect.void);
    };
    list.add(w);
    return Effect.sync(() => {
      list.delete(w);
    });
  });

/** Wakes every fiber parked on `list`. */
export const wakeAll = (list: Set<Waker>): void => {
  if (list.size === 0) return;
  // Copy first: a woken waker removes itself from the set.
  for (const w of [...list]) w();
};
