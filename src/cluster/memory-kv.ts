import { internal } from "../errors.ts";
import type { KeyValue, KeyValueStore, Snapshot, WatchEvent } from "./kv.ts";

/** A store call by name, to make just that kind of call fail. */
export type KeyValueOperation = keyof KeyValueStore;

interface Entry {
  value: string;
  lease: string | undefined;
}

interface Lease {
  ttlSeconds: number;
  expiresAt: number;
  keys: Set<string>;
}

/** One event in the store's history, at the revision that made it. */
interface Change extends WatchEvent {
  revision: number;
}

interface Watcher {
  prefix: string;
  onEvent: (event: WatchEvent) => void;
  /** The first revision this watcher has not been told about yet. */
  next: number;
  end: () => void;
}

const byKey = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/**
 * An in-memory {@link KeyValueStore} that behaves as etcd does for what Switchyard uses, so
 * several ClusterService instances (hosts) can share one in a unit test: every write bumps the
 * revision once (a lease's end or a prefix delete is one write), create-if-absent is atomic,
 * keys on a lease go when it ends, and watches replay history from a revision. Calls answer
 * on a later turn of the event loop, as a network store would, so concurrent callers interleave.
 *
 * Time stands still unless a test calls {@link advance}; {@link expireLease} ends a lease at
 * once. {@link unavailable} and {@link failing} make calls reject, as when etcd is away.
 */
export class MemoryKeyValueStore implements KeyValueStore {
  /** Kinds of call that reject while listed (the rest keep working). */
  readonly failing = new Set<KeyValueOperation>();
  readonly #entries = new Map<string, Entry>();
  readonly #leases = new Map<string, Lease>();
  readonly #history: Change[] = [];
  readonly #watchers = new Set<Watcher>();
  #revision = 1;
  #nextLease = 7_000;
  #now = 0;
  #unavailable = false;
  #flushScheduled = false;

  /** While true every call rejects; setting it ends open watches, as a lost connection does. */
  get unavailable(): boolean {
    return this.#unavailable;
  }

