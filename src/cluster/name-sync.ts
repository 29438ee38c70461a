import type { Logger } from "pino";
import type { KeyValue, KeyValueStore } from "./kv.ts";
import type { NameRecord } from "./published-names.ts";

// This host's names in etcd, reconciled rather than remembered: the desired set per network
// is the truth, and passes make etcd's entries under the host's prefix equal to it: on every
// change, after a new lease, periodically, and again with backoff after a failure.

/** One write of a names pass. */
export type NameWrite =
  | { type: "put"; key: string; value: string }
  | { type: "delete"; key: string };

/** The value a host publishes for one endpoint. */
export const nameValue = (record: NameRecord): string =>
  JSON.stringify({ names: record.names, ipv4: record.ipv4 });

/**
 * The writes that make the entries under `prefix` (one host's names on one network) exactly
 * `desired`, each on `lease`: a put for each endpoint missing, different or on another lease
 * (an earlier process's), a delete for every other entry. Pure.
 */
export function planNameWrites(
  desired: ReadonlyMap<string, NameRecord>,
  present: readonly KeyValue[],
  prefix: string,
  lease: string,
): NameWrite[] {
  const found = new Map(present.map((entry) => [entry.key, entry]));
  const puts: NameWrite[] = [];
  for (const [endpointId, record] of desired) {
    const key = `${prefix}${endpointId}`;
    const value = nameValue(record);
    const entry = found.get(key);
    if (entry?.value !== value || entry.lease !== lease) puts.push({ type: "put", key, value });
  }
  const wanted = new Set([...desired.keys()].map((endpointId) => `${prefix}${endpointId}`));
  const deletes: NameWrite[] = present
    .filter((entry) => !wanted.has(entry.key))
    .map((entry) => ({ type: "delete", key: entry.key }));
  return [...puts, ...deletes];
}

/** Name writes of one pass in flight at once. */
const NAME_WRITES_AT_ONCE = 16;

/**
 * One names pass: lists the entries under `prefix` (one host's names on one network) and
 * writes what differs from `desired`, on `lease`. Every write is tried; rejects with the
 * first failure.
 */
export async function writeNames(
  kv: KeyValueStore,
  prefix: string,
  lease: string,
  desired: ReadonlyMap<string, NameRecord>,
): Promise<void> {
  const writes = planNameWrites(desired, await kv.range(prefix), prefix, lease);
  let failure: { error: unknown } | undefined;
  for (let from = 0; from < writes.length; from += NAME_WRITES_AT_ONCE) {
    const results = await Promise.allSettled(
      writes
        .slice(from, from + NAME_WRITES_AT_ONCE)
        .map((write) =>
          write.type === "put" ? kv.put(write.key, write.value, lease) : kv.delete(write.key),
        ),
    );
    for (const result of results) {
      if (result.status === "rejected") failure ??= { error: result.reason };
    }
  }
  if (failure !== undefined) throw failure.error;
}

/** A network whose names etcd does not hold as wanted, and why (the last pass's error). */
export interface NamesOutOfSync {
  vni: number;
  reason: string;
}

/** One network's names: what is wanted, and the passes' state. */
interface NetworkNames {
  desired: Map<string, NameRecord>;
  /**
   * Whether this host said which names it has here since joining. Until then etcd is left
   * alone: names an earlier process published stay (on its lease) rather than vanish at
   * start-up before they are published again.
   */
  known: boolean;
  closed: boolean;
  running: Promise<void> | undefined;
  /** The desired set changed (or a pass was asked for) while a pass ran: run another. */
  again: boolean;
  /** True once a pass succeeded and nothing changed since. */
  inSync: boolean;
  timer: NodeJS.Timeout | undefined;
  failures: number;
  reason: string | undefined;
  /** Callers of {@link NameSync.settled}: resolved by a pass that succeeds, or by the close. */
  waiters: (() => void)[];
}

/**
 * Keeps this host's names in etcd equal to the desired set, one network at a time: each
 * network has its own passes and timer, so one network's failure never holds up another's.
 * The pass itself (list, put, delete in etcd: {@link writeNames} on the cluster's lease) is
 * given in; this holds what is wanted and when to run it.
 */
export class NameSync {
  readonly #pass: (vni: number, desired: ReadonlyMap<string, NameRecord>) => Promise<void>;
  readonly #logger: Logger;
  readonly #retryDelay: (failures: number) => number;
  readonly #resyncMs: number;
  readonly #networks = new Map<number, NetworkNames>();

  constructor(deps: {
    /** Makes etcd's entries equal to `desired`; rejects when any write failed. */
    pass: (vni: number, desired: ReadonlyMap<string, NameRecord>) => Promise<void>;
    logger: Logger;
    /** The wait before the next pass after `failures` failed ones. */
    retryDelay: (failures: number) => number;
    /** The wait between passes while they succeed. */
    resyncMs: number;
  }) {
    this.#pass = deps.pass;
    this.#logger = deps.logger;
    this.#retryDelay = deps.retryDelay;
    this.#resyncMs = deps.resyncMs;
  }

