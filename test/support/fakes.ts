import { pino } from "pino";
import { buildApp } from "../../src/app.ts";
import type { ClusterService } from "../../src/cluster/cluster.ts";
import type {
  BridgeSpec,
  Datapath,
  LinkInfo,
  VethSpec,
  VxlanSpec,
} from "../../src/datapath/datapath.ts";
import { AddressNames } from "../../src/driver/address-names.ts";
import type { ClusterLink } from "../../src/driver/cluster-link.ts";
import { IpamDriver } from "../../src/driver/ipam-driver.ts";
import { NetworkDriver } from "../../src/driver/network-driver.ts";
import type { Firewall } from "../../src/firewall/firewall.ts";
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import type { IpPrefix } from "../../src/ipam/prefix.ts";
import { Metrics } from "../../src/metrics/metrics.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { MemoryStore } from "./memory-store.ts";
import { NoFirewall } from "./no-firewall.ts";
import { RecordingPublisher } from "./recording-publisher.ts";

/** An in-memory host: links by name, so driver logic can be tested without root. */
export class FakeDatapath implements Datapath {
  readonly hostLinks = new Map<string, LinkInfo & { addresses: string[]; peer?: string }>();

  addLink(name: string, kind: string | undefined): void {
    this.hostLinks.set(name, {
      name,
      kind,
      up: true,
      master: undefined,
      mtu: 1500,
      mac: undefined,
      addresses: [],
    });
  }

  async link(name: string): Promise<LinkInfo | undefined> {
    return this.hostLinks.get(name);
  }

  async links(): Promise<LinkInfo[]> {
    return [...this.hostLinks.values()];
  }

  async ensureBridge(spec: BridgeSpec): Promise<void> {
    const existing = this.hostLinks.get(spec.name);
    const addresses = new Set([...(existing?.addresses ?? []), ...spec.addresses]);
    this.hostLinks.set(spec.name, {
      name: spec.name,
      kind: "bridge",
      up: true,
      master: undefined,
      mtu: spec.mtu ?? 1500,
      mac: spec.mac,
      addresses: [...addresses],
    });
  }

  readonly localAddresses = new Set<string>();

  async ensureLocalAddress(address: string): Promise<void> {
    this.localAddresses.add(`${address}/32`);
  }

  async deleteBridge(name: string): Promise<void> {
    this.hostLinks.delete(name);
  }

  async ensureVeth(spec: VethSpec): Promise<void> {
    const base = {
      kind: "veth",
      up: false,
      master: undefined,
      mtu: spec.mtu ?? 1500,
      addresses: [],
    };
    this.hostLinks.set(spec.hostName, {
      ...base,
      name: spec.hostName,
      mac: undefined,
      peer: spec.peerName,
      master: spec.bridge,
      up: spec.bridge !== undefined,
    });
    this.hostLinks.set(spec.peerName, {
      ...base,
      name: spec.peerName,
      mac: spec.peerMac,
      peer: spec.hostName,
    });
  }

  /** What Docker does after Join: the container end leaves the host for the container. */
  moveIntoContainer(peerName: string): void {
    this.hostLinks.delete(peerName);
  }

  async attach(hostName: string, bridge: string): Promise<void> {
    const link = this.hostLinks.get(hostName);
    if (link === undefined || this.hostLinks.get(bridge)?.kind !== "bridge") {
      throw new Error(`Cannot find device "${link === undefined ? hostName : bridge}"`);
    }
    link.master = bridge;
    link.up = true;
  }

  readonly floodPeers = new Map<string, string[]>();

  async ensureVxlan(spec: VxlanSpec): Promise<void> {
    this.hostLinks.set(spec.name, {
      name: spec.name,
      kind: "vxlan",
      up: true,
      master: spec.bridge,
      mtu: spec.mtu ?? 1450,
      mac: undefined,
      addresses: [],
    });
  }

  async setFloodPeers(device: string, peers: readonly string[]): Promise<void> {
    this.floodPeers.set(device, [...peers]);
  }

  async mtuOfAddress(): Promise<number | undefined> {
    return 1500;
  }

  /** What {@link hostPrefixes} answers; tests set it to stand for the host's routes. */
  prefixesInUse: IpPrefix[] = [];

  async hostPrefixes(): Promise<IpPrefix[]> {
    return [...this.prefixesInUse];
  }

  async deleteLink(name: string): Promise<void> {
    const link = this.hostLinks.get(name);
    this.hostLinks.delete(name);
    if (link?.peer !== undefined) this.hostLinks.delete(link.peer);
  }
}

/**
 * A complete app on fakes, plus handles to look inside; `host` swaps in another host side,
 * and a cluster (e.g. on an in-memory key-value store) for multi-host networks.
 */
export async function buildTestApp(
  store = new MemoryStore(),
  host: {
    datapath?: Datapath;
    firewall?: Firewall;
    cluster?: ClusterService;
    /** One multi-host side for both drivers, to set up or mark pending after start. */
    clusterLink?: ClusterLink;
    resolverAddress?: string;
    /** As main.ts finds it: Docker 29 and later name the container in RequestAddress. */
    dockerSendsNames?: boolean;
  } = {},
) {
  const logger = pino({ level: "silent" });
  const state = await StateManager.open(store, defaultIpamSettings());
  const datapath = new FakeDatapath();
  const firewall = new NoFirewall();
  const publisher = new RecordingPublisher();
  const metrics = new Metrics({
    state: () => state.document,
    pools: () => state.ipam.pools(),
    version: "0.0.0-test",
  });
  const addressNames = new AddressNames();
  const network = new NetworkDriver({
    state,
    addressNames,
    datapath: host.datapath ?? datapath,
    firewall: host.firewall ?? firewall,
    publisher,
    logger,
    metrics,
    ...(host.cluster === undefined ? {} : { cluster: host.cluster }),
    ...(host.clusterLink === undefined ? {} : { clusterLink: host.clusterLink }),
    ...(host.resolverAddress === undefined ? {} : { resolverAddress: host.resolverAddress }),
  });
  const ipam = new IpamDriver({
    state,
    addressNames,
    hostPrefixes: () => datapath.hostPrefixes(),
    ...(host.cluster === undefined ? {} : { cluster: host.cluster }),
    ...(host.clusterLink === undefined ? {} : { clusterLink: host.clusterLink }),
    ...(host.dockerSendsNames === undefined ? {} : { dockerSendsNames: host.dockerSendsNames }),
  });
  const app = buildApp({
    network,
    ipam,
    state: () => state.document,
    metrics,
    logger,
    bodyLimit: 64 * 1024,
  });
  /** POSTs like dockerd: no Content-Type unless given, raw body text. */
  const call = async (path: string, body?: unknown, contentType?: string) => {
    const response = await app.inject({
      method: "POST",
      url: path,
      headers: {
        accept: "application/vnd.docker.plugins.v1.2+json",
        ...(contentType === undefined ? {} : { "content-type": contentType }),
      },
      ...(body === undefined
        ? {}
        : { payload: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    return { status: response.statusCode, body: response.json() as Record<string, unknown> };
  };
  return { app, call, state, datapath, firewall, store, publisher, network, ipam, metrics };
}
