/**
 * The device's CXL TSP responder (CXL 3.1 §11.5; codec protocol/cxl-tsp.ts), as spdm-emu 85436d53's
 * cxl_tsp_responder_lib behaves, with its gaps closed: every refusal is a TSP ERROR_RSP.
 *
 * Sessions. TSP tells SPDM sessions apart: the first session of the SPDM connection to send a TSP
 * request is the PRIMARY one; a PSK session opened with the hint SECONDARY_SESSION_<i>_PSK of key
 * material the PRIMARY session configured is SECONDARY; any other session is OTHER, and a request
 * outside a session has none. Which session type may send which request, and in which TSP state,
 * is the one table TSP_RULES (the rules of spdm-emu's handlers, C.6 of its behaviour).
 *
 * What survives a reconnect: nothing. The state (configuration, lock, the secondary sessions' key
 * material, which session is PRIMARY) belongs to the SPDM connection and goes when GET_VERSION starts
 * a new one (which also ends every session): the key material is only the requester's that sent it,
 * and the lock only means something to the sessions it was set in. A new requester therefore finds
 * the target unlocked and configures it afresh, which is what lets DMTF's requester pass run after
 * run against one device process. spdm-emu keeps its lock for the life of the process instead.
 */

import {
  ConfigurationFeature,
  configurationIssues,
  configurationOf,
  decodeTsp,
  decodeTspHeader,
  encodeTsp,
  encodeTspConfigurationReport,
  IB_GRANULARITY_ENTIRE_MEMORY,
  LENGTH_INDEX_UNUSED,
  MAX_SECONDARY_SESSIONS,
  MemoryEncryptionEnable,
  MemoryEncryptionSupported,
  REPORT_PART_BYTES,
  type SetTargetConfiguration,
  secondarySessionPskHint,
  TSP_VERSION_1_0,
  type TspCapabilities,
  type TspConfiguration,
  TspErrorCode,
  type TspMessage,
  TspState,
  tspCodeName,
  validityFlagsFor,
} from "../../protocol/cxl-tsp.js";
import { hex32 } from "../bits.js";
import type { Logger } from "../log.js";
import type { VendorRequestContext } from "../spdm/responder-vendor.js";
import type { CxlTspDescription } from "./description.js";
import { decodeOrRefuse } from "./pcisig-vdm.js";

export type TspStateName = Exclude<keyof typeof TspState, "ERROR">;
export type TspSessionType = "PRIMARY" | "SECONDARY" | "OTHER" | "NONE";

/** The requests served. */
type Served =
  | "GET_TARGET_TSP_VERSION"
  | "GET_TARGET_CAPABILITIES"
  | "SET_TARGET_CONFIGURATION"
  | "GET_TARGET_CONFIGURATION"
  | "GET_TARGET_CONFIGURATION_REPORT"
  | "LOCK_TARGET_CONFIGURATION"
  | "SET_TARGET_TE_STATE";

interface Rule {
  /** The session types that may send it; any other gets NO_PRIVILEGE. */
  sessions: readonly TspSessionType[];
  /** The states it is legal in and the state it leads to; in any other, INVALID_SECURITY_STATE. */
  states: Partial<Record<TspStateName, TspStateName>>;
}

const ANY: readonly TspSessionType[] = ["PRIMARY", "SECONDARY", "OTHER"];
const CONFIGURING: readonly TspSessionType[] = ["PRIMARY"];
const TRUSTED: readonly TspSessionType[] = ["PRIMARY", "SECONDARY"];
const STAY = { CONFIG_UNLOCKED: "CONFIG_UNLOCKED", CONFIG_LOCKED: "CONFIG_LOCKED" } as const;

/**
 * The TSP state machine and who may drive it (spdm-emu 85436d53 cxl_tsp_rsp_*.c): only the PRIMARY
 * session configures and locks; the SECONDARY sessions read the configuration and change TE state,
 * which needs the lock; OTHER sessions only learn the version and capabilities. There is no unlock:
 * a new SPDM connection starts over (see above). LOCK when locked is ALREADY_LOCKED.
 */
