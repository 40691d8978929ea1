/** Entry point of the reference adapter: `npx tsx conformance/adapter-main.ts [--mutant <id>]`. */
import { runAdapter } from "./adapter.ts";

runAdapter(process.argv.slice(2));
