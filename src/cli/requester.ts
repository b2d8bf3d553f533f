/**
 * `doe-emu requester`: authenticate a DOE mailbox endpoint the way DMTF's spdm_requester_emu does
 * (VCA, GET_DIGESTS, GET_CERTIFICATE, CHALLENGE, GET_MEASUREMENTS), verifying every answer; with
 * `--session KEY_EX|PSK` then open a secure session and work inside it (src/requester/session.ts).
 * Flags carry spdm-emu's names and values (uppercase, comma-separated lists) where the meaning matches.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { Argv } from "yargs";
import { CxlIdeKmCaps } from "../../protocol/cxl-ide-km.js";
import { formatRoutingId, parseRoutingId } from "../../protocol/pci.js";
import {
  bitNames,
  RequesterCapability as Cap,
  DheNamedGroup,
  MeasurementSummaryHashType,
} from "../../protocol/spdm/codes.js";
import { InterfaceInfo, LockInterfaceFlag, MmioRangeAttribute } from "../../protocol/tdisp.js";
import { hex } from "../bits.js";
import {
  loadCertChainFile,
  loadChainAndKey,
  loadPrivateKeyFile,
  loadPublicKeyFile,
} from "../crypto/cert-files.js";
import { createLogger, type LogLevel } from "../log.js";
import { formatEndpoint } from "../net/framed.js";
import {
  APP_DEFAULTS,
  APP_PROTOCOLS,
  type AppOptions,
  type AppProtocol,
  type AppSummary,
} from "../requester/app.js";
import type { ConnectionSummary } from "../requester/connection.js";
import {
  type ExeMode,
  type RunRequesterOptions,
  runRequester,
  runSessionRequester,
} from "../requester/run.js";
import type { SessionSummary } from "../requester/session.js";
import {
  AEAD_NAMES,
  ASYM_NAMES,
  DHE_NAMES,
  DMTF_TEST_PSK,
  DMTF_TEST_PSK_HINT,
  HASH_NAMES,
  KEY_SCHEDULE_NAMES,
  MEASUREMENT_HASH_NAMES,
  MEASUREMENT_SPEC_NAMES,
  type Names,
  OTHER_PARAM_NAMES,
  REQUESTER_CAPABILITY_NAMES,
  VERSION_NAMES,
} from "../spdm/names.js";
import { PUBLIC_KEY_SLOT } from "../spdm/public-key.js";
import type { SessionRequestOptions } from "../spdm/requester-handshake.js";
import {
  CONNECTION_STEPS,
  type ConnectionStep,
  REQUESTER_DEFAULTS,
  type SpdmRequesterOptions,
} from "../spdm/requester-options.js";
import { PROVISION_STEPS, type ProvisionStep, type ProvisionSummary } from "../spdm/requester-provision.js";
import type { SessionKind } from "../spdm/session.js";
import {
  type CaptureArgs,
  captureOptions,
  keyLogOption,
  logOptions,
  run,
  startCapture,
  startKeyLog,
} from "./common.js";

/** Each list flag: its option key, the names it takes, what it sets, and its help. */
const LIST_FLAGS: readonly { flag: string; names: Names; key: keyof SpdmRequesterOptions; help: string }[] = [
  {
    flag: "ver",
    names: VERSION_NAMES,
    key: "versions",
    help: "SPDM versions offered; the highest common one is used",
  },
  {
    flag: "cap",
    names: REQUESTER_CAPABILITY_NAMES,
    key: "capabilities",
    help: "Requester capability flags (GET_CAPABILITIES)",
  },
  { flag: "hash", names: HASH_NAMES, key: "baseHashAlgo", help: "BaseHashAlgo offered" },
  {
    flag: "asym",
    names: ASYM_NAMES,
    key: "baseAsymAlgo",
    help: "BaseAsymAlgo offered (responder signing)",
  },
  {
    flag: "meas_spec",
    names: MEASUREMENT_SPEC_NAMES,
    key: "measurementSpecification",
    help: "MeasurementSpecification offered",
  },
  {
    flag: "meas_hash",
    names: MEASUREMENT_HASH_NAMES,
    key: "measurementHashAlgo",
    help: "MeasurementHashAlgo accepted (the responder picks one; anything else fails)",
  },
  { flag: "dhe", names: { NONE: 0, ...DHE_NAMES }, key: "dheNamedGroup", help: "DHE groups offered" },
  {
    flag: "aead",
    names: AEAD_NAMES,
    key: "aeadCipherSuite",
    help: "AEAD suites offered",
  },
  {
    flag: "req_asym",
    names: { NONE: 0, ...ASYM_NAMES },
    key: "reqBaseAsymAlg",
    help: "ReqBaseAsymAlg offered",
  },
  {
    flag: "key_schedule",
    names: KEY_SCHEDULE_NAMES,
    key: "keySchedule",
    help: "KeySchedule offered",
  },
  {
    flag: "other_param",
    names: OTHER_PARAM_NAMES,
    key: "otherParamsSupport",
    help: "OtherParamsSupport (1.2+)",
  },
];

