// Bundles the compiled CLI into one file: a device process then loads one module instead of a few
// hundred, which is most of its start-up time (launching 64 devices is start-up bound).
// Native and heavy modules that are loaded on first use stay outside the bundle.
import { build } from "esbuild";

await build({
  entryPoints: ["dist/src/cli/main.js"],
  outfile: "dist/doe-emu.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  minify: true,
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
  external: ["koffi", "@peculiar/x509", "reflect-metadata", "pino-pretty"],
  // Bundled CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __doeEmuRequire } from 'node:module'; const require = __doeEmuRequire(import.meta.url);",
  },
});