export const TSP_RULES: Readonly<Record<Served, Rule>> = {
  GET_TARGET_TSP_VERSION: { sessions: ANY, states: STAY },
  GET_TARGET_CAPABILITIES: { sessions: ANY, states: STAY },
  SET_TARGET_CONFIGURATION: { sessions: CONFIGURING, states: { CONFIG_UNLOCKED: "CONFIG_UNLOCKED" } },
  GET_TARGET_CONFIGURATION: { sessions: TRUSTED, states: STAY },
  GET_TARGET_CONFIGURATION_REPORT: { sessions: TRUSTED, states: STAY },
  LOCK_TARGET_CONFIGURATION: { sessions: CONFIGURING, states: { CONFIG_UNLOCKED: "CONFIG_LOCKED" } },
  SET_TARGET_TE_STATE: { sessions: TRUSTED, states: { CONFIG_LOCKED: "CONFIG_LOCKED" } },
};
const SERVED = new Set(Object.keys(TSP_RULES));
const isServed = (name: string | undefined): name is Served => name !== undefined && SERVED.has(name);

/** SET_TARGET_TE_STATE: how many ranges one request may carry (spdm-emu's bound). */
export const MAX_TE_STATE_RANGES = 32;
/** TE state values: 0 leaves, 1 enters the trusted execution state (the DMTF requester's order). */
const TE_STATES = new Set([0, 1]);
/** Report bytes per portion at most, as spdm-emu (LIBCXLTSP_CONFIGURATION_REPORT_PORTION_LEN). */
export const MAX_REPORT_PORTION = 0x200;

/** GET_TARGET_CAPABILITIES_RSP of a described device. */
export function tspCapabilities(d: CxlTspDescription): TspCapabilities {
  return {
    memoryEncryptionFeaturesSupported: d.memoryEncryption ? MemoryEncryptionSupported.ENCRYPTION : 0,
    memoryEncryptionAlgorithmsSupported: d.memoryEncryption ? d.memoryEncryptionAlgorithms : 0,
    numberOfRangeBasedKeys: 0,
    teStateChangeAndAccessControlFeaturesSupported: d.teStateFeatures,
    supportedExplicitOobTeStateGranularity: d.explicitOobTeStateGranularity,
    supportedExplicitIbTeStateGranularity: d.explicitIbTeStateGranularity,
    configurationFeaturesSupported:
      (d.lockedTargetFwUpdate ? ConfigurationFeature.LOCKED_TARGET_FW_UPDATE : 0) |
      (d.secondarySessions > 0 ? ConfigurationFeature.ADDITIONAL_SPDM_SESSIONS : 0),
    numberOfCkids: 0,
    numberOfSecondarySessions: d.secondarySessions,
  };
}

/** The TSP state of one SPDM connection. */
interface ConnectionState {
  state: TspStateName;
  configuration: TspConfiguration;
  primary?: number;
  /** Hints (hex) of the secondary sessions' keys provisioned, by index. */
  secondaryHints: Map<string, number>;
}

const UNCONFIGURED: TspConfiguration = {
  memoryEncryptionFeaturesEnable: 0,
  memoryEncryptionAlgorithmSelect: 0,
  teStateChangeAndAccessControlFeaturesEnable: 0,
  explicitOobTeStateGranularity: 0,
  configurationFeaturesEnable: 0,
  ckidBase: 0,
  numberOfCkids: 0,
  explicitIbTeStateGranularityEntries: Array.from({ length: 8 }, () => ({
    granularity: 0n,
    lengthIndex: LENGTH_INDEX_UNUSED,
  })),
};

class TspRefusal extends Error {
  constructor(readonly errorCode: number) {
    super(`TSP error 0x${errorCode.toString(16)}`);
  }
}
const refuse = (name: keyof typeof TspErrorCode): never => {
  throw new TspRefusal(TspErrorCode[name]);
};

export class CxlTspEngine {
  private readonly caps: TspCapabilities;
  /** The configuration report: ValidTSPReportFields 1 and the register copies, zero as spdm-emu's. */
  private readonly report: Buffer;
  private conn: ConnectionState = fresh();

