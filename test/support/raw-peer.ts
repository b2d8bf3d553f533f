/**
 * A mailbox-wire peer written only from the frame layout (spdm-emu 85436d53
 * spdm_emu/spdm_emu_common/command.h), independent of our codecs: it sends raw bytes and reads
 * frames by hand, so tests check the device against the wire format itself.
 */
import net from "node:net";

export interface RawFrame {
  command: number;
  transport: number;
  payload: Buffer;
}

export class RawPeer {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on("data", (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.ended = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  static connect(port: number, host = "127.0.0.1"): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host }, () => resolve(new RawPeer(s)));
      s.once("error", reject);
    });
  }

  send(hex: string | Buffer): void {
    this.socket.write(typeof hex === "string" ? Buffer.from(hex.replace(/\s+/g, ""), "hex") : hex);
  }

  /** Sends a frame built by hand: u32 BE command, u32 BE transport, u32 BE size, payload. */
  sendFrame(command: number, transport: number, payload: Buffer | string = Buffer.alloc(0)): void {
    const p = typeof payload === "string" ? Buffer.from(payload.replace(/\s+/g, ""), "hex") : payload;
    const h = Buffer.alloc(12);
    h.writeUInt32BE(command, 0);
    h.writeUInt32BE(transport, 4);
    h.writeUInt32BE(p.length, 8);
    this.send(Buffer.concat([h, p]));
  }

  private async need(n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`connection closed with ${this.buf.length} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** The next whole frame's bytes, exactly as received. */
  async recvBytes(timeoutMs = 2000): Promise<Buffer> {
    await this.need(12, timeoutMs);
    const size = this.buf.readUInt32BE(8);
    await this.need(12 + size, timeoutMs);
    const out = this.buf.subarray(0, 12 + size);
    this.buf = this.buf.subarray(12 + size);
    return Buffer.from(out);
  }

  async recv(timeoutMs = 2000): Promise<RawFrame> {
    const b = await this.recvBytes(timeoutMs);
    return { command: b.readUInt32BE(0), transport: b.readUInt32BE(4), payload: b.subarray(12) };
  }

  /** Resolves true if the peer closes the connection within the time, with nothing more received. */
  async closesWithin(timeoutMs = 2000): Promise<boolean> {
    const t = new Promise<false>((resolve) => setTimeout(() => resolve(false), timeoutMs));
    const closed = await Promise.race([this.closed.then(() => true as const), t]);
    return closed && this.buf.length === 0;
  }

  close(): void {
    this.socket.destroy();
  }
}
