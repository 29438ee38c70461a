/** Talks to the enabled plugin over its Unix socket, exactly as dockerd does. */

import { request } from "node:http";
import { docker } from "./docker.ts";

/** The socket of the enabled plugin: /run/docker/plugins/<plugin id>/switchyard.sock. */
export async function pluginSocket(plugin = "switchyard:latest"): Promise<string> {
  const id = await docker(["plugin", "inspect", "-f", "{{.Id}}", plugin]);
  return `/run/docker/plugins/${id}/switchyard.sock`;
}

/** POSTs a JSON body (no Content-Type, as dockerd) and returns status and parsed answer. */
export function callPlugin(
  socketPath: string,
  path: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(
      {
        socketPath,
        method: "POST",
        path,
        headers: {
          accept: "application/vnd.docker.plugins.v1.2+json",
          "content-length": Buffer.byteLength(payload),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          try {
            resolve({
              status: res.statusCode ?? 0,
              body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
            });
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}
