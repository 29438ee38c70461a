/**
 * A simulated "outside host": a network namespace the test makes, joined to the host by a veth
 * pair and routed through the host, so containers reach it the way they would reach another
 * machine (through the host's forwarding and NAT) without any packet leaving this machine.
 */

import { execMayFail, ping } from "./docker.ts";
import { host, uniqueLinkName } from "./host.ts";
import {
  type BackgroundServer,
  httpGetFrom,
  type Place,
  startWhoamiServer,
  tcpRequest,
  udpRequest,
} from "./probe.ts";
import type { Tracker } from "./track.ts";

/** The TCP port of the outside host's "who am I" server. */
export const WHOAMI_PORT = 7070;

export interface OutsideHost {
  netns: string;
  /** The veth end in the host's namespace (holds `hostAddress`). */
  hostLink: string;
  /** The host's address on the veth: what a masqueraded packet carries as its source. */
  hostAddress: string;
  /** The outside host's own address. */
  address: string;
  /** Where probes run to act as the outside host. */
  place: Place;
  /** Routes `cidr` inside the namespace back through the host (for un-NATed sources). */
  addRoute(cidr: string): Promise<void>;
  /** The source address the outside host's server sees for a connection from `container`. */
  sourceSeenFrom(container: string): Promise<string | undefined>;
  /** True when a ping from `container` to the outside host is answered. */
  pingedFrom(container: string): Promise<boolean>;
  /** An HTTP GET sent from the outside host; the raw response or undefined. */
  httpGet(address: string, port: number, path?: string): Promise<string | undefined>;
  /** A UDP datagram sent from the outside host; the first reply or undefined. */
  udp(address: string, port: number, payload: string): Promise<string | undefined>;
  /** True when a TCP connection from the outside host to `address:port` succeeds. */
  tcpConnects(address: string, port: number): Promise<boolean>;
  /** Stops the server (the namespace and veth go with the tracker's cleanup). */
  close(): Promise<void>;
}

export interface OutsideHostSpec {
  /** Namespace name prefix: use the test's container prefix so removeLeftovers finds it. */
  prefix: string;
  /** Link name prefix (≤ 9 characters, starting "sye2e"). */
  linkPrefix: string;
  /** The /24 the veth pair uses, e.g. "10.231.250" (host .1, outside host .2). */
  subnet24: string;
}

/**
 * Makes the namespace, the veth pair (host end `hostAddress`, namespace end `address`, default
 * route in the namespace via the host) and starts the who-am-I server. Everything is recorded
 * in `t`; call `close()` before `t.cleanup()`.
 */
export async function createOutsideHost(t: Tracker, spec: OutsideHostSpec): Promise<OutsideHost> {
  const suffix = uniqueLinkName("").slice(0, 6);
  const netns = t.netns(`${spec.prefix}-out-${suffix}`);
  const hostLink = t.link(uniqueLinkName(spec.linkPrefix));
  const peer = `${hostLink}n`;
  if (peer.length > 15) throw new Error(`interface name "${peer}" is longer than 15 characters`);
  const hostAddress = `${spec.subnet24}.1`;
  const address = `${spec.subnet24}.2`;

  await host(["ip", "netns", "add", netns]);
  await host(["ip", "link", "add", hostLink, "type", "veth", "peer", "name", peer]);
  await host(["ip", "link", "set", peer, "netns", netns]);
  await host(["ip", "addr", "add", `${hostAddress}/24`, "dev", hostLink]);
  await host(["ip", "link", "set", hostLink, "up"]);
  const inNs = (argv: string[]) => host(["ip", "netns", "exec", netns, ...argv]);
  await inNs(["ip", "link", "set", "lo", "up"]);
  await inNs(["ip", "addr", "add", `${address}/24`, "dev", peer]);
  await inNs(["ip", "link", "set", peer, "up"]);
  await inNs(["ip", "route", "add", "default", "via", hostAddress]);

  const place: Place = { kind: "netns", netns };
  const server: BackgroundServer = await startWhoamiServer(place, WHOAMI_PORT);

  return {
    netns,
    hostLink,
    hostAddress,
    address,
    place,
    async addRoute(cidr) {
      await inNs(["ip", "route", "replace", cidr, "via", hostAddress]);
    },
    async sourceSeenFrom(container) {
      const outcome = await execMayFail(container, [
        "sh",
        "-c",
        'nc -w 2 "$0" "$1" </dev/null',
        address,
        String(WHOAMI_PORT),
      ]);
      const seen = outcome.stdout.trim();
      return seen === "" ? undefined : seen;
    },
    pingedFrom(container) {
      return ping(container, address);
    },
    httpGet(target, port, path) {
      return httpGetFrom(place, target, port, path);
    },
    udp(target, port, payload) {
      return udpRequest(place, target, port, payload);
    },
    async tcpConnects(target, port) {
      return (await tcpRequest(place, target, port)) !== undefined;
    },
    close: () => server.close(),
  };
}
