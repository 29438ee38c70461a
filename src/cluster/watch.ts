import type { Logger } from "pino";
import { formatAddress, tryParseAddress } from "../ipam/prefix.ts";
import { hostKey, hostsPrefix, keyBelow, namesPrefix, networkPrefix } from "./keys.ts";
import type { KeyValueStore } from "./kv.ts";
import { type PublishedName, parsePublishedName } from "./published-names.ts";

/** A watch that reports nothing for this long may hang on a dead connection: list again. */
const WATCH_IDLE_MS = 30_000;

/**
 * Follows the multi-host networks this host joined in etcd: tells the other hosts' VXLAN
 * addresses (the peers) and every host's published names, in full at the start and after
 * every re-list, then as they change; and, once a network is no longer followed, that it has
 * no names any more.
 */
export class NetworkWatcher {
  readonly #kv: KeyValueStore;
  readonly #logger: Logger;
  readonly #hostId: string;
  readonly #watchIdleMs: number;
  readonly #onPeers: (vni: number, peers: string[]) => void;
  readonly #onNames: (vni: number, names: PublishedName[]) => void;
  readonly #watches = new Map<number, AbortController>();

  constructor(deps: {
    kv: KeyValueStore;
    logger: Logger;
    /** This host, left out of the peers. */
    hostId: string;
    /** The other hosts' VXLAN addresses, sorted (the whole list each time). */
    onPeers: (vni: number, peers: string[]) => void;
    /** The names published by every host of a network (the whole list each time). */
    onNames: (vni: number, names: PublishedName[]) => void;
    /** How long a watch may say nothing before the network is listed again. */
    watchIdleMs?: number;
  }) {
    this.#kv = deps.kv;
    this.#logger = deps.logger;
    this.#hostId = deps.hostId;
    this.#onPeers = deps.onPeers;
    this.#onNames = deps.onNames;
    this.#watchIdleMs = deps.watchIdleMs ?? WATCH_IDLE_MS;
  }

  /** Stops following a network; its watch ends, and then tells it has no names. */
  unfollow(vni: number): void {
    this.#watches.get(vni)?.abort();
    this.#watches.delete(vni);
  }

  /** Stops following every network (at shutdown). */
  stop(): void {
    for (const watch of this.#watches.values()) watch.abort();
    this.#watches.clear();
  }

  /** Runs a listener; one that throws is logged and never breaks the watch that called it. */
  #tell(what: string, vni: number, listener: () => void): void {
    try {
      listener();
    } catch (error) {
      this.#logger.error({ err: error, vni }, `cannot take in the network's ${what} from etcd`);
    }
  }

  /**
   * Lists the network's hosts and published names, then watches for changes; lists again
   * whenever the watch breaks, and when it has said nothing for a while: a silent partition can
   * leave a stream open that never reports again, and listing (which times out) tells a live
   * etcd from a lost one. Following a network already followed is a no-op.
   */
  follow(vni: number): void {
    if (this.#watches.has(vni)) return;
    const controller = new AbortController();
    this.#watches.set(vni, controller);
    const base = networkPrefix(vni);
    /** The peers and names last told, and whether the last watch ended as it went quiet. */
    let toldPeers: string | undefined;
    let toldNames: string | undefined;
    let quiet = false;
    /** Malformed host entries already logged: each is logged once, not at every event. */
    const warned = new Set<string>();
    const warnMalformed = (key: string, value: string): void => {
      const seen = `${key}\n${value}`;
      if (warned.has(seen)) return;
      warned.add(seen);
      this.#logger.warn(
        { vni, key: key.slice(base.length), value: value.slice(0, 100) },
        "skipping a malformed peer in etcd (not a host key with an IPv4 address); the other peers are used",
      );
    };
    const loop = async (): Promise<void> => {
      while (!controller.signal.aborted) {
        const attempt = new AbortController();
        const stopAttempt = (): void => attempt.abort();
        controller.signal.addEventListener("abort", stopAttempt, { once: true });
        let timer: NodeJS.Timeout | undefined;
        const quietFrom = (): void => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            quiet = true;
            attempt.abort();
          }, this.#watchIdleMs);
          timer.unref();
        };
        const wasQuiet = quiet;
        quiet = false;
        try {
          /** Host ID → its VXLAN address, and `HOST/ENDPOINT` → its names, as etcd holds them. */
          const peers = new Map<string, string>();
          const names = new Map<string, string>();
          const remember = (
            into: Map<string, string>,
            below: string | undefined,
            value: string | undefined,
          ): void => {
            if (below === undefined) return;
            if (value === undefined) into.delete(below);
            else into.set(below, value);
          };
          const note = (key: string, value: string | undefined): void => {
            remember(peers, keyBelow(hostsPrefix(vni), key), value);
            remember(names, keyBelow(namesPrefix(vni), key), value);
          };
          const listing = await this.#kv.snapshot(base);
          for (const entry of listing.entries) note(entry.key, entry.value);
          // After a re-list that is not only a quiet spell's, tell all again (a resync);
          // otherwise tell only what changed.
          let force = !wasQuiet;
          const publish = (): void => {
            const peerList = [...peers.entries()]
              .filter(([hostId]) => hostId !== this.#hostId)
              .flatMap(([hostId, value]) => {
                const vtep = parsePeer(hostId, value);
                if (vtep === undefined) warnMalformed(hostKey(vni, hostId), value);
                return vtep === undefined ? [] : [vtep];
              })
              .sort();
            if (force || peerList.join() !== toldPeers) {
              toldPeers = peerList.join();
              this.#tell("peers", vni, () => this.#onPeers(vni, peerList));
            }
            const nameList = [...names.entries()].flatMap(([below, value]) => {
              const record = parsePublishedName(below, value);
              return record === undefined ? [] : [record];
            });
            const text = JSON.stringify(nameList);
            if (force || text !== toldNames) {
              toldNames = text;
              this.#tell("names", vni, () => this.#onNames(vni, nameList));
            }
            force = false;
          };
          publish();
          quietFrom();
          await this.#kv.watch(
            base,
            (event) => {
              quietFrom();
              note(event.key, event.type === "DELETE" ? undefined : event.value);
              publish();
            },
            attempt.signal,
            listing.revision,
          );
        } catch (error) {
          this.#logger.debug({ err: error, vni }, "watch of the network in etcd broke");
        } finally {
          clearTimeout(timer);
          controller.signal.removeEventListener("abort", stopAttempt);
        }
        if (quiet) {
          this.#logger.debug({ vni }, "no word from the etcd watch for a while; listing again");
          continue;
        }
        if (!controller.signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      // Left (or stopped): nobody on this host resolves the network's names any more, unless
      // the network was joined again meanwhile (its new watch reports them).
      if (!this.#watches.has(vni)) this.#tell("names", vni, () => this.#onNames(vni, []));
    };
    void loop();
  }
}

/**
 * A host registration's VXLAN address, or undefined when the entry is not one Switchyard
 * writes (an extra key segment, anything but a canonical IPv4 address): such a value must
 * never reach the flood list or the firewall, where it would fail every later update.
 */
function parsePeer(hostId: string, value: string): string | undefined {
  if (hostId === "" || hostId.includes("/")) return undefined;
  const address = tryParseAddress(value);
  if (address === undefined || address.v6) return undefined;
  const text = formatAddress(address);
  return text === value ? text : undefined;
}
