/**
 * Hotplug announce (control wire): a device started with `--host` connects to the host's hotplug
 * port and sends ANNOUNCE with its control endpoint and identity. The connection then stays open;
 * its closing is the device's removal, and then the device announces itself again (the host may
 * have dropped it while a link was down, or restarted) until it stops.
 */
import { CONTROL_MAX_PAYLOAD, encodeControlFrame } from "../../protocol/control.js";
import { type Logger, silentLogger } from "../log.js";
import { type Endpoint, FramedClient, formatEndpoint } from "../net/framed.js";
import type { DeviceModel } from "./model.js";

export class AnnounceError extends Error {
  override readonly name = "AnnounceError";
}

export interface AnnounceOptions {
  /** The host's hotplug endpoint. */
  host: Endpoint;
  /** This device's control endpoint, as the host should reach it. */
  control: Endpoint;
  model: DeviceModel;
  log?: Logger;
}

export interface Announcement {
  /** Resolves once close() has been called and the connection is gone. */
  readonly closed: Promise<void>;
  /** Closes the connection for good: the host removes the device. */
  close(): void;
}

/**
 * Re-announce back-off: doubles after each failed attempt and each connection the host closed soon
 * (a device it refuses), up to the cap; starts again from the first after a connection that lasted.
 */
const RETRY_FIRST_MS = 200;
const RETRY_MAX_MS = 5000;
/**
 * Keep-alive probes on an idle announce connection: a host that removed the device while the link
 * was down sent its FIN into the void; the probe, once the link is back, is answered by a reset and
 * the device announces itself again.
 */
const KEEPALIVE_MS = 1000;

/**
 * Announces the device and keeps it announced: when the host closes the connection (it removed the
 * device, or stopped), the device announces itself again, with back-off, until close(). Rejects
 * with AnnounceError when the host cannot be reached the first time; the caller decides whether to exit.
 */
export async function announce(opts: AnnounceOptions): Promise<Announcement> {
  const log = opts.log ?? silentLogger;
  const where = formatEndpoint(opts.host);
  let client = await connectAnnounce(opts, log).catch((e: Error) => {
    throw new AnnounceError(`hotplug announce to host ${where} failed: ${e.message}`);
  });
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const watch = (c: FramedClient, delayMs: number) => {
    const since = Date.now();
    c.conn.once("close", () => {
      if (stopped) return resolveClosed();
      const next = Date.now() - since >= RETRY_MAX_MS ? RETRY_FIRST_MS : delayMs;
      log.info({ host: where, retryMs: next }, "announce connection closed; announcing again");
      reannounce(next);
    });
  };
  const reannounce = (delayMs: number) => {
    retry = setTimeout(async () => {
      try {
        const c = await connectAnnounce(opts, log);
        if (stopped) return c.close();
        client = c;
        watch(c, Math.min(delayMs * 2, RETRY_MAX_MS));
      } catch (e) {
        log.debug({ host: where, err: (e as Error).message }, "announce failed");
        if (!stopped) reannounce(Math.min(delayMs * 2, RETRY_MAX_MS));
      }
    }, delayMs);
  };
  watch(client, RETRY_FIRST_MS);
  const close = () => {
    if (stopped) return;
    stopped = true;
    clearTimeout(retry);
    if (client.closed) resolveClosed();
    else client.close();
  };
  return { closed, close };
}

/** Connects to the host's hotplug endpoint and sends ANNOUNCE. */
async function connectAnnounce(opts: AnnounceOptions, log: Logger): Promise<FramedClient> {
  const client = await FramedClient.connect(opts.host, { maxPayload: CONTROL_MAX_PAYLOAD, log });
  client.conn.socket.setKeepAlive(true, KEEPALIVE_MS);
  const { host, port } = opts.control;
  client.post(
    encodeControlFrame(0, { kind: "announce", control: { host, port }, identity: opts.model.identity() }),
  );
  log.info({ host: formatEndpoint(opts.host), control: formatEndpoint(opts.control) }, "announced to host");
  return client;
}
