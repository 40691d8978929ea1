/** Entry point: `npx tsx sim <command>` (see sim/cli.ts). */
import { main } from "./cli.ts";

const code = await main(process.argv.slice(2));
// Exit explicitly: a scenario's sockets are closed by then, but a stray handle elsewhere
// must not keep the gate waiting.
process.exit(code);
