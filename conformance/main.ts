/** `npx tsx conformance/main.ts conform|vectors ...`: the CLI without the simulator. */
import { conformMain, vectorsMain } from "./cli.ts";

const [cmd, ...rest] = process.argv.slice(2);
const run = cmd === "conform" ? conformMain : cmd === "vectors" ? vectorsMain : undefined;
if (run === undefined) {
  console.error("usage: tsx conformance/main.ts conform|vectors [--help]");
  process.exitCode = cmd === undefined || cmd === "--help" || cmd === "-h" ? 0 : 2;
} else {
  process.exitCode = await run(rest);
}
