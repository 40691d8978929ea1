/** The wire vocabulary in one import: see wire/README.md. */
export * from "./split.ts";
export * from "./packed.ts";
export * from "./features.ts";
export * from "./net.ts";
export * from "./vsock.ts";
