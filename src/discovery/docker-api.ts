import { stat } from "node:fs/promises";
import { request } from "node:http";
import { dirname } from "node:path";

/** A Docker event as `/events` streams it (only the fields read here). */
export interface DockerEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

/** The Docker Engine API calls the name publisher makes; a fake stands in for it in tests. */
export interface DockerApi {
  /** GET of a JSON document (unversioned path: the daemon's own API version). */
  get(path: string): Promise<unknown>;
  /** Streams events matching `filters` until `signal` aborts or the stream ends. */
  events(
    filters: Record<string, string[]>,
    onEvent: (event: DockerEvent) => void,
    signal: AbortSignal,
  ): Promise<void>;
}

/**
 * Whether the user granted the Docker API: pointed the `docker-api` mount at a directory of
 * their own (`docker plugin set switchyard:latest docker-api.source=/run`). Its default source
 * is the state directory, which holds no socket: the same directory as the state mount.
 */
export async function dockerApiGranted(socketPath: string, stateDir: string): Promise<boolean> {
  const [mount, state] = await Promise.all([
    stat(dirname(socketPath)).catch(() => undefined),
    stat(stateDir).catch(() => undefined),
  ]);
  if (mount === undefined) return false;
  return state === undefined || mount.dev !== state.dev || mount.ino !== state.ino;
}

/** A reply larger than this is refused rather than buffered (an inspect is a few kB). */
const MAX_REPLY_BYTES = 8 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * The Docker Engine API over dockerd's Unix socket. Used only from background tasks, never
 * from a plugin request: dockerd may be waiting on the plugin when the request arrives.
 */
export class SocketDockerApi implements DockerApi {
  readonly #socketPath: string;

  constructor(socketPath: string) {
    this.#socketPath = socketPath;
  }

  get(path: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const call = request(
        { socketPath: this.#socketPath, path, method: "GET", timeout: REQUEST_TIMEOUT_MS },
        (response) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_REPLY_BYTES) {
              response.destroy(new Error(`Docker API ${path}: reply larger than 8 MiB`));
              return;
            }
            chunks.push(chunk);
          });
          response.on("error", reject);
          response.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            if ((response.statusCode ?? 0) >= 300) {
              reject(new DockerApiError(path, response.statusCode ?? 0, text.trim()));
              return;
            }
            try {
              resolve(JSON.parse(text));
            } catch {
              reject(new Error(`Docker API ${path}: reply is not JSON`));
            }
          });
        },
      );
      call.on("timeout", () => call.destroy(new Error(`Docker API ${path}: no reply in 10 s`)));
      call.on("error", reject);
      call.end();
    });
  }

  events(
    filters: Record<string, string[]>,
    onEvent: (event: DockerEvent) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const path = `/events?filters=${encodeURIComponent(JSON.stringify(filters))}`;
    return new Promise((resolve, reject) => {
      const call = request(
        { socketPath: this.#socketPath, path, method: "GET", signal },
        (response) => {
          if ((response.statusCode ?? 0) >= 300) {
            response.resume();
            reject(new DockerApiError(path, response.statusCode ?? 0, ""));
            return;
          }
          let pending = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => {
            pending += chunk;
            // One JSON object per line; a line longer than the cap is a broken stream.
            if (pending.length > MAX_REPLY_BYTES) {
              response.destroy(new Error("Docker API /events: line larger than 8 MiB"));
              return;
            }
            let newline = pending.indexOf("\n");
            while (newline >= 0) {
              const line = pending.slice(0, newline).trim();
              pending = pending.slice(newline + 1);
              if (line !== "") {
                try {
                  onEvent(JSON.parse(line) as DockerEvent);
                } catch {
                  // A line that is not JSON is skipped; the periodic resync covers it.
                }
              }
              newline = pending.indexOf("\n");
            }
          });
          response.on("error", (error) => (signal.aborted ? resolve() : reject(error)));
          response.on("end", () => resolve());
        },
      );
      call.on("error", (error) => (signal.aborted ? resolve() : reject(error)));
      call.end();
    });
  }
}

/** A Docker API call answered with an error status. */
export class DockerApiError extends Error {
  readonly status: number;

  constructor(path: string, status: number, body: string) {
    super(`Docker API ${path}: HTTP ${status}${body === "" ? "" : `: ${body.slice(0, 200)}`}`);
    this.status = status;
  }
}
