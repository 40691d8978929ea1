/**
 * Every scenario, loaded, in the order `sim list` shows them (registry.ts is the list; the
 * `sim` command loads from it one scenario at a time).
 */
import type { Scenario } from "../engine.ts";
import { loadScenarios } from "./registry.ts";

export const scenarios: readonly Scenario[] = await loadScenarios();

export const findScenario = (name: string): Scenario | undefined => scenarios.find((s) => s.name === name);