/** Names of the bits set in `value`, for the --help defaults. */
const namesOf = (names: Names, value: number) =>
  Object.entries(names)
    .filter(([, v]) => v !== 0 && (value & v) === v)
    .map(([k]) => k)
    .join(",");

function parseList(flag: string, names: Names, text: string): number[] {
  return text.split(",").map((part) => {
    const v = names[part.trim()];
    if (v === undefined) throw new Error(`--${flag} ${part}: not one of ${Object.keys(names).join(", ")}`);
    return v;
  });
}

const SUMMARY_TYPES = {
  NO: MeasurementSummaryHashType.None,
  TCB: MeasurementSummaryHashType.Tcb,
  ALL: MeasurementSummaryHashType.All,
};

interface RequesterArgs extends CaptureArgs {
  trans: string;
  session?: SessionKind;
  psk?: string;
  psk_hint?: string;
  exe_conn?: string;
  "get-csr": boolean;
  "csr-out"?: string;
  "csr-tag"?: number;
  "set-cert"?: string[];
  handshake_in_clear: boolean;
  "multi-key"?: "NEG" | "ONLY";
  ip: string;
  port: number;
  "trust-root"?: string;
  "req-cert-chain"?: string;
  "req-key"?: string;
  "req-public-key": boolean;
  "rsp-public-key"?: string;
  "rsp-key-update": boolean;
  timeout: number;
  slot_id: number;
  meas_sum: keyof typeof SUMMARY_TYPES;
  meas_op: "ONE_BY_ONE" | "ALL";
  exe_mode: ExeMode;
  app?: string;
  tdi?: string;
  json: boolean;
  keylog?: string;
  "log-level": LogLevel;
  pretty: boolean;
  [flag: string]: unknown;
}

function readTrustRoot(file: string): Buffer {
  const data = readFileSync(file);
  try {
    return new X509Certificate(data).raw;
  } catch {
    throw new Error(`--trust-root ${file}: not a DER or PEM certificate`);
  }
}

/** ECDHE groups offered for KEY_EX when --dhe is not given: spdm-emu's default minus FFDHE, which we cannot compute. */
const SESSION_DHE = DheNamedGroup.SECP_384_R1 | DheNamedGroup.SECP_256_R1;

/** --psk / --psk_hint: hex (0x-prefixed, or only hex digits in pairs) or text in which \0 is a NUL byte. */
export function parseSecret(text: string): Buffer {
  if (/^(0x)?([0-9a-f]{2})+$/i.test(text)) return Buffer.from(text.replace(/^0x/i, ""), "hex");
  return Buffer.from(text.replaceAll("\\0", "\0"), "utf8");
}