  /**
   * Starts keeping a joined network's names (a no-op when already open). `known`: the set is
   * known to be empty (a network created here), so names left in etcd go at once.
   */
  open(vni: number, known: boolean): void {
    let network = this.#networks.get(vni);
    if (network === undefined) {
      network = {
        desired: new Map(),
        known: false,
        closed: false,
        running: undefined,
        again: false,
        inSync: false,
        timer: undefined,
        failures: 0,
        reason: undefined,
        waiters: [],
      };
      this.#networks.set(vni, network);
    }
    if (known && !network.known) {
      network.known = true;
      network.desired.clear();
      this.#run(vni, network);
    }
  }

  /**
   * Replaces the network's desired set and runs a pass. The same set again is no change: the
   * periodic pass (or the retry of a failed one) is what compares it with etcd then, so the
   * publisher can hand over its whole set on every change without a pass per network each time.
   */
  set(vni: number, records: ReadonlyMap<string, NameRecord>): void {
    const network = this.#networks.get(vni);
    if (network === undefined) return;
    if (network.known && sameRecords(network.desired, records)) return;
    network.desired = new Map(records);
    this.#changed(vni, network);
  }

  /** Runs a pass now (after a new lease, say), for a network whose set is known. */
  kick(vni: number): void {
    const network = this.#networks.get(vni);
    if (network !== undefined) this.#run(vni, network);
  }

  /**
   * Resolves once etcd holds the network's desired set as it is now (at once when it does,
   * or when the network is not kept or its set not known yet; also when it is closed).
   */
  settled(vni: number): Promise<void> {
    const network = this.#networks.get(vni);
    if (network === undefined || !network.known) return Promise.resolve();
    if (network.inSync && network.running === undefined) return Promise.resolve();
    return new Promise((resolve) => network.waiters.push(resolve));
  }

  /** Networks whose last pass failed, and why. */
  outOfSync(): NamesOutOfSync[] {
    return [...this.#networks]
      .filter(([, network]) => network.reason !== undefined)
      .map(([vni, network]) => ({ vni, reason: network.reason ?? "" }))
      .sort((a, b) => a.vni - b.vni);
  }

  /** Stops keeping a network's names (left); resolves once its pass in flight has ended. */
  async close(vni: number): Promise<void> {
    const network = this.#networks.get(vni);
    if (network === undefined) return;
    this.#networks.delete(vni);
    this.#end(network);
    await network.running;
  }

  /** Stops every network's passes (at shutdown). */
  stop(): void {
    for (const network of this.#networks.values()) this.#end(network);
    this.#networks.clear();
  }

  #end(network: NetworkNames): void {
    network.closed = true;
    clearTimeout(network.timer);
    network.timer = undefined;
    for (const resolve of network.waiters.splice(0)) resolve();
  }

  #changed(vni: number, network: NetworkNames): void {
    network.known = true;
    network.inSync = false;
    this.#run(vni, network);
  }

  #run(vni: number, network: NetworkNames): void {
    if (!network.known || network.closed) return;
    if (network.running !== undefined) {
      network.again = true;
      return;
    }
    clearTimeout(network.timer);
    network.timer = undefined;
    network.running = this.#passes(vni, network);
  }

  /** Passes until one succeeds with nothing changed meanwhile, or one fails; then the timer. */
  async #passes(vni: number, network: NetworkNames): Promise<void> {
    let failure: { error: unknown } | undefined;
    do {
      network.again = false;
      try {
        await this.#pass(vni, new Map(network.desired));
        failure = undefined;
      } catch (error) {
        failure = { error };
      }
    } while (failure === undefined && network.again && !network.closed);
    network.running = undefined;
    if (network.closed) return;
    if (failure === undefined) {
      if (network.reason !== undefined) {
        this.#logger.info({ vni }, "this host's names in etcd are up to date again");
      }
      network.failures = 0;
      network.reason = undefined;
      network.inSync = true;
      for (const resolve of network.waiters.splice(0)) resolve();
    } else {
      network.failures += 1;
      network.reason =
        failure.error instanceof Error ? failure.error.message : String(failure.error);
      network.inSync = false;
      this.#logger[network.failures === 1 ? "warn" : "debug"](
        { err: failure.error, vni, tries: network.failures },
        "cannot bring this host's names in etcd up to date; retrying",
      );
      // Waiters stay: they wait for etcd to agree, which a later pass brings.
    }
    // A change during a failed pass is tried at the retry, with the others.
    const delay = failure === undefined ? this.#resyncMs : this.#retryDelay(network.failures);
    network.timer = setTimeout(() => this.#run(vni, network), delay);
    network.timer.unref();
  }
}

/** Whether two desired sets name the same endpoints with the same names and address. */
function sameRecords(
  a: ReadonlyMap<string, NameRecord>,
  b: ReadonlyMap<string, NameRecord>,
): boolean {
  if (a.size !== b.size) return false;
  for (const [endpointId, record] of a) {
    const other = b.get(endpointId);
    if (other === undefined || other.ipv4 !== record.ipv4) return false;
    if (other.names.length !== record.names.length) return false;
    if (other.names.some((name, index) => name !== record.names[index])) return false;
  }
  return true;
}
