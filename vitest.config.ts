import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "wire/**/*.test.ts",
      "spec/**/*.test.ts",
      "impl/**/*.test.ts",
      "properties/**/*.test.ts",
      "sim/**/*.test.ts",
      "conformance/**/*.test.ts",
      "scripts/**/*.test.ts",
      "bench/**/*.test.ts",
    ],
    testTimeout: 180_000,
    hookTimeout: 60_000,
    pool: "forks",
  },
});
