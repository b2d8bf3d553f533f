/** Pure SPDM 1.0–1.4 message codecs: no I/O, no state, no crypto. */
export * from "./codec.js";
export * from "./codes.js";
export * from "./context.js";
export * from "./encap.js";
export * from "./measurements.js";
export type * from "./messages.js";
export * from "./provision.js";