function options(argv: RequesterArgs): RunRequesterOptions {
  if (argv.trans !== "PCI_DOE") throw new Error(`--trans ${argv.trans}: only PCI_DOE is supported`);
  const log = createLogger({ level: argv["log-level"], pretty: argv.pretty, name: "requester" });
  const opts: RunRequesterOptions = {
    capture: startCapture(argv, "requester", log),
    keyLog: startKeyLog(argv.keylog, log),
    slotId: argv.slot_id,
    measurementSummaryHashType: SUMMARY_TYPES[argv.meas_sum],
    measurementMode: argv.meas_op,
    timeoutMs: argv.timeout,
    exeMode: argv.exe_mode,
    trustRoot: argv["trust-root"] === undefined ? undefined : readTrustRoot(argv["trust-root"]),
  };
  const [reqChain, reqKey] = [argv["req-cert-chain"], argv["req-key"]];
  if (reqChain && argv["req-public-key"]) throw new Error("--req-public-key is instead of --req-cert-chain");
  if (reqChain && reqKey) {
    const identity = loadChainAndKey(reqChain, reqKey);
    Object.assign(opts, { requesterCertChain: identity.certsDer, requesterKey: identity.privateKey });
  } else if (reqKey || argv["req-public-key"]) {
    if (!reqKey || !argv["req-public-key"])
      throw new Error("--req-key needs --req-cert-chain or --req-public-key");
    Object.assign(opts, { requesterKey: loadPrivateKeyFile(reqKey), requesterPublicKey: true });
  }
  const rspPublicKey = argv["rsp-public-key"];
  if (rspPublicKey !== undefined) {
    if (argv.slot_id !== 0 && argv.slot_id !== PUBLIC_KEY_SLOT)
      throw new Error(`--rsp-public-key is slot 0xFF; --slot_id ${argv.slot_id} contradicts it`);
    Object.assign(opts, { responderPublicKey: loadPublicKeyFile(rspPublicKey), slotId: PUBLIC_KEY_SLOT });
  }
  for (const { flag, names, key } of LIST_FLAGS) {
    const text = argv[flag];
    if (typeof text !== "string") continue;
    const values = parseList(flag, names, text);
    Object.assign(opts, { [key]: key === "versions" ? values : values.reduce((a, b) => a | b, 0) });
  }
  const provision = new Set<ProvisionStep>();
  if (argv.exe_conn !== undefined) {
    const all = [...CONNECTION_STEPS, ...PROVISION_STEPS];
    const names = { VCA: "VCA", ...Object.fromEntries(all.map((s) => [s, s])) };
    const steps = argv.exe_conn.split(",").map((part) => {
      const step = names[part.trim() as keyof typeof names];
      if (!step) throw new Error(`--exe_conn ${part}: not one of ${Object.keys(names).join(", ")}`);
      return step;
    });
    opts.connectionSteps = CONNECTION_STEPS.filter((s: ConnectionStep) => steps.includes(s));
    for (const s of PROVISION_STEPS) if (steps.includes(s)) provision.add(s);
  }
  const tag = argv["csr-tag"];
  if (tag !== undefined) {
    if (!Number.isInteger(tag) || tag < 1 || tag > 7)
      throw new Error("--csr-tag takes a CSRTrackingTag, 1-7");
    opts.csrTrackingTag = tag;
  }
  if (argv["get-csr"] || argv["csr-out"] !== undefined || tag !== undefined) provision.add("GET_CSR");
  const setCert = argv["set-cert"];
  if (setCert !== undefined) {
    const [slot, file] = setCert;
    const n = Number(slot);
    if (setCert.length !== 2 || !Number.isInteger(n) || n < 0 || n > 7)
      throw new Error("--set-cert takes SLOT (0-7) and FILE");
    opts.setCertificate = { slot: n, certsDer: loadCertChainFile(file!) };
    provision.add("SET_CERT");
  }
  opts.provisionSteps = PROVISION_STEPS.filter((s) => provision.has(s));
  if (!argv.handshake_in_clear)
    opts.capabilities =
      (opts.capabilities ?? REQUESTER_DEFAULTS.capabilities) & ~Cap.HANDSHAKE_IN_THE_CLEAR_CAP;
  const multiKey = argv["multi-key"];
  if (multiKey)
    opts.capabilities =
      ((opts.capabilities ?? REQUESTER_DEFAULTS.capabilities) |
        (multiKey === "NEG" ? Cap.MULTI_KEY_CAP_NEG : Cap.MULTI_KEY_CAP_ONLY)) >>>
      0;
  if (argv.session === "KEY_EX" && argv.dhe === undefined) opts.dheNamedGroup = SESSION_DHE;
  return opts;
}

