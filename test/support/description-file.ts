/** Device descriptions as files, for `doe-emu device --config`. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Writes `description` as JSON to `name` in a new temporary folder and returns its path. */
export function descriptionFile(description: unknown, name = "device.json"): string {
  const file = join(mkdtempSync(join(tmpdir(), "doe-emu-")), name);
  writeFileSync(file, JSON.stringify(description));
  return file;
}
