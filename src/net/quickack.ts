/**
 * TCP_QUICKACK, re-armed after every read. DMTF's tools write each frame-header field with its own
 * send() and leave Nagle on; against a peer that delays its ACKs every exchange then stalls ~40 ms.
 * Linux clears QUICKACK by itself, hence the re-arm. Node has no API for it, so one setsockopt
 * call goes through koffi (prebuilt FFI). Where that cannot load, sockets work as before and one
 * warning says so.
 */

import { createRequire } from "node:module";
import type { Socket } from "node:net";

const IPPROTO_TCP = 6;
const TCP_QUICKACK = 12;

type SetSockOpt = (fd: number, level: number, name: number, value: Int32Array, len: number) => number;
/** The option's value, passed as memory koffi reads in place: an array would be converted on every call. */
const ONE = new Int32Array([1]);

let setsockopt: SetSockOpt | null | undefined;
let warned = false;
/** Where loading failed, why; reported once through the warn callback. */
let unavailableReason = "";

function load(): SetSockOpt | null {
  if (setsockopt !== undefined) return setsockopt;
  if (process.platform !== "linux") {
    unavailableReason = `TCP_QUICKACK is Linux-only (platform ${process.platform})`;
    setsockopt = null;
    return null;
  }
  try {
    const koffi = createRequire(import.meta.url)("koffi") as typeof import("koffi");
    const libc = koffi.load("libc.so.6");
    setsockopt = libc.func("int setsockopt(int, int, int, _In_ int *, uint32_t)") as SetSockOpt;
  } catch (e) {
    unavailableReason = `cannot load setsockopt through koffi: ${(e as Error).message}`;
    setsockopt = null;
  }
  return setsockopt;
}

function fdOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

/** Asks the kernel to ACK immediately. Returns false (after one warning) where it cannot. */
export function armQuickAck(socket: Socket, warn: (msg: string) => void = console.warn): boolean {
  const fn = load();
  const fd = fdOf(socket);
  if (fn && fd !== undefined && fn(fd, IPPROTO_TCP, TCP_QUICKACK, ONE, 4) === 0) return true;
  if (!warned) {
    warned = true;
    warn(
      `quick ACKs disabled: ${unavailableReason || "setsockopt(TCP_QUICKACK) failed"}; exchanges with peers that use Nagle may stall ~40 ms`,
    );
  }
  return false;
}

/** Whether quick ACKs are available in this process. */
export function quickAckAvailable(): boolean {
  return load() !== null;
}
