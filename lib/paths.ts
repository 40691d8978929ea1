/** Where things are in the repository: its root and the folders runs write reports to. */
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

/** The repository root and the folder where runs leave raw results for the reports. */
export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const reportsDir = join(root, "reports");
export const resultsDir = join(reportsDir, ".results");
