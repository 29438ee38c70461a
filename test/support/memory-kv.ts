import type {
  Compare,
  KeyValue,
  KeyValueStore,
  Snapshot,
  Txn,
  TxnOperation,
  TxnResult,
  WatchEvent,
} from "../../src/cluster/kv.ts";
import { internal } from "../../src/errors.ts";

/** A store call by name, to make just that kind of call fail. */
export type KeyValueOperation = keyof KeyValueStore;

interface Entry {
  value: string;
  lease: string | undefined;
  createRevision: number;
  modRevision: number;
  /** Writes since the key was created (1 after the create). */
  version: number;
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
  /** Open but told nothing any more, as a stream over a silently broken connection. */
  stalled: boolean;
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
 * once. {@link unavailable} and {@link failing} make calls reject, as when etcd is away;
 * {@link stallWatches} makes open watches go silent, as a partition nobody noticed does.
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

  /** Open watches stay open but hear of no change any more (a silent partition). */
  stallWatches(): void {
    for (const watcher of this.#watchers) watcher.stalled = true;
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

  async txn(request: Txn): Promise<TxnResult> {
    await this.#enter("txn");
    // Compares and writes run in one turn: no other call can come between them.
    const succeeded = request.compare.every((compare) => this.#holds(compare));
    this.#apply(succeeded ? request.success : (request.failure ?? []));
    return { succeeded, revision: this.revision };
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
        stalled: false,
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
    this.#apply([{ type: "put", key, value, ...(lease === undefined ? {} : { lease }) }]);
  }

  /** Deletes the keys that exist in one write (one revision); nothing at all is no write. */
  #remove(keys: string[]): void {
    this.#apply(keys.map((key) => ({ type: "delete", key })));
  }

  /** Whether one compare holds now, as etcd's applyCompare decides it. */
  #holds(compare: Compare): boolean {
    const keys = compare.prefix
      ? [...this.#entries.keys()].filter((key) => key.startsWith(compare.key))
      : this.#entries.has(compare.key)
        ? [compare.key]
        : [];
    if (keys.length === 0) {
      if (compare.target === "value") return false;
      return compareWith(compare, 0n);
    }
    return keys.every((key) => {
      const entry = this.#entries.get(key);
      if (entry === undefined) return false;
      switch (compare.target) {
        case "value":
          return compareWith(compare, BigInt(byKey(entry.value, compare.operand)), 0n);
        case "version":
          return compareWith(compare, BigInt(entry.version));
        case "createRevision":
          return compareWith(compare, BigInt(entry.createRevision));
        case "modRevision":
          return compareWith(compare, BigInt(entry.modRevision));
      }
      return false;
    });
  }

  /**
   * Applies writes as one revision (none when nothing changes). As etcd, a put on a lease the
   * store does not know fails the whole request, and one key put twice is refused.
   */
  #apply(operations: readonly TxnOperation[]): void {
    const puts = operations.filter((operation) => operation.type === "put");
    if (new Set(puts.map((operation) => operation.key)).size !== puts.length) {
      throw internal("etcdserver: duplicate key given in txn request");
    }
    for (const put of puts) {
      if (put.lease !== undefined && !this.#leases.has(put.lease)) {
        throw internal(`etcd: requested lease ${put.lease} not found`);
      }
    }
    const revision = this.#revision + 1;
    const events: WatchEvent[] = [];
    for (const operation of operations) {
      if (operation.type === "put") {
        const { key, value, lease } = operation;
        const previous = this.#entries.get(key);
        if (previous?.lease !== undefined) this.#leases.get(previous.lease)?.keys.delete(key);
        this.#entries.set(key, {
          value,
          lease,
          createRevision: previous?.createRevision ?? revision,
          modRevision: revision,
          version: (previous?.version ?? 0) + 1,
        });
        if (lease !== undefined) this.#leases.get(lease)?.keys.add(key);
        events.push({ type: "PUT", key, value });
        continue;
      }
      const keys = operation.prefix
        ? [...this.#entries.keys()].filter((key) => key.startsWith(operation.key))
        : [operation.key];
      for (const key of keys.sort(byKey)) {
        const entry = this.#entries.get(key);
        if (entry === undefined) continue;
        this.#entries.delete(key);
        if (entry.lease !== undefined) this.#leases.get(entry.lease)?.keys.delete(key);
        events.push({ type: "DELETE", key, value: "" });
      }
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
        if (watcher.stalled) continue;
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

/** `actual` against the compare's operand (or `against`, for values compared beforehand). */
function compareWith(compare: Compare, actual: bigint, against?: bigint): boolean {
  const operand = against ?? BigInt(compare.operand);
  switch (compare.result) {
    case "=":
      return actual === operand;
    case "!=":
      return actual !== operand;
    case "<":
      return actual < operand;
    case ">":
      return actual > operand;
  }
  return false;
}
