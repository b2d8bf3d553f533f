/**
 * Integration tests spawn the bundled CLI (dist/doe-emu.mjs) and the fuzzer (dist/tools). Rebuild
 * them before a run, and before each watch-mode re-run, whenever a source is newer than the bundle,
 * so a test never exercises stale code (`npm test` builds first, so there this is a quick mtime walk).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BUNDLE = join(ROOT, "dist", "doe-emu.mjs");
const SOURCES = [
  "protocol",
  "src",
  // The bundle's and the tools' (bench, fuzz) sources: `npm run build` compiles both.
  "tools",
  "package.json",
  "tsconfig.json",
  "tsconfig.build.json",
];

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return readdirSync(path).reduce((m, e) => Math.max(m, newestMtime(join(path, e))), st.mtimeMs);
}

function bundleMtime(): number {
  try {
    return statSync(BUNDLE).mtimeMs;
  } catch {
    return -1;
  }
}

function rebuildIfStale(): void {
  const newest = Math.max(...SOURCES.map((s) => newestMtime(join(ROOT, s))));
  if (newest <= bundleMtime()) return;
  console.log("doe-emu: sources are newer than dist/doe-emu.mjs, rebuilding");
  execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "inherit" });
}

export default function setup(project: TestProject): void {
  rebuildIfStale();
  project.onTestsRerun(() => rebuildIfStale());
}
