import { notFound } from "../errors.ts";
import { AddressSpaces, type PoolRequest } from "./address-space.ts";
import type { IpamSettings } from "./defaults.ts";
import {
  type AddressRequest,
  allocateAddress,
  allocateNamedAddress,
  freeAddress,
  isAddressAllocated,
  type PoolInfo,
  type PoolState,
  poolInfo,
} from "./pool.ts";
import { formatPrefix } from "./prefix.ts";
import {
  type IpamSnapshot,
  type PoolSnapshot,
  restoreSnapshot,
  snapshotPool,
  snapshotPools,
} from "./snapshot.ts";
import { UndoLog } from "./undo-log.ts";

export type { PoolRequest } from "./address-space.ts";
export type { DefaultPool, IpamSettings } from "./defaults.ts";
export { defaultIpamSettings, parseDefaultPools } from "./defaults.ts";
export type { AddressRequest, PoolInfo } from "./pool.ts";
export type { IpamSnapshot, PoolSnapshot } from "./snapshot.ts";

/**
 * Switchyard's address allocator: pools per address space, addresses per pool in a sparse
 * bitmap. Pure (no I/O, clock or randomness); every method either succeeds or throws a
 * SwitchyardError and changes nothing.
 */
export class Ipam {
  static readonly localAddressSpace = "LocalDefault";
  static readonly globalAddressSpace = "GlobalDefault";

  readonly #spaces: AddressSpaces;
  readonly #log = new UndoLog();

  /** Throws badRequest on bad default pools, internal on a snapshot that cannot be restored. */
  constructor(settings: IpamSettings, snapshot?: IpamSnapshot) {
    this.#spaces = new AddressSpaces(settings);
    if (snapshot !== undefined) restoreSnapshot(snapshot, this.#spaces);
  }

  /** Reserves an explicit pool, or the first free default subnet when `pool` is empty. */
  requestPool(req: PoolRequest): { poolId: string; pool: string } {
    const { result: pool, undo } = this.#spaces.request(req);
    this.#log.record(pool.poolId, undo);
    return { poolId: pool.poolId, pool: formatPrefix(pool.prefix) };
  }

  /** Forgets a pool and every address allocated in it. */
  releasePool(poolId: string): void {
    const undo = this.#spaces.release(this.#getPool(poolId), this.#log.recording);
    this.#log.record(poolId, undo ?? (() => {}));
  }

  /**
   * Allocates an address and returns it with the pool's length ("10.15.20.5/24").
   * An explicit address may lie anywhere in the pool (outside the IP range too, as Docker
   * allows for --ip, --gateway and --aux-address). A gateway without an address gets the
   * first free host of the whole pool (network+1 unless taken). Otherwise the search runs
   * onward from the last automatic allocation through the IP range and wraps once, so a
   * just-released address is not handed out again at once.
   */
  requestAddress(poolId: string, req: AddressRequest): string {
    const { result, undo } = allocateAddress(this.#getPool(poolId), req);
    this.#log.record(poolId, undo);
    return result;
  }

  /**
   * An automatic address for a container name in a sticky pool: the one kept for the name when
   * it is free; else the next free address no other name keeps; else, when only kept addresses
   * are free, the least recently used one, taken from its name (`takenFrom`, for the log).
   * The address is then kept for `name`. In a pool that is not sticky, the name is not used.
   */
  requestNamedAddress(poolId: string, name: string): { address: string; takenFrom?: string } {
    const { result, undo } = allocateNamedAddress(this.#getPool(poolId), name);
    this.#log.record(poolId, undo);
    return result;
  }

  /** Frees an address; one that is not allocated is fine (Docker retries), one outside is not. */
  releaseAddress(poolId: string, address: string): void {
    const undo = freeAddress(this.#getPool(poolId), address);
    if (undo !== undefined) this.#log.record(poolId, undo);
  }

  /** A deep, JSON-serialisable copy; `new Ipam(settings, snapshot)` restores it exactly. */
  snapshot(): IpamSnapshot {
    return snapshotPools(this.#spaces.pools());
  }

  /** One pool's part of {@link snapshot}, or undefined when there is no such pool. */
  poolSnapshot(poolId: string): PoolSnapshot | undefined {
    const pool = this.#spaces.get(poolId);
    return pool === undefined ? undefined : snapshotPool(pool);
  }

  /**
   * Starts (or continues) recording changes so they can be undone, and returns a mark to undo
   * back to with {@link rollbackTo}. Recording lasts until {@link settle}.
   */
  savepoint(): number {
    return this.#log.savepoint();
  }

  /** Undoes every change made since the savepoint, newest first. */
  rollbackTo(savepoint: number): void {
    this.#log.rollbackTo(savepoint);
  }

  /**
   * The IDs of the pools changed since the last {@link settle} (undone changes included): what
   * a store has to write again, not every pool.
   */
  changedPools(): string[] {
    return this.#log.changedPools();
  }

  /** Ends recording: the changes so far can no longer be undone, and none counts as changed. */
  settle(): void {
    this.#log.settle();
  }

  /** The pool with this ID, or undefined. */
  pool(poolId: string): PoolInfo | undefined {
    const pool = this.#spaces.get(poolId);
    return pool === undefined ? undefined : poolInfo(pool);
  }

  /** Every pool, in the order they were requested. */
  pools(): PoolInfo[] {
    return [...this.#spaces.pools()].map(poolInfo);
  }

  /**
   * True when the address is allocated in the pool; false for one outside it.
   * Throws notFound for an unknown pool, badRequest for a malformed address.
   */
  isAllocated(poolId: string, address: string): boolean {
    return isAddressAllocated(this.#getPool(poolId), address);
  }

  #getPool(poolId: string): PoolState {
    const pool = this.#spaces.get(poolId);
    if (pool === undefined) throw notFound(`no such pool "${poolId}"`);
    return pool;
  }
}
