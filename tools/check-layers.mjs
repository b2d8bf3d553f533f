// Fails when a module imports from a layer above its own. The layers, lowest first, are the
// ```layers block of docs/ARCHITECTURE.md: one layer per line, each a list of folders or files.
// Every file under protocol/ and src/ must belong to a layer; test/ and tools/ may import anything.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const doc = readFileSync(join(root, "docs", "ARCHITECTURE.md"), "utf8");
const block = /```layers\n([\s\S]*?)```/.exec(doc);
if (!block) {
  console.error("check-layers: docs/ARCHITECTURE.md has no ```layers block");
  process.exit(1);
}
const layers = block[1]
  .split("\n")
  .map((line) => line.trim().split(/\s+/).filter(Boolean))
  .filter((entries) => entries.length > 0);

function layerOf(file) {
  const i = layers.findIndex((entries) => entries.some((e) => file === e || file.startsWith(`${e}/`)));
  return i < 0 ? undefined : i;
}

function sources(dir) {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = `${dir}/${name}`;
    if (statSync(join(root, path)).isDirectory()) return sources(path);
    return /\.ts$/.test(name) && !name.endsWith(".d.ts") ? [path] : [];
  });
}

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']/g;
const problems = [];
for (const file of [...sources("protocol"), ...sources("src")]) {
  const own = layerOf(file);
  if (own === undefined) {
    problems.push(`${file} belongs to no layer in docs/ARCHITECTURE.md`);
    continue;
  }
  for (const [, spec] of readFileSync(join(root, file), "utf8").matchAll(SPECIFIER)) {
    const target = relative(root, resolve(root, dirname(file), spec)).replace(/\.js$/, ".ts");
    const theirs = layerOf(target);
    if (theirs !== undefined && theirs > own)
      problems.push(
        `${file} imports ${target}: layer "${layers[theirs].join(" ")}" is above "${layers[own].join(" ")}"`,
      );
  }
}
if (problems.length > 0) {
  console.error(`check-layers: ${problems.length} import(s) against the layer order of docs/ARCHITECTURE.md`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}
console.log(`check-layers: ${layers.length} layers, no upward import`);