  set unavailable(value: boolean) {
    this.#unavailable = value;
    if (value) for (const watcher of [...this.#watchers]) watcher.end();
  }

  /** The current revision (etcd's header revision). */
  get revision(): string {
    return String(this.#revision);
  }

  /** Ids of the leases the store still knows. */
  get leases(): string[] {
    return [...this.#leases.keys()];
  }

  /** Moves the store's clock on; leases not kept alive within their TTL end, with their keys. */
  advance(seconds: number): void {
    this.#now += seconds;
    for (const [id, lease] of [...this.#leases]) {
      if (lease.expiresAt <= this.#now) this.#endLease(id);
    }
  }

  /** Ends a lease now, as its TTL running out would. */
  expireLease(id: string): void {
    if (!this.#leases.has(id)) throw new Error(`no lease ${id} to expire`);
    this.#endLease(id);
  }

  async range(prefix: string): Promise<KeyValue[]> {
    return (await this.snapshot(prefix)).entries;
  }

  async snapshot(prefix: string): Promise<Snapshot> {
    await this.#enter("snapshot");
    const entries = [...this.#entries]
      .filter(([key]) => key.startsWith(prefix))
      .sort(([a], [b]) => byKey(a, b))
      .map(([key, entry]) => ({
        key,
        value: entry.value,
        ...(entry.lease === undefined ? {} : { lease: entry.lease }),
      }));
    return { entries, revision: this.revision };
  }

  async get(key: string): Promise<string | undefined> {
    await this.#enter("get");
    return this.#entries.get(key)?.value;
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.#enter("put");
    this.#set(key, value, lease);
  }

  async create(key: string, value: string, lease?: string): Promise<boolean> {
    await this.#enter("create");
    // Compare and put run in one turn: no other call can come between them, as in a txn.
    if (this.#entries.has(key)) return false;
    this.#set(key, value, lease);
    return true;
  }

  async delete(key: string): Promise<void> {
    await this.#enter("delete");
    this.#remove([key]);
  }

  async deletePrefix(prefix: string): Promise<void> {
    await this.#enter("deletePrefix");
    this.#remove([...this.#entries.keys()].filter((key) => key.startsWith(prefix)));
  }

  async grantLease(ttlSeconds: number): Promise<string> {
    await this.#enter("grantLease");
    const id = String(this.#nextLease++);
    this.#leases.set(id, { ttlSeconds, expiresAt: this.#now + ttlSeconds, keys: new Set() });
    return id;
  }

  async keepAlive(lease: string): Promise<boolean> {
    await this.#enter("keepAlive");
    const known = this.#leases.get(lease);
    if (known === undefined) return false;
    known.expiresAt = this.#now + known.ttlSeconds;
    return true;
  }

  async revokeLease(lease: string): Promise<void> {
    await this.#enter("revokeLease");
    if (!this.#leases.has(lease)) throw internal(`etcd: requested lease ${lease} not found`);
    this.#endLease(lease);
  }

  async watch(
    prefix: string,
    onEvent: (event: WatchEvent) => void,
    signal: AbortSignal,
    afterRevision?: string,
  ): Promise<void> {
    await this.#enter("watch");
    if (signal.aborted) return;
    const next = afterRevision === undefined ? this.#revision + 1 : Number(afterRevision) + 1;
    await new Promise<void>((resolve) => {
      const watcher: Watcher = {
        prefix,
        onEvent,
        next,
        end: () => {
          this.#watchers.delete(watcher);
          signal.removeEventListener("abort", watcher.end);
          resolve();
        },
      };
      this.#watchers.add(watcher);
      signal.addEventListener("abort", watcher.end, { once: true });
      // Changes since `afterRevision` that are already history are replayed right away.
      this.#scheduleFlush();
    });
  }

  /** Answers on a later turn, and not at all (a rejection) while the store is away. */
  async #enter(operation: KeyValueOperation): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#unavailable || this.failing.has(operation)) {
      throw internal(`etcd is unreachable (memory store): ${operation} failed`);
    }
  }

  #set(key: string, value: string, lease: string | undefined): void {
    // etcd refuses a put on a lease it does not know (an expired one, say).
    const attachTo = lease === undefined ? undefined : this.#leases.get(lease);
    if (lease !== undefined && attachTo === undefined) {
      throw internal(`etcd: requested lease ${lease} not found`);
    }
    const previous = this.#entries.get(key);
    if (previous?.lease !== undefined) this.#leases.get(previous.lease)?.keys.delete(key);
    this.#entries.set(key, { value, lease });
    attachTo?.keys.add(key);
    this.#commit([{ type: "PUT", key, value }]);
  }

  /** Deletes the keys that exist in one write (one revision); nothing at all is no write. */
  #remove(keys: string[]): void {
    const events: WatchEvent[] = [];
    for (const key of keys.sort(byKey)) {
      const entry = this.#entries.get(key);
      if (entry === undefined) continue;
      this.#entries.delete(key);
      if (entry.lease !== undefined) this.#leases.get(entry.lease)?.keys.delete(key);
      events.push({ type: "DELETE", key, value: "" });
    }
    if (events.length > 0) this.#commit(events);
  }

  #endLease(id: string): void {
    const lease = this.#leases.get(id);
    this.#leases.delete(id);
    this.#remove([...(lease?.keys ?? [])]);
  }

  #commit(events: WatchEvent[]): void {
    this.#revision += 1;
    for (const event of events) this.#history.push({ ...event, revision: this.#revision });
    this.#scheduleFlush();
  }

  /** Tells watchers what happened since they last heard, on a later turn (as a stream would). */
  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const upTo = this.#revision;
      for (const watcher of [...this.#watchers]) {
        for (const change of this.#history) {
          if (!this.#watchers.has(watcher)) break;
          if (change.revision < watcher.next || change.revision > upTo) continue;
          if (!change.key.startsWith(watcher.prefix)) continue;
          watcher.onEvent({ type: change.type, key: change.key, value: change.value });
        }
        watcher.next = upTo + 1;
      }
    });
  }
}
