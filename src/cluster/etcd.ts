import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { internal, SwitchyardError } from "../errors.ts";
import type {
  Compare,
  KeyValue,
  KeyValueStore,
  Snapshot,
  Txn,
  TxnOperation,
  TxnResult,
  WatchEvent,
} from "./kv.ts";

/** TLS material for etcd client connections (files mounted into the plugin). */
export interface EtcdTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

const REQUEST_TIMEOUT_MS = 3_000;

/** Told of every round-trip: the operation (`kv/range`…), how it ended and how long it took. */
export type EtcdObserver = (operation: string, ok: boolean, seconds: number) => void;

const encode = (text: string): string => Buffer.from(text, "utf8").toString("base64");
const decode = (text: string | undefined): string =>
  text === undefined ? "" : Buffer.from(text, "base64").toString("utf8");

/** The key right after every key with this prefix: etcd's `range_end` for a prefix scan. */
function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, "utf8");
  for (let index = bytes.length - 1; index >= 0; index--) {
    const byte = bytes[index] ?? 0;
    if (byte < 0xff) {
      bytes[index] = byte + 1;
      return bytes.subarray(0, index + 1).toString("base64");
    }
  }
  return encode("\0");
}

const COMPARE_TARGETS = {
  value: ["VALUE", "value"],
  version: ["VERSION", "version"],
  createRevision: ["CREATE", "create_revision"],
  modRevision: ["MOD", "mod_revision"],
} as const;
const COMPARE_RESULTS = { "=": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER" } as const;

/** A compare as etcd's JSON gateway takes it. */
function wireCompare(compare: Compare): Record<string, string> {
  const [target, field] = COMPARE_TARGETS[compare.target];
  return {
    key: encode(compare.key),
    ...(compare.prefix ? { range_end: prefixEnd(compare.key) } : {}),
    target,
    result: COMPARE_RESULTS[compare.result],
    [field]: compare.target === "value" ? encode(compare.operand) : compare.operand,
  };
}

/** A transaction's write as etcd's JSON gateway takes it. */
function wireOperation(operation: TxnOperation): Record<string, unknown> {
  if (operation.type === "put") {
    return {
      request_put: {
        key: encode(operation.key),
        value: encode(operation.value),
        ...(operation.lease === undefined ? {} : { lease: operation.lease }),
      },
    };
  }
  return {
    request_delete_range: {
      key: encode(operation.key),
      ...(operation.prefix ? { range_end: prefixEnd(operation.key) } : {}),
    },
  };
}

interface RawKv {
  key?: string;
  value?: string;
  lease?: string;
}

/**
 * A small etcd v3 client over etcd's JSON gateway (`/v3/...`, HTTP/1.1), which etcd 3.4+
 * serves on its client port. It needs no gRPC stack: the plugin's rootfs stays small and
 * the few calls Switchyard makes (range, put, txn, leases, watch) are plain JSON.
 */
export class EtcdClient implements KeyValueStore {
  readonly #endpoints: URL[];
  readonly #tls: EtcdTls;
  readonly #observe: EtcdObserver | undefined;
  #preferred = 0;

  constructor(endpoints: string[], tls: EtcdTls = {}, observe?: EtcdObserver) {
    if (endpoints.length === 0) throw internal("no etcd endpoint given");
    this.#endpoints = endpoints.map((endpoint) => new URL(endpoint));
    this.#tls = tls;
    this.#observe = observe;
  }

  /** Every key with the prefix, in key order. */
  async range(prefix: string): Promise<KeyValue[]> {
    return (await this.snapshot(prefix)).entries;
  }

  /** Every key with the prefix and the store revision they were read at (to watch from). */
  async snapshot(prefix: string): Promise<Snapshot> {
    const answer = await this.#call("/v3/kv/range", {
      key: encode(prefix),
      range_end: prefixEnd(prefix),
    });
    const revision = String((answer.header as { revision?: string } | undefined)?.revision ?? "0");
    const entries = ((answer.kvs as RawKv[] | undefined) ?? []).map((kv) => ({
      key: decode(kv.key),
      value: decode(kv.value),
      ...(kv.lease === undefined ? {} : { lease: kv.lease }),
    }));
    return { entries, revision };
  }

  /** One key's value, or undefined. */
  async get(key: string): Promise<string | undefined> {
    const answer = await this.#call("/v3/kv/range", { key: encode(key) });
    const [kv] = (answer.kvs as RawKv[] | undefined) ?? [];
    return kv === undefined ? undefined : decode(kv.value);
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.#call("/v3/kv/put", {
      key: encode(key),
      value: encode(value),
      ...(lease === undefined ? {} : { lease }),
    });
  }

  /** Creates the key only if it does not exist; returns true when this call created it. */
  async create(key: string, value: string, lease?: string): Promise<boolean> {
    const answer = await this.#call("/v3/kv/txn", {
      compare: [{ key: encode(key), target: "CREATE", result: "EQUAL", create_revision: "0" }],
      success: [
        {
          request_put: {
            key: encode(key),
            value: encode(value),
            ...(lease === undefined ? {} : { lease }),
          },
        },
      ],
    });
    return answer.succeeded === true;
  }

  async delete(key: string): Promise<void> {
    await this.#call("/v3/kv/deleterange", { key: encode(key) });
  }

  async deletePrefix(prefix: string): Promise<void> {
    await this.#call("/v3/kv/deleterange", { key: encode(prefix), range_end: prefixEnd(prefix) });
  }

  /** Compares, then the success or failure writes, atomically (etcd's `txn`). */
  async txn(request: Txn): Promise<TxnResult> {
    const answer = await this.#call("/v3/kv/txn", {
      compare: request.compare.map(wireCompare),
      success: request.success.map(wireOperation),
      failure: (request.failure ?? []).map(wireOperation),
    });
    const revision = String((answer.header as { revision?: string } | undefined)?.revision ?? "0");
    return { succeeded: answer.succeeded === true, revision };
  }

  /** A lease that expires `ttlSeconds` after its last keep-alive. */
  async grantLease(ttlSeconds: number): Promise<string> {
    const answer = await this.#call("/v3/lease/grant", { TTL: String(ttlSeconds) });
    return String(answer.ID);
  }

  /** Renews a lease; false when etcd no longer knows it (it expired). */
  async keepAlive(lease: string): Promise<boolean> {
    const answer = await this.#call("/v3/lease/keepalive", { ID: lease });
    const result = answer.result as { TTL?: string } | undefined;
    return result?.TTL !== undefined && Number(result.TTL) > 0;
  }

  async revokeLease(lease: string): Promise<void> {
    await this.#call("/v3/lease/revoke", { ID: lease });
  }

  /**
   * Watches a prefix until `signal` aborts, calling `onEvent` for each change. Returns when
   * the stream ends (etcd restarted, connection lost): callers re-list and watch again.
   */
  watch(
    prefix: string,
    onEvent: (event: WatchEvent) => void,
    signal: AbortSignal,
    afterRevision?: string,
  ): Promise<void> {
    const endpoint = this.#endpoints[this.#preferred] ?? this.#endpoints[0];
    if (endpoint === undefined) return Promise.resolve();
    return new Promise((resolve) => {
      // Starting right after the revision a listing was read at, no change in between is missed.
      const start =
        afterRevision === undefined ? {} : { start_revision: String(BigInt(afterRevision) + 1n) };
      const body = JSON.stringify({
        create_request: { key: encode(prefix), range_end: prefixEnd(prefix), ...start },
      });
      const req = this.#request(endpoint, "/v3/watch", body, undefined, (res) => {
        let buffer = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffer += chunk;
          let newline = buffer.indexOf("\n");
          while (newline >= 0) {
            const line = buffer.slice(0, newline).trim();
            buffer = buffer.slice(newline + 1);
            newline = buffer.indexOf("\n");
            if (line === "") continue;
            try {
              const message = JSON.parse(line) as {
                result?: { events?: { type?: string; kv?: RawKv }[] };
              };
              for (const event of message.result?.events ?? []) {
                onEvent({
                  type: event.type === "DELETE" ? "DELETE" : "PUT",
                  key: decode(event.kv?.key),
                  value: decode(event.kv?.value),
                });
              }
            } catch {
              // A partial or unexpected line: the next re-list puts things right.
            }
          }
        });
        res.on("end", () => resolve());
        res.on("error", () => resolve());
      });
      req.on("error", () => resolve());
      signal.addEventListener("abort", () => {
        req.destroy();
        resolve();
      });
      req.end(body);
    });
  }

  /** POSTs to the first endpoint that answers, starting with the one that worked last. */
  async #call(path: string, payload: unknown): Promise<Record<string, unknown>> {
    const start = process.hrtime.bigint();
    const operation = path.replace(/^\/v3\//, "");
    const seconds = () => Number(process.hrtime.bigint() - start) / 1e9;
    try {
      const answer = await this.#callAny(path, payload);
      this.#observe?.(operation, true, seconds());
      return answer;
    } catch (error) {
      this.#observe?.(operation, false, seconds());
      throw error;
    }
  }

  async #callAny(path: string, payload: unknown): Promise<Record<string, unknown>> {
    const body = JSON.stringify(payload);
    let lastError: unknown;
    for (let attempt = 0; attempt < this.#endpoints.length; attempt++) {
      const index = (this.#preferred + attempt) % this.#endpoints.length;
      const endpoint = this.#endpoints[index];
      if (endpoint === undefined) continue;
      try {
        const answer = await this.#post(endpoint, path, body);
        this.#preferred = index;
        return answer;
      } catch (error) {
        lastError = error;
      }
    }
    const reason = lastError instanceof Error ? lastError.message : String(lastError);
    throw new SwitchyardError(
      "Internal",
      `etcd is unreachable (${this.#endpoints.map((endpoint) => endpoint.origin).join(", ")}): ${reason}`,
      { cause: lastError },
    );
  }

  #post(endpoint: URL, path: string, body: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const req = this.#request(endpoint, path, body, REQUEST_TIMEOUT_MS, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: Record<string, unknown>;
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            reject(new Error(`etcd answered ${res.statusCode}: ${text.slice(0, 200)}`));
            return;
          }
          if ((res.statusCode ?? 500) >= 300) {
            reject(
              new Error(
                `etcd answered ${res.statusCode}: ${String(parsed.message ?? parsed.error ?? text)}`,
              ),
            );
            return;
          }
          resolve(parsed);
        });
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  #request(
    endpoint: URL,
    path: string,
    body: string,
    timeout: number | undefined,
    onResponse: (res: import("node:http").IncomingMessage) => void,
  ) {
    const options = {
      method: "POST",
      // URL keeps an IPv6 literal's brackets ("[fd00::1]"), which name no host to connect to.
      host: endpoint.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: endpoint.port || (endpoint.protocol === "https:" ? 443 : 2379),
      path,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      ...(timeout === undefined ? {} : { timeout }),
    };
    return endpoint.protocol === "https:"
      ? httpsRequest(
          { ...options, ca: this.#tls.ca, cert: this.#tls.cert, key: this.#tls.key },
          onResponse,
        )
      : httpRequest(options, onResponse);
  }
}
