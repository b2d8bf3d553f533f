/**
 * The host's management API against clients that misbehave: a body over the cap is answered 413
 * (not a reset), a request that trickles in is cut off by the request timeout, and a body where
 * none belongs is a 400, a request target no URL parser takes is a 400 (it once threw in the
 * request handler and ended the host).
 */
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiRequest } from "../../src/host/api-client.js";
import { type Host, startHost } from "../../src/host/host.js";
import { logLines } from "../support/log-lines.js";

let host: Host;
beforeAll(async () => {
  host = await startHost({ apiRequestTimeoutMs: 300 });
});
afterAll(() => host.stop());

/** POSTs `body` with Node's client and resolves with the status and text it gets back. */
function post(path: string, body: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...host.api, path, method: "POST" }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => {
        text += d.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("management API bounds", () => {
  it("answers a 10 MB body with 413, and keeps serving", async () => {
    const rsp = await post("/v1/tdis/01:00.0/bind", Buffer.alloc(10 << 20, 0x20));
    expect(rsp.status).toBe(413);
    expect(JSON.parse(rsp.text)).toEqual({ error: expect.stringMatching(/body exceeds/) });
    expect((await apiRequest(host.api, "GET", "/v1/topology")).status).toBe(200);
  });

  it("cuts off a request whose body never completes", async () => {
    const socket = net.connect(host.api.port, host.api.host);
    let answer = "";
    socket.on("data", (d: Buffer) => {
      answer += d.toString();
    });
    socket.write("POST /v1/tdis/01:00.0/bind HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
    await new Promise((resolve) => socket.once("close", resolve));
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });

  it("answers request targets that are no URL path, and keeps serving", async () => {
    const ask = (target: string) =>
      new Promise<string>((resolve) => {
        const socket = net.connect(host.api.port, host.api.host);
        let answer = "";
        socket.on("data", (d: Buffer) => {
          answer += d.toString();
        });
        socket.once("close", () => resolve(answer));
        socket.end(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      });
    // Found by `npm run fuzz`: "//…" made new URL(target, base) read a host name, and throw.
    expect(await ask("//%3B%3DP%3El%2CZg/%3F!'ZOc%2F%24")).toMatch(/^HTTP\/1\.1 404/);
    expect(await ask("//v1/topology")).toMatch(/^HTTP\/1\.1 404/);
    expect(await ask("*")).toMatch(/^HTTP\/1\.1 400/);
    expect((await apiRequest(host.api, "GET", "/v1/topology")).status).toBe(200);
  });

  it("takes a client that goes away mid-body for the client's doing, not an internal error", async () => {
    const lines = logLines("warn");
    const logged = await startHost({ log: lines.log });
    try {
      const socket = net.connect(logged.api.port, logged.api.host);
      socket.write("POST /v1/tdis/01:00.0/bind HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
      await new Promise((resolve) => setTimeout(resolve, 50));
      socket.destroy();
      // Found by `npm run fuzz`: each such client was an "API request failed" error with a stack.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await apiRequest(logged.api, "GET", "/v1/topology")).status).toBe(200);
      expect(lines.written.filter((l) => l.includes("API request failed"))).toEqual([]);
    } finally {
      await logged.stop();
    }
  });

  it("refuses a body on authenticate, connect, disconnect and unbind", async () => {
    const paths = ["authenticate", "connect", "disconnect"].map((op) => `/v1/tdevs/01:00.0/${op}`);
    for (const path of [...paths, "/v1/tdis/01:00.0/unbind"]) {
      const rsp = await post(path, Buffer.from('{"trust":"me"}'));
      expect([path, rsp.status]).toEqual([path, 400]);
    }
  });
});

describe("management API connection cap", () => {
  it("closes connections past the cap at once, and serves again once one closes", async () => {
    const capped = await startHost({ apiMaxConnections: 3 });
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = net.connect(capped.api);
        await new Promise((resolve) => s.once("connect", resolve));
        held.push(s);
      }
      // The fourth is accepted by the kernel, then closed by the server without an answer.
      await expect(apiRequest(capped.api, "GET", "/v1/topology")).rejects.toThrow();
      held.pop()!.destroy();
      // Once the server has seen that close, a request gets through again.
      const answered = async (): Promise<number> => {
        const status = await apiRequest(capped.api, "GET", "/v1/topology").then(
          (r) => r.status,
          () => 0,
        );
        if (status) return status;
        await new Promise((resolve) => setTimeout(resolve, 20));
        return answered();
      };
      expect(await answered()).toBe(200);
    } finally {
      for (const s of held) s.destroy();
      await capped.stop();
    }
  });
});
