/**
 * The control endpoint (the device side of the control wire): config reads and writes by routing
 * ID, and the device identity. Each request frame gets exactly one reply carrying its tag; a bad
 * request gets an ERROR reply and the connection stays up, while broken framing closes it
 * (FramedConnection does that).
 */
import {
  CONTROL_MAX_PAYLOAD,
  type ConfigAccess,
  ControlError,
  ControlErrorCode,
  type ControlMessage,
  checkConfigAccess,
  decodeControlFrame,
  encodeControlFrame,
} from "../../protocol/control.js";
import { DecodeError } from "../../protocol/errors.js";
import type { SocketFrame } from "../../protocol/socket.js";
import { type Logger, silentLogger } from "../log.js";
import { FramedServer } from "../net/framed.js";
import { FaultRuleError, FaultSet, parseFaultRule } from "./faults.js";
import type { DeviceModel } from "./model.js";

export interface ControlServerOptions {
  model: DeviceModel;
  /** The device's fault rules, added, listed and cleared over the wire (default: none yet). */
  faults?: FaultSet;
  host: string;
  port: number;
  log?: Logger;
  /** Called with a connection's writer name (the DOE origin of its register-level objects) when it closes. */
  onClose?: (writer: string) => void;
}

export function startControlServer(opts: ControlServerOptions): Promise<FramedServer> {
  const log = opts.log ?? silentLogger;
  const faults = opts.faults ?? new FaultSet(log);
  return FramedServer.listen({
    host: opts.host,
    port: opts.port,
    maxPayload: CONTROL_MAX_PAYLOAD,
    log,
    onConnection: (conn) => {
      const writer = `cfg:${conn.peer}`;
      conn.on("frame", (frame) =>
        conn.send(encodeControlFrame(frame.transport, answer(opts.model, faults, frame, writer, log))),
      );
      conn.once("close", () => opts.onClose?.(writer));
    },
  });
}

function answer(
  model: DeviceModel,
  faults: FaultSet,
  frame: SocketFrame,
  writer: string,
  log: Logger,
): ControlMessage {
  try {
    const msg = decodeControlFrame(frame);
    switch (msg.kind) {
      case "cfgRead":
        return { kind: "cfgReadRsp", value: model.configRead(msg.rid, msg.offset, msg.width) };
      case "cfgWrite":
        model.configWrite(msg.rid, msg.offset, msg.width, msg.value, writer);
        return { kind: "cfgWriteRsp" };
      case "cfgBatch":
        return { kind: "cfgBatchRsp", data: runBatch(model, msg.accesses, writer) };
      case "identity":
        return { kind: "identityRsp", identity: model.identity() };
      case "faultAdd": {
        const rule = parseFaultRule(msg.rule);
        const id = faults.add(rule);
        log.info({ fault: id, rule }, "fault rule added");
        return { kind: "faultAddRsp", id };
      }
      case "faultList":
        return { kind: "faultListRsp", rules: faults.list() };
      case "faultClear": {
        const cleared = faults.clear();
        log.info({ cleared }, "fault rules cleared");
        return { kind: "faultClearRsp", cleared };
      }
      default:
        return {
          kind: "error",
          code: ControlErrorCode.UNEXPECTED,
          message: `${msg.kind} is not a request the control endpoint serves`,
        };
    }
  } catch (e) {
    if (e instanceof DecodeError)
      return { kind: "error", code: ControlErrorCode.MALFORMED, message: e.message };
    if (e instanceof ControlError) return { kind: "error", code: e.code, message: e.message };
    if (e instanceof FaultRuleError)
      return { kind: "error", code: ControlErrorCode.BAD_FAULT, message: e.message };
    log.error({ err: (e as Error).stack }, "control request failed");
    return { kind: "error", code: ControlErrorCode.INTERNAL, message: "internal error" };
  }
}

/**
 * A CFG_BATCH: every access checked before any runs, so a refused batch changes nothing; then each
 * in order, exactly as the same CFG_READs and CFG_WRITEs would.
 */
function runBatch(model: DeviceModel, accesses: readonly ConfigAccess[], writer: string): Buffer {
  let bytes = 0;
  for (const a of accesses) {
    const count = a.op === "read" ? a.count : 1;
    checkConfigAccess(a.offset, a.width);
    checkConfigAccess(a.offset + (count - 1) * a.width, a.width);
    if (a.op === "read") bytes += count * a.width;
  }
  if (bytes > CONTROL_MAX_PAYLOAD)
    throw new ControlError(
      ControlErrorCode.OUT_OF_RANGE,
      `the batch reads ${bytes} bytes, over ${CONTROL_MAX_PAYLOAD}`,
    );
  const data = Buffer.alloc(bytes);
  let at = 0;
  for (const a of accesses) {
    if (a.op === "write") {
      model.configWrite(a.rid, a.offset, a.width, a.value, writer);
      continue;
    }
    model.configReadInto(a.rid, a.offset, a.width, a.count, data, at);
    at += a.count * a.width;
  }
  return data;
}