  constructor(
    private readonly settings: CxlTspDescription,
    private readonly log: Logger,
  ) {
    this.caps = tspCapabilities(settings);
    const part = (k: keyof typeof REPORT_PART_BYTES) => Buffer.alloc(REPORT_PART_BYTES[k]);
    this.report = encodeTspConfigurationReport({
      validTspReportFields: 1,
      pcieDvsecForCxlDevices: part("pcieDvsecForCxlDevices"),
      flexBusPortDvsec: part("flexBusPortDvsec"),
      cxlLinkCapability: part("cxlLinkCapability"),
      cxlTimeoutAndIsolationCapability: part("cxlTimeoutAndIsolationCapability"),
      cxlHdmDecoderCapability: part("cxlHdmDecoderCapability"),
      hdmDecoders: Buffer.alloc(0),
      cxlIdeCapability: part("cxlIdeCapability"),
    });
  }

  /** The TSP state of the current SPDM connection. */
  get state(): TspStateName {
    return this.conn.state;
  }

  /** GET_VERSION started a new SPDM connection: the TSP state starts over (see the file comment). */
  connectionReset(): void {
    if (this.conn.state !== "CONFIG_UNLOCKED" || this.conn.primary !== undefined)
      this.log.info({ from: this.conn.state }, "new SPDM connection: TSP state reset");
    this.conn = fresh();
  }

  /** One TSP request in, its response out: an ERROR_RSP for anything refused. Never throws. */
  handle(message: Buffer, ctx: VendorRequestContext): Buffer {
    let version = TSP_VERSION_1_0;
    try {
      const header = decodeOrRefuse(
        () => decodeTspHeader(message),
        () => refuse("INVALID_REQUEST"),
      );
      version = header.version;
      const name = tspCodeName(header.opcode);
      if (!isServed(name)) return refuse("UNSUPPORTED_REQUEST");
      const rule = TSP_RULES[name];
      const type = this.sessionType(ctx);
      if (!rule.sessions.includes(type)) {
        this.log.info({ req: name, session: type }, "TSP request from a session type that may not send it");
        refuse("NO_PRIVILEGE");
      }
      const request = decodeOrRefuse(
        () => decodeTsp(message),
        () => refuse("INVALID_REQUEST"),
      );
      if (version !== TSP_VERSION_1_0) refuse("VERSION_MISMATCH");
      const next = rule.states[this.conn.state];
      if (next === undefined)
        refuse(name === "LOCK_TARGET_CONFIGURATION" ? "ALREADY_LOCKED" : "INVALID_SECURITY_STATE");
      const response = this.serve(request, ctx);
      if (next !== this.conn.state) {
        this.log.info(
          { from: this.conn.state, to: next, sessionId: hex32(ctx.sessionId ?? 0) },
          "TSP state changed",
        );
        this.conn.state = next!;
      }
      return encodeTsp(response);
    } catch (e) {
      if (!(e instanceof TspRefusal)) throw e;
      return encodeTsp({ code: "ERROR_RSP", version, errorCode: e.errorCode, errorData: 0 });
    }
  }

  /** The session's type, decided by its first TSP request. */
  private sessionType(ctx: VendorRequestContext): TspSessionType {
    const { sessionId, pskHint } = ctx;
    if (sessionId === undefined) return "NONE";
    const c = this.conn;
    if (pskHint !== undefined && c.secondaryHints.has(pskHint.toString("hex"))) return "SECONDARY";
    c.primary ??= sessionId;
    return c.primary === sessionId ? "PRIMARY" : "OTHER";
  }

