/**
 * Hotplug announce (control wire): a device started with `--host` connects to the host's hotplug
 * port and sends ANNOUNCE with its control endpoint and identity. The connection then stays open;
 * its closing is the device's removal.
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
  /** Resolves when the connection to the host is gone, whoever closed it. */
  readonly closed: Promise<void>;
  /** Closes the connection: the host removes the device. */
  close(): void;
}

/** Rejects with AnnounceError when the host cannot be reached; the caller decides whether to exit. */
export async function announce(opts: AnnounceOptions): Promise<Announcement> {
  const log = opts.log ?? silentLogger;
  let client: FramedClient;
  try {
    client = await FramedClient.connect(opts.host, { maxPayload: CONTROL_MAX_PAYLOAD, log });
  } catch (e) {
    throw new AnnounceError(
      `hotplug announce to host ${formatEndpoint(opts.host)} failed: ${(e as Error).message}`,
    );
  }
  const closed = new Promise<void>((resolve) => {
    if (client.closed) resolve();
    else client.conn.once("close", () => resolve());
  });
  const { host, port } = opts.control;
  client.post(
    encodeControlFrame(0, { kind: "announce", control: { host, port }, identity: opts.model.identity() }),
  );
  log.info({ host: formatEndpoint(opts.host), control: formatEndpoint(opts.control) }, "announced to host");
  return { closed, close: () => client.close() };
}