function sessionOptions(argv: RequesterArgs & { session: SessionKind }): SessionRequestOptions {
  return {
    kind: argv.session,
    psk: argv.psk === undefined ? DMTF_TEST_PSK : parseSecret(argv.psk),
    pskHint: argv.psk_hint === undefined ? DMTF_TEST_PSK_HINT : parseSecret(argv.psk_hint),
    responderKeyUpdate: argv["rsp-key-update"],
  };
}

/** --app IDE_KM,TDISP,CXL_IDE_KM,CXL_TSP (ALL = every one) and --tdi BB:DD.F. */
export function appOptions(app: string | undefined, tdi: string | undefined): AppOptions | undefined {
  if (app === undefined) {
    if (tdi !== undefined) throw new Error("--tdi needs --app TDISP");
    return undefined;
  }
  const protocols = new Set<AppProtocol>();
  for (const part of app.split(",").map((p) => p.trim())) {
    if (part === "ALL") for (const p of APP_PROTOCOLS) protocols.add(p);
    else if ((APP_PROTOCOLS as readonly string[]).includes(part)) protocols.add(part as AppProtocol);
    else throw new Error(`--app ${part}: not one of ${[...APP_PROTOCOLS, "ALL"].join(", ")}`);
  }
  const functionId = tdi === undefined ? undefined : parseRoutingId(tdi);
  if (tdi !== undefined && functionId === undefined)
    throw new Error(`--tdi ${tdi}: not a BB:DD.F routing ID`);
  // Keep DMTF's order: IDE-KM around TDISP, then CXL.
  return { protocols: APP_PROTOCOLS.filter((p) => protocols.has(p)), functionId };
}

const flagNames = (table: Record<string, number>, value: number) =>
  bitNames(table, value).join("|") || "none";

function formatApp(a: AppSummary): string[] {
  const lines: string[] = [];
  if (a.ideKm) {
    const k = a.ideKm;
    lines.push(
      `  IDE-KM port ${k.portIndex} (MaxPortIndex ${k.maxPortIndex}, IDE Capability ${hex(k.ideCapability)}): ${k.keys.length} keys programmed, started, stopped: ${k.keys.join(", ")}`,
    );
  }
  if (a.tdisp) {
    const t = a.tdisp;
    const r = t.report;
    lines.push(
      `  TDISP TDI FunctionID ${hex(t.functionId)} (${formatRoutingId(t.functionId & 0xffff)}): versions ${t.versions.map(hex).join(",")}, locked with ${flagNames(LockInterfaceFlag, t.lockFlags)}, states ${t.states.join(" > ")}`,
      `    interface report (${t.reportBytes} bytes in ${t.reportPortions} portions): info ${flagNames(InterfaceInfo, r.interfaceInfo)}, MSI-X Message Control ${hex(r.msixMessageControl)}, LNR ${hex(r.lnrControl)}, TPH ${hex(r.tphControl)}`,
      ...r.mmioRanges.map(
        (m) =>
          `    MMIO range ${m.rangeId}: 0x${(m.firstPage * 4096n).toString(16)}, ${m.numberOfPages} pages, ${flagNames(MmioRangeAttribute, m.rangeAttributes)}`,
      ),
      `    device-specific info: ${r.deviceSpecificInfo.length ? r.deviceSpecificInfo.toString("hex") : "none"}`,
    );
  }
  if (a.cxlIdeKm) {
    const c = a.cxlIdeKm;
    lines.push(
      `  CXL IDE-KM port ${c.portIndex} (MaxPortIndex ${c.maxPortIndex}, Caps ${hex(c.caps)}: version ${c.caps & CxlIdeKmCaps.VERSION_MASK} ${flagNames(CXL_CAPS, c.caps & ~CxlIdeKmCaps.VERSION_MASK)}; CXL IDE Capability ${hex(c.ideRegisters[0] ?? 0)}): ${c.getKey ? "GET_KEY, " : ""}${c.keys.length} keys programmed, started${c.stopped ? ", stopped" : ""}: ${c.keys.join(", ")}`,
    );
  }
  if (a.cxlTsp) {
    const t = a.cxlTsp;
    const c = t.capabilities;
    lines.push(
      `  CXL TSP ${t.role}: versions ${t.versions.map(hex).join(",")}, encryption ${hex(c.memoryEncryptionFeaturesSupported)} algorithms ${hex(c.memoryEncryptionAlgorithmsSupported)}, TE state ${hex(c.teStateChangeAndAccessControlFeaturesSupported)}, ${c.numberOfSecondarySessions} secondary sessions`,
    );
    if (t.states)
      lines.push(
        `    configured, report of ${t.reportBytes} bytes in ${t.reportPortions} portions, locked: CurrentTSPState ${t.states.join(" > ")}; TE state 1 then 0`,
        ...(t.secondarySessions ?? []).map(
          (s2) =>
            `    secondary PSK session ${s2.sessionId}: CurrentTSPState ${s2.states.join(", ")}; TE state 1 then 0; ended`,
        ),
      );
  }
  return lines;
}