  private serve(m: TspMessage, ctx: VendorRequestContext): TspMessage {
    const reply = { version: TSP_VERSION_1_0 };
    switch (m.code) {
      case "GET_TARGET_TSP_VERSION":
        return { ...reply, code: "GET_TARGET_TSP_VERSION_RSP", versions: [TSP_VERSION_1_0] };
      case "GET_TARGET_CAPABILITIES":
        return { ...reply, code: "GET_TARGET_CAPABILITIES_RSP", ...this.caps };
      case "SET_TARGET_CONFIGURATION":
        this.configure(m, ctx);
        return { ...reply, code: "SET_TARGET_CONFIGURATION_RSP" };
      case "GET_TARGET_CONFIGURATION":
        return {
          ...reply,
          code: "GET_TARGET_CONFIGURATION_RSP",
          ...this.conn.configuration,
          currentTspState: TspState[this.conn.state],
        };
      case "GET_TARGET_CONFIGURATION_REPORT": {
        if (m.length === 0 || m.offset >= this.report.length) refuse("INVALID_REQUEST");
        const portion = this.report.subarray(m.offset, m.offset + Math.min(m.length, MAX_REPORT_PORTION));
        const remainderLength = this.report.length - m.offset - portion.length;
        return {
          ...reply,
          code: "GET_TARGET_CONFIGURATION_REPORT_RSP",
          portion: Buffer.from(portion),
          remainderLength,
        };
      }
      case "LOCK_TARGET_CONFIGURATION":
        return { ...reply, code: "LOCK_TARGET_CONFIGURATION_RSP" };
      case "SET_TARGET_TE_STATE": {
        const n = m.memoryRanges.length;
        if (n < 1 || n > MAX_TE_STATE_RANGES || !TE_STATES.has(m.teState)) refuse("INVALID_REQUEST");
        const size = BigInt(this.settings.memorySize);
        for (const r of m.memoryRanges)
          if (r.length === 0n || r.startingAddress + r.length > size) refuse("INVALID_REQUEST");
        this.log.debug({ teState: m.teState, ranges: n }, "TE state set");
        return { ...reply, code: "SET_TARGET_TE_STATE_RSP" };
      }
      default:
        return refuse("UNSUPPORTED_REQUEST");
    }
  }

  /** Checks a configuration against the capabilities (spdm-emu's rules), keeps it, provisions the secondary PSKs. */
  private configure(m: SetTargetConfiguration, ctx: VendorRequestContext): void {
    const caps = this.caps;
    const E = MemoryEncryptionEnable;
    const supported = (wanted: number, have: number) => (wanted & ~have) === 0;
    const features = m.memoryEncryptionFeaturesEnable;
    const sessions = validityFlagsFor(caps.numberOfSecondarySessions);
    const ib = m.explicitIbTeStateGranularityEntries;
    const bad =
      configurationIssues(m).length > 0 ||
      // We support encryption alone: no CKID- or range-based keys.
      !supported(features, caps.memoryEncryptionFeaturesSupported & E.ENCRYPTION) ||
      !supported(m.memoryEncryptionAlgorithmSelect, caps.memoryEncryptionAlgorithmsSupported) ||
      (features & E.ENCRYPTION && m.memoryEncryptionAlgorithmSelect === 0) ||
      !supported(
        m.teStateChangeAndAccessControlFeaturesEnable,
        caps.teStateChangeAndAccessControlFeaturesSupported,
      ) ||
      !supported(m.explicitOobTeStateGranularity, caps.supportedExplicitOobTeStateGranularity) ||
      !supported(
        m.configurationFeaturesEnable,
        caps.configurationFeaturesSupported & ConfigurationFeature.LOCKED_TARGET_FW_UPDATE,
      ) ||
      m.ckidBase !== 0 ||
      m.numberOfCkids !== 0 ||
      (caps.supportedExplicitIbTeStateGranularity & IB_GRANULARITY_ENTIRE_MEMORY &&
        ib.some((e) => e.lengthIndex === 7)) ||
      // Keys for the first n sessions, n at most what we advertise.
      (m.configurationValidityFlags & (m.configurationValidityFlags + 1)) !== 0 ||
      !supported(m.configurationValidityFlags, sessions);
    if (bad) {
      this.log.info({ problems: configurationIssues(m) }, "SET_TARGET_CONFIGURATION refused");
      refuse("INVALID_REQUEST");
    }
    this.conn.configuration = configurationOf(m);
    // Only the sessions this configuration keys: a reconfiguration withdraws the earlier keys.
    const psks = new Map<Buffer, Buffer>();
    this.conn.secondaryHints.clear();
    for (let i = 0; i < MAX_SECONDARY_SESSIONS; i++) {
      if (!(m.configurationValidityFlags & (1 << i))) continue;
      const hint = secondarySessionPskHint(i);
      psks.set(hint, m.secondarySessionPskKeyMaterial[i]!);
      this.conn.secondaryHints.set(hint.toString("hex"), i);
    }
    ctx.providePsks(psks);
  }
}

function fresh(): ConnectionState {
  return { state: "CONFIG_UNLOCKED", configuration: UNCONFIGURED, secondaryHints: new Map() };
}
