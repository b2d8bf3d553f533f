/**
 * A client of the management API for the CLI, the fixture and tests. One connection per request
 * (no keep-alive agent), so a caller is never left holding idle sockets.
 */
import http from "node:http";
import { type Endpoint, formatEndpoint } from "../net/framed.js";
import type { TopologyView } from "./api.js";

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
}

export function apiRequest<T = unknown>(
  api: Endpoint,
  method: "GET" | "POST" | "DELETE",
  path: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<ApiResponse<T>> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: api.host,
        port: api.port,
        method,
        path,
        agent: false,
        timeout: timeoutMs,
        headers: payload ? { "content-type": "application/json" } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as T });
          } catch {
            reject(
              new Error(
                `${method} ${path} on ${formatEndpoint(api)}: answer is not JSON: ${text.slice(0, 200)}`,
              ),
            );
          }
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} on ${formatEndpoint(api)} timed out`)));
    req.on("error", (e) =>
      reject(new Error(`cannot reach the host API on ${formatEndpoint(api)}: ${e.message}`)),
    );
    req.end(payload);
  });
}

export async function getTopology(api: Endpoint): Promise<TopologyView> {
  const rsp = await apiRequest<TopologyView>(api, "GET", "/v1/topology");
  if (rsp.status !== 200) throw new Error(`GET /v1/topology answered ${rsp.status}`);
  return rsp.body;
}