/** The Caps bits worth naming (the version is in bits 3:0). */
const CXL_CAPS = {
  IV_GEN: CxlIdeKmCaps.IV_GEN,
  KEY_GEN: CxlIdeKmCaps.KEY_GEN,
  K_SET_STOP: CxlIdeKmCaps.K_SET_STOP,
};

function formatMeasurements(m: ConnectionSummary["measurements"], indent: string): string[] {
  if (m.mode === "NONE") return [`${indent}measurements: none (${m.reason})`];
  const how = m.signed ? "signature verified" : `UNSIGNED: ${m.unsignedReason}`;
  return [
    `${indent}measurements (${m.mode}, ${how}):`,
    ...m.blocks.map((b) => `${indent}  [${b.index}] ${b.type} ${b.form} ${b.value}`),
  ];
}

function formatProvisioning(p: ProvisionSummary): string[] {
  const lines: string[] = [];
  if (p.mel)
    lines.push(`  MEL: ${p.mel.entries} entries, ${p.mel.bytes} bytes in ${p.mel.portions} portions`);
  if (p.endpointInfo)
    lines.push(
      `  ENDPOINT_INFO: ${p.endpointInfo.bytes} bytes, ${p.endpointInfo.signed ? "signature verified" : "unsigned"}`,
    );
  const encap = p.endpointInfo?.encapsulated;
  if (encap)
    lines.push(
      `  ours, encapsulated (${encap.requests.join(", ")}): ${encap.signed ? "signed" : "unsigned"}`,
    );
  if (p.keyPair)
    lines.push(
      `  KEY_PAIR_INFO: key pair ${p.keyPair.id} of ${p.keyPair.total}, asym ${hex(p.keyPair.currentAsymAlgo)}, slots ${hex(p.keyPair.assocCertSlotMask)}`,
    );
  if (p.keyPairErased !== undefined)
    lines.push(`  SET_KEY_PAIR_INFO: key pair ${p.keyPairErased} dissociated and erased`);
  if (p.csr) lines.push(`  CSR: ${p.csr.length} bytes, its signature verified`);
  if (p.setCertificate)
    lines.push(
      `  SET_CERTIFICATE: ${p.setCertificate.certificates} certificates installed in slot ${p.setCertificate.slot}`,
    );
  const reset = p.resetRequired;
  if (reset?.step === "GET_CSR")
    lines.push(
      `  GET_CSR: ResetRequired, the device makes the CSR at its reset; then retrieve it with --get-csr${reset.tag ? ` --csr-tag ${reset.tag}` : ""}`,
    );
  if (reset?.step === "SET_CERT")
    lines.push("  SET_CERTIFICATE: ResetRequired, the chain takes effect at the device's reset");
  if (reset?.step === "SET_KEY_PAIR_INFO")
    lines.push("  SET_KEY_PAIR_INFO: ResetRequired, the change takes effect at the device's reset");
  for (const step of p.skipped) lines.push(`  ${step}: skipped (the responder does not offer it)`);
  return lines;
}

