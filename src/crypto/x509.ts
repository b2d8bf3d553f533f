/**
 * @peculiar/x509, loaded on first use: importing it (and the reflect-metadata polyfill its
 * dependency tsyringe needs) costs a few hundred ms, which every device process would otherwise
 * pay at start-up even when it never builds or inspects a certificate extension.
 */
import { webcrypto } from "node:crypto";
import type * as X509Lib from "@peculiar/x509";
import { once } from "../once.js";

export type X509 = typeof X509Lib;

export const loadX509: () => Promise<X509> = once(async () => {
  await import("reflect-metadata");
  const lib = (await import("@peculiar/x509")) as X509;
  lib.cryptoProvider.set(webcrypto as unknown as Parameters<X509["cryptoProvider"]["set"]>[0]);
  return lib;
});
