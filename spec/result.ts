/**
 * Results and rules shared by every subject of the reference model.
 *
 * Errors are plain values `{ _tag: "RuleName", ...fields }`; the tag is the name of the rule
 * the input broke, the same name impl/ uses, so results can be compared field by field.
 */

export type Ok<T> = { readonly ok: true; readonly value: T };
export type Err<E> = { readonly ok: false; readonly error: E };
export type Result<T, E> = Ok<T> | Err<E>;

export const ok = <T>(value: T): Ok<T> => ({ ok: true, value });
export const err = <E>(error: E): Err<E> => ({ ok: false, error });

/** A rule of the specification: what reports and properties cite. */
export interface Rule {
  /** Stable id, e.g. `VQ-POP-LEN`. */
  readonly id: string;
  /** Where the rule comes from: a VIRTIO section or a reference VMM source. */
  readonly source: string;
  /** What the rule says, in one sentence. */
  readonly text: string;
}

export const rule = (id: string, source: string, text: string): Rule => ({ id, source, text });
