/**
 * Loaded into every test file of a mutation run (scripts/mutate.ts): a property that fails
 * stops at its first counterexample instead of shrinking it. The mutant is killed either
 * way; shrinking only costs time, and on a loaded machine it can outlast Stryker's timeout,
 * which would count a plain failure as a hang.
 */
import fc from "fast-check";

fc.configureGlobal({ ...fc.readConfigureGlobal(), endOnFailure: true });
