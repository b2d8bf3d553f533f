/**
 * `--keylog FILE`: one line per secure session as it is established, in establishment order,
 * `SPDM_SESSION <session id, 8 hex digits> DHE_SECRET <hex>` or `... PSK <hex>`: what
 * `spdm_dump --dhe_secret/--psk` and `doe-emu decode --keylog` need to decrypt a capture. Secrets go
 * to that file only, never to a log line. Appended synchronously, so a killed process loses none;
 * a failed append is logged once and ends key logging.
 */
import { appendFileSync } from "node:fs";
import { hexDigits } from "../../protocol/hex.js";
import type { Logger } from "../log.js";
import type { SessionSecretInput } from "./key-schedule.js";
import type { KeyLog } from "./session.js";

export function keyLogLine(sessionId: number, input: SessionSecretInput): string {
  const [kind, secret] = "psk" in input ? ["PSK", input.psk] : ["DHE_SECRET", input.dheSecret];
  return `SPDM_SESSION ${hexDigits(sessionId, 8)} ${kind} ${Buffer.from(secret).toString("hex")}`;
}

export function openKeyLog(file: string, log: Logger): KeyLog {
  log.warn(
    { keylog: file },
    "KEY LOG ON: every session's DHE secret or PSK is written to this file; anyone who reads it can decrypt the traffic",
  );
  let failed = false;
  return (sessionId, input) => {
    if (failed) return;
    try {
      appendFileSync(file, `${keyLogLine(sessionId, input)}\n`, { mode: 0o600 });
    } catch (e) {
      failed = true;
      log.error({ keylog: file, err: (e as Error).message }, "key log append failed; key logging stopped");
    }
  };
}

/** A session secret from a key log (with its session ID) or from `--psk` (without). */
export interface KeyEntry {
  sessionId?: number;
  input: SessionSecretInput;
}

/** The lines keyLogLine writes; blank lines and `#` comments are skipped, anything else is an error. */
export function parseKeyLog(text: string): KeyEntry[] {
  return text.split("\n").flatMap((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return [];
    const m = /^SPDM_SESSION ([0-9a-f]{8}) (DHE_SECRET|PSK) ((?:[0-9a-f]{2})+)$/i.exec(line);
    if (!m) throw new Error(`key log line ${i + 1} is not "SPDM_SESSION <8 hex> DHE_SECRET|PSK <hex>"`);
    const secret = Buffer.from(m[3]!, "hex");
    return [
      {
        sessionId: Number.parseInt(m[1]!, 16),
        input: m[2]!.toUpperCase() === "PSK" ? { psk: secret } : { dheSecret: secret },
      },
    ];
  });
}