function formatSummary(s: ConnectionSummary, where: string): string {
  const c = s.certificateChain;
  const t = s.timingsMs;
  const lines = [
    `SPDM ${s.version} with ${where}: ${c || s.publicKeyDigest ? "authenticated" : "negotiated"}, ${s.exchanges} exchanges in ${t.total} ms`,
    `  algorithms: ${Object.entries(s.algorithms)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
    `  requester capabilities: ${s.requesterCapabilities.join(" ")}`,
    `  responder capabilities: ${s.responderCapabilities.join(" ")}`,
  ];
  if (c) {
    lines.push(
      `  slot ${s.slot} of ${s.provisionedSlots.join(",")}: ${c.certificates} certificates, ${c.bytes}-byte chain; root ${c.rootSubject}`,
      c.trustAnchor === undefined
        ? "  trust anchor: NOT CHECKED (no --trust-root): the chain is only consistent in itself, its root is not trusted"
        : `  trust anchor: verified against --trust-root (${c.trustAnchor})`,
      `  leaf: ${c.leafSubject}`,
      `  leaf digest (${s.algorithms["BaseHash"]}): ${c.leafDigest}`,
      ...s.otherSlots.map((o) => `  slot ${o.slot} chain verified too; leaf ${o.leafSubject}`),
    );
  } else if (s.publicKeyDigest !== undefined)
    lines.push(
      `  slot 0xFF: the provisioned public key, SPKI digest (${s.algorithms["BaseHash"]}) ${s.publicKeyDigest}`,
    );
  else lines.push("  certificates: not fetched (--exe_conn)");
  const ch = s.challenge;
  lines.push(
    ch
      ? `  CHALLENGE_AUTH: signature verified; measurement summary hash ${ch.measurementSummaryHashType}` +
          (ch.measurementSummaryHash === undefined ? "" : ` ${ch.measurementSummaryHash}`) +
          (ch.summaryHashChecked ? " (matches the measurements)" : "")
      : "  CHALLENGE: not done (--exe_conn)",
    ...formatMeasurements(s.measurements, "  "),
    ...formatProvisioning(s.provisioning),
    `  timings (ms): VCA ${t.vca}, certificates ${t.certificates}, challenge ${t.challenge}, measurements ${t.measurements}`,
  );
  return lines.join("\n");
}

function formatSession(s: SessionSummary): string {
  const h = s.measurementSummaryHash;
  return [
    `${s.kind} session ${s.sessionId}: ${s.steps.length} steps, ${s.securedRoundTrips} secured round trips in ${s.timingsMs.total} ms, ended`,
    `  negotiated: secured messages DSP0277 ${s.securedMessageVersion}, ${s.dhe ? `DHE ${s.dhe}, ` : ""}AEAD ${s.aead}, handshake ${s.handshake}` +
      (s.pskFinish === undefined
        ? ""
        : s.pskFinish
          ? ", PSK_FINISH (responder context)"
          : ", no PSK_FINISH (no responder context)"),
    `  heartbeat period: ${s.heartbeatPeriod ? `${s.heartbeatPeriod} s` : "none"}`,
    ...(s.mutualAuth
      ? [
          `  mutual authentication: FINISH signed with requester slot ${s.mutualAuth.slot} (${s.mutualAuth.reqAsym})`,
        ]
      : []),
    `  measurement summary hash ${h.type}${h.value ? ` ${h.value}` : ""}${h.checked ? " (matches the measurements read in the session)" : ""}`,
    `  in session: ${s.steps.join(", ")}`,
    ...s.skipped.map((k) => `  skipped: ${k}`),
    ...(s.app ? formatApp(s.app) : []),
    ...formatMeasurements(s.measurements, "  "),
    `  timings (ms): handshake ${s.timingsMs.handshake}, in session ${s.timingsMs.inSession}`,
  ].join("\n");
}

async function runRequesterCommand(argv: RequesterArgs): Promise<void> {
  const endpoint = { host: argv.ip, port: argv.port };
  const where = `${formatEndpoint(endpoint)} (PCI_DOE)`;
  const { session } = argv;
  const app = appOptions(argv.app, argv.tdi);
  if (app && session === undefined) throw new Error("--app needs --session");
  const csrOut = (csr: Buffer | undefined) => {
    const file = argv["csr-out"];
    if (file !== undefined && csr) writeFileSync(file, csr);
  };
  if (session === undefined) {
    const summary = await runRequester(endpoint, options(argv));
    csrOut(summary.provisioning.csr);
    console.log(argv.json ? JSON.stringify(summary, null, 2) : formatSummary(summary, where));
    return;
  }
  const out = await runSessionRequester(endpoint, {
    ...options(argv),
    session: sessionOptions({ ...argv, session }),
    app,
  });
  csrOut(out.connection.provisioning.csr);
  console.log(
    argv.json
      ? JSON.stringify(out, null, 2)
      : `${formatSummary(out.connection, where)}\n${formatSession(out.session)}`,
  );
}

export const requesterCommand = {
  command: "requester",
  describe:
    "Authenticate a DOE mailbox endpoint as DMTF's spdm_requester_emu does, verifying certificates, signatures and measurements",
  builder: (y: Argv) => {
    let b = keyLogOption(captureOptions(logOptions(y)))
      .option("trans", {
        type: "string",
        default: "PCI_DOE",
        describe: "Transport; only PCI_DOE (DOE data objects on the spdm-emu socket)",
      })
      .option("ip", { type: "string", default: "127.0.0.1", describe: "Responder address" })
      .option("port", { type: "number", default: 2323, describe: "Responder port" })
      .option("trust-root", {
        type: "string",
        describe: "Root certificate (DER or PEM) the chain must end in; without it the root is not checked",
      })
      .option("req-cert-chain", {
        type: "string",
        implies: "req-key",
        describe:
          "Our certificate chain for mutual authentication (DER-concatenated or PEM, root first); offers MUT_AUTH_CAP and, unless --req_asym, the ReqBaseAsymAlg the key fits",
      })
      .option("req-key", {
        type: "string",
        describe:
          "The private key of --req-cert-chain's leaf (PEM or DER), or the one --req-public-key provisioned",
      })
      .option("req-public-key", {
        type: "boolean",
        default: false,
        describe:
          "The responder holds --req-key's public key (spdm-emu's --req_slot_id 0xFF): offers PUB_KEY_ID_CAP instead of CERT_CAP, FINISH signed for requester slot 0xFF",
      })
      .option("rsp-public-key", {
        type: "string",
        describe:
          "The responder's public key (DER SubjectPublicKeyInfo or PEM, e.g. spdm-emu's end_responder.key.pub.der) for a PUB_KEY_ID_CAP responder: slot 0xFF, no GET_DIGESTS/GET_CERTIFICATE",
      })
      .option("timeout", { type: "number", default: 1000, describe: "Per-request timeout in ms" })
      .option("slot_id", {
        type: "number",
        default: 0,
        describe: "Certificate slot challenged and used for measurements (0-7)",
      })
      .option("meas_sum", {
        choices: ["NO", "TCB", "ALL"] as const,
        default: "ALL" as const,
        describe: "MeasurementSummaryHashType in CHALLENGE (ALL is checked against the measurements)",
      })
      .option("meas_op", {
        choices: ["ONE_BY_ONE", "ALL"] as const,
        default: "ONE_BY_ONE" as const,
        describe:
          "GET_MEASUREMENTS: count, then one index at a time as spdm-emu (signing the last), or all at once (signed)",
      })
      .option("exe_mode", {
        choices: ["SHUTDOWN", "CONTINUE"] as const,
        default: "SHUTDOWN" as const,
        describe: "End with SHUTDOWN (the responder exits) or CONTINUE (it waits for the next requester)",
      })
      .option("json", { type: "boolean", default: false, describe: "Print the summary as JSON" })
      .option("exe_conn", {
        type: "string",
        describe: `Connection steps after VCA, comma-separated from VCA|${[...CONNECTION_STEPS, ...PROVISION_STEPS].join("|")} (default ${CONNECTION_STEPS.join(",")}; CERT needs DIGEST, CHAL needs CERT; the others run when the responder offers them)`,
      })
      .option("get-csr", {
        type: "boolean",
        default: false,
        describe:
          "GET_CSR after the connection steps: the responder's PKCS#10 request, its signature verified",
      })
      .option("csr-out", { type: "string", describe: "Write the CSR (DER) to this file (implies --get-csr)" })
      .option("csr-tag", {
        type: "number",
        describe:
          "GET_CSR with this CSRTrackingTag (1-7, SPDM 1.3+): retrieve the CSR a device with CERT_INSTALL_RESET made at its reset (implies --get-csr)",
      })
      .option("set-cert", {
        type: "string",
        array: true,
        nargs: 2,
        describe:
          "SET_CERTIFICATE SLOT FILE: install the chain in FILE (DER certificates concatenated, or PEM; root first)",
      })
      .option("session", {
        choices: ["KEY_EX", "PSK"] as const,
        describe:
          "Then open a secure session and inside it: the --app step, digests, certificate, measurements, KEY_UPDATE (UpdateKey, UpdateAllKeys), HEARTBEAT, END_SESSION. KEY_EX offers DHE SECP_384_R1,SECP_256_R1 unless --dhe is given",
      })
      .option("rsp-key-update", {
        type: "boolean",
        default: false,
        describe:
          "In the session, also have the responder update its key: OOB_ENCAP_KEY_UPDATE, then its encapsulated KEY_UPDATE (spdm-emu's --key_upd RSP; needs ENCAP_CAP on both sides, so --req-cert-chain)",
      })
      .option("app", {
        type: "string",
        describe:
          "In the session first, as spdm_requester_emu's APP step: comma-separated from IDE_KM|TDISP|CXL_IDE_KM|CXL_TSP|ALL. IDE_KM: QUERY, KEY_PROG + K_SET_GO for RX/TX PR/NPR/CPL, K_SET_STOP after TDISP; TDISP: version, capabilities, lock, interface report, start, stop; CXL_IDE_KM: QUERY port 0, GET_KEY (if the port generates keys or IVs), KEY_PROG + K_SET_GO RX and TX, K_SET_STOP (if the port has it); CXL_TSP: version, capabilities, and in the connection's first session configuration, report, lock, TE state, then a PSK secondary session per key",
      })
      .option("tdi", {
        type: "string",
        describe: `TDISP INTERFACE_ID FunctionID as a routing ID BB:DD.F (default ${hex(APP_DEFAULTS.functionId)}, as DMTF's requester sends)`,
      })
      .option("psk", {
        type: "string",
        describe:
          'PSK for --session PSK: hex (0x.., or hex digit pairs) or text with \\0 for NUL (default DMTF\'s "TestPskData\\0")',
      })
      .option("psk_hint", {
        type: "string",
        describe: 'PSK hint, same forms (default "TestPskHint\\0")',
      })
      .option("handshake_in_clear", {
        type: "boolean",
        default: true,
        describe:
          "Advertise HANDSHAKE_IN_THE_CLEAR_CAP; --no-handshake_in_clear makes FINISH go under the handshake keys",
      })
      .option("multi-key", {
        choices: ["NEG", "ONLY"] as const,
        describe:
          "Advertise MULTI_KEY_CAP (SPDM 1.3+, requester): a multi-key connection of ours when the responder selects it (ONLY: required); our encapsulated DIGESTS then names our key pair, certificate model and key usage",
      });
    for (const { flag, names, key, help } of LIST_FLAGS) {
      const dflt = REQUESTER_DEFAULTS[key as keyof typeof REQUESTER_DEFAULTS];
      const shown = Array.isArray(dflt)
        ? dflt.map((v) => Object.keys(names).find((k) => names[k] === v) ?? String(v)).join(",")
        : namesOf(names, dflt as number);
      b = b.option(flag, {
        type: "string",
        describe: `${help}; comma-separated, from ${Object.keys(names).join("|")} (default ${shown || "none"})`,
      });
    }
    return b
      .example("$0 requester --port 2323 --trust-root ecp384/ca.cert.der", "authenticate spdm_responder_emu")
      .example(
        "$0 requester --ver 1.2 --asym ECDSA_P256 --hash SHA_256 --trust-root ecp256/ca.cert.der",
        "P-256 / SHA-256 at SPDM 1.2",
      )
      .example(
        "$0 requester --session KEY_EX --aead AES_128_GCM --no-handshake_in_clear",
        "KEY_EXCHANGE session, encrypted FINISH",
      )
      .example(
        "$0 requester --session PSK --exe_conn VCA --psk 0x5465737450736b4461746100",
        "PSK session without authentication",
      )
      .example(
        "$0 requester --session KEY_EX --app IDE_KM,TDISP --tdi 01:00.0 --trust-root ecp384/ca.cert.der",
        "IDE-KM keys and the TDISP cycle on TDI 01:00.0 inside a KEY_EX session",
      );
  },
  handler: run(runRequesterCommand),
};
