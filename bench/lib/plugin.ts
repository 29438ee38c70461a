/** Talking to the installed Switchyard plugin directly: its socket, its process, its memory. */

import { readFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import { docker, run } from "./exec.ts";

export const PLUGIN = "switchyard:latest";
const SOCKET_NAME = "switchyard.sock";
const CONTAINERD = "/var/run/docker/containerd/containerd.sock";

/** The plugin's ID (also its containerd task ID and its socket directory). */
export async function pluginId(): Promise<string> {
  return docker(["plugin", "inspect", "-f", "{{.Id}}", PLUGIN]);
}

/** True when the plugin is enabled. */
export async function pluginEnabled(): Promise<boolean> {
  return (await docker(["plugin", "inspect", "-f", "{{.Enabled}}", PLUGIN])) === "true";
}

/** Where dockerd dials the plugin. */
export function socketPathFor(id: string): string {
  return `/run/docker/plugins/${id}/${SOCKET_NAME}`;
}

/** PID of the plugin's process, from dockerd's containerd (namespace plugins.moby). */
export async function pluginPid(id: string): Promise<number> {
  const out = await run(["ctr", "-a", CONTAINERD, "-n", "plugins.moby", "task", "ls"]);
  for (const line of out.split("\n").slice(1)) {
    const [task, pid, status] = line.trim().split(/\s+/);
    if (task === id && status === "RUNNING") return Number(pid);
  }
  throw new Error(`no running containerd task for plugin ${id.slice(0, 12)}:\n${out}`);
}

/** Resident memory of a process in bytes (VmRSS of /proc/PID/status). */
export async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** One answer of the plugin. */
export interface PluginAnswer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * An HTTP client on the plugin's Unix socket that sends what dockerd sends: POST, a JSON body,
 * `Accept: application/vnd.docker.plugins.v1.2+json` and no Content-Type, over kept-alive
 * connections (as Go's client does).
 */
export class PluginClient {
  readonly socketPath: string;
  readonly #agent: Agent;

  constructor(socketPath: string, maxSockets = 4) {
    this.socketPath = socketPath;
    this.#agent = new Agent({ keepAlive: true, maxSockets });
  }

  /** Sends one call; resolves with status and parsed body (throws only on transport errors). */
  call(method: string, body?: unknown, timeoutMs = 30_000): Promise<PluginAnswer> {
    const payload = body === undefined ? "" : `${JSON.stringify(body)}\n`;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          agent: this.#agent,
          method: "POST",
          path: `/${method}`,
          headers: {
            Accept: "application/vnd.docker.plugins.v1.2+json",
            "Content-Length": Buffer.byteLength(payload),
          },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: Record<string, unknown> = {};
            try {
              parsed = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
            } catch {
              parsed = { Err: `not JSON: ${text.slice(0, 200)}` };
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} timed out after ${timeoutMs} ms`)));
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** Sends one call and throws unless the plugin answered 200. */
  async ok(method: string, body?: unknown): Promise<Record<string, unknown>> {
    const answer = await this.call(method, body);
    if (answer.status !== 200) {
      throw new Error(`${method} answered ${answer.status}: ${String(answer.body.Err ?? "")}`);
    }
    return answer.body;
  }

  close(): void {
    this.#agent.destroy();
  }
}
