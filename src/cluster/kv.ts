/** One key and its value as the store returns them. */
export interface KeyValue {
  key: string;
  value: string;
  /** The lease the key is attached to, when it has one. */
  lease?: string;
}

/** What a watch reports. A DELETE carries an empty value. */
export interface WatchEvent {
  type: "PUT" | "DELETE";
  key: string;
  value: string;
}

/** Keys under a prefix and the store revision they were read at (to watch from). */
export interface Snapshot {
  entries: KeyValue[];
  revision: string;
}

/**
 * One condition of a transaction, on one key or (with `prefix`) on every key that has `key` as
 * prefix, as etcd's Compare with a `range_end`. Revisions and versions of a missing key are 0;
 * over a prefix with no keys the condition holds, except on "value", which never holds for
 * a missing key (etcd cannot tell a missing value from an empty one).
 */
export interface Compare {
  key: string;
  prefix?: boolean;
  /** The key's value, its version (writes since created), create or last-modify revision. */
  target: "value" | "version" | "createRevision" | "modRevision";
  result: "=" | "!=" | "<" | ">";
  /** A value, or a number in decimal for the other targets. */
  operand: string;
}

/** One write of a transaction. */
export type TxnOperation =
  | { type: "put"; key: string; value: string; lease?: string }
  | { type: "delete"; key: string; prefix?: boolean };

/** etcd's compare-and-swap: when every compare holds the success writes run, else failure's. */
export interface Txn {
  compare: Compare[];
  success: TxnOperation[];
  failure?: TxnOperation[];
}

/** Whether the compares held, and the store revision after the transaction. */
export interface TxnResult {
  succeeded: boolean;
  revision: string;
}

/**
 * The shared key-value store multi-host networks keep their state in: etcd v3's model
 * (revisions, transactions, leases, watches), narrowed to what ClusterService
 * uses, so the overlay logic runs against etcd in production and an in-memory fake in tests.
 */
export interface KeyValueStore {
  /** Every key with the prefix, in key order. */
  range(prefix: string): Promise<KeyValue[]>;
  /** Every key with the prefix and the revision they were read at. */
  snapshot(prefix: string): Promise<Snapshot>;
  /** One key's value, or undefined. */
  get(key: string): Promise<string | undefined>;
  /** Sets a key; with a lease the key goes when the lease does, without one it stays. */
  put(key: string, value: string, lease?: string): Promise<void>;
  /** Creates the key only if it does not exist (atomically); true when this call created it. */
  create(key: string, value: string, lease?: string): Promise<boolean>;
  /** Deletes a key; a missing key is no error. */
  delete(key: string): Promise<void>;
  /** Deletes every key with the prefix. */
  deletePrefix(prefix: string): Promise<void>;
  /**
   * Runs the compares and then the success (or failure) writes in one atomic step: one
   * revision, and no other write in between.
   */
  txn(request: Txn): Promise<TxnResult>;
  /** A lease that expires `ttlSeconds` after its last keep-alive. */
  grantLease(ttlSeconds: number): Promise<string>;
  /** Renews a lease; false when the store no longer knows it (it expired). */
  keepAlive(lease: string): Promise<boolean>;
  /** Ends a lease now, deleting its keys. */
  revokeLease(lease: string): Promise<void>;
  /**
   * Reports changes under the prefix made after `afterRevision` (or after now) until `signal`
   * aborts. Resolves when the stream ends for any reason: callers re-list and watch again.
   */
  watch(
    prefix: string,
    onEvent: (event: WatchEvent) => void,
    signal: AbortSignal,
    afterRevision?: string,
  ): Promise<void>;
}
