import type { PublishedName } from "../cluster/cluster.ts";

/** One network's names: name → addresses, and address → the first name (for PTR). */
interface NetworkNames {
  byName: Map<string, string[]>;
  byAddress: Map<string, string>;
}

/**
 * The names every host published for its containers on each multi-host network, as the etcd
 * watch last reported them. Pure: the resolver reads it, the watch replaces a network's whole
 * list at a time.
 */
export class NameTable {
  readonly #networks = new Map<number, NetworkNames>();

  /** Replaces what a network's names are (an empty list forgets the network). */
  replace(vni: number, records: readonly PublishedName[]): void {
    if (records.length === 0) {
      this.#networks.delete(vni);
      return;
    }
    const byName = new Map<string, string[]>();
    const byAddress = new Map<string, string>();
    // Sorted by endpoint so two hosts' lists in another order give the same answers.
    const ordered = [...records].sort((a, b) => a.endpointId.localeCompare(b.endpointId));
    for (const record of ordered) {
      for (const name of record.names) {
        const addresses = byName.get(name) ?? [];
        if (!addresses.includes(record.ipv4)) addresses.push(record.ipv4);
        byName.set(name, addresses);
      }
      const [first] = record.names;
      if (first !== undefined && !byAddress.has(record.ipv4)) byAddress.set(record.ipv4, first);
    }
    this.#networks.set(vni, { byName, byAddress });
  }

  /** The addresses a name has on any of these networks (several for a shared alias). */
  addresses(vnis: Iterable<number>, name: string): string[] {
    const found: string[] = [];
    for (const vni of vnis) {
      for (const address of this.#networks.get(vni)?.byName.get(name) ?? []) {
        if (!found.includes(address)) found.push(address);
      }
    }
    return found;
  }

  /** The name of an address on one of these networks, for reverse lookups. */
  nameOf(vnis: Iterable<number>, address: string): string | undefined {
    for (const vni of vnis) {
      const name = this.#networks.get(vni)?.byAddress.get(address);
      if (name !== undefined) return name;
    }
    return undefined;
  }

  /** Whether a name is known on one of these networks (for any record type). */
  has(vnis: Iterable<number>, name: string): boolean {
    for (const vni of vnis) if (this.#networks.get(vni)?.byName.has(name)) return true;
    return false;
  }
}
