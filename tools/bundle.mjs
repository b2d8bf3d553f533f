// Bundles the compiled CLI into one file: a device process then loads one module instead of a few
// hundred, which is most of its start-up time (launching 64 devices is start-up bound).
// Native and heavy modules that are loaded on first use stay outside the bundle.
// Then the device's and the host's V8 startup snapshots (src/cli/snapshot.ts): what spawnCli starts them from.
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { build } from "esbuild";

// yargs' string-width makes an Intl.Segmenter as it loads, a native handle a startup snapshot cannot
// hold: make it on first use instead (only rendering --help measures display widths). Loud if a
// string-width upgrade moves the line.
const lazySegmenter = {
  name: "lazy-segmenter",
  setup(b) {
    b.onLoad({ filter: /[\\/]string-width[\\/]index\.js$/ }, (args) => {
      const eager = "const segmenter = new Intl.Segmenter();";
      const source = readFileSync(args.path, "utf8");
      if (!source.includes("Intl.Segmenter")) return undefined;
      if (!source.includes(eager)) throw new Error(`${args.path}: no "${eager}" to make lazy`);
      const lazy =
        "let made; const segmenter = { segment: (s) => (made ??= new Intl.Segmenter()).segment(s) };";
      return { contents: source.replace(eager, lazy), loader: "js" };
    });
  },
};

const common = {
  plugins: [lazySegmenter],
  bundle: true,
  platform: "node",
  target: "node20",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
  external: ["koffi", "@peculiar/x509", "reflect-metadata", "pino-pretty"],
};

await build({
  ...common,
  entryPoints: ["dist/src/cli/main.js"],
  outfile: "dist/doe-emu.mjs",
  format: "esm",
  sourcemap: true,
  // Bundled CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __doeEmuRequire } from 'node:module'; const require = __doeEmuRequire(import.meta.url);",
  },
});

// node --build-snapshot runs a CommonJS script; import.meta.url (createRequire for modules loaded on
// first use) becomes the script's own URL. A snapshot loads only into the node binary that built it,
// under the V8 flags it was built with: NAME.blob.json names both (src/fixture/spawn-device.ts). Node
// warns that node:module and worker_threads (pino) are unverified in snapshots; the tests run devices
// and hosts from them.
// A device is small and mostly idle, and dozens run at once: measured on an idle device after a scan,
// feedback vectors allocated at a function's first call instead of lazily take 0.57 MiB less RSS, one
// V8 worker thread instead of four and a young generation capped at 1 MiB another 0.25, with no
// change in its CPU to start, be scanned or serve. The host, one process scanning them all, keeps V8's
// defaults.
const v8Flags = {
  device: ["--no-lazy-feedback-allocation", "--v8-pool-size=1", "--max-semi-space-size=1"],
  host: [],
};
for (const name of ["device", "host"]) {
  const entry = `dist/${name}-snapshot.cjs`;
  await build({
    ...common,
    entryPoints: [`dist/src/cli/${name}-snapshot.js`],
    outfile: entry,
    format: "cjs",
    // A script started from a snapshot has no ESM loader: import() of an external module becomes require().
    supported: { "dynamic-import": false },
    define: { "import.meta.url": "__doeEmuUrl" },
    // The snapshot's own require() knows only built-in modules: the external ones (loaded on first use,
    // after start-up) come through an ordinary require, made when first needed.
    banner: {
      js: [
        "var __doeEmuUrl = require('node:url').pathToFileURL(__filename).href;",
        "var require = ((builtin) => { let full; return (id) => builtin('node:module').isBuiltin(id) ? builtin(id) : (full ??= builtin('node:module').createRequire(__filename))(id); })(require);",
      ].join("\n"),
    },
  });
  const blob = `dist/${name}.blob`;
  rmSync(`${blob}.json`, { force: true });
  const flags = v8Flags[name];
  execFileSync(
    process.execPath,
    [...flags, "--no-warnings", "--snapshot-blob", blob, "--build-snapshot", entry],
    {
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  writeFileSync(
    `${blob}.json`,
    `${JSON.stringify({ node: process.version, execPath: process.execPath, flags })}\n`,
  );
}
