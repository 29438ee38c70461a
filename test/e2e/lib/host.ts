/** Helpers that look at (and carefully change) the host's own network state in e2e tests. */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { exec } from "./docker.ts";

const HOST_TIMEOUT_MS = 30_000;
/** The host may have no `ping` of its own; busybox-static is installed by ensure-docker.sh. */
const BUSYBOX = "/bin/busybox";

/** Runs a host command (argv, never a shell); returns trimmed stdout, throws with stderr. */
export async function host(
  argv: readonly string[],
  options: { input?: string } = {},
): Promise<string> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("empty command");
  const result = await execa(file, args, {
    reject: false,
    timeout: HOST_TIMEOUT_MS,
    ...(options.input === undefined ? {} : { input: options.input }),
  });
  if (result.exitCode !== 0) {
    const detail = String(result.stderr ?? "").trim() || (result.shortMessage ?? result.message);
    throw new Error(`${argv.join(" ")} failed (exit ${result.exitCode}): ${detail}`);
  }
  return String(result.stdout ?? "").trim();
}

/** A host link as `ip -j -d link show` describes it (only the fields tests use). */
export interface HostLink {
  ifindex: number;
  ifname: string;
  /** The bridge (or other master) this link is a port of. */
  master?: string;
  /** `linkinfo.info_kind`: "bridge", "veth", "dummy"… (absent for plain devices). */
  kind?: string;
  operstate?: string;
  address?: string;
  mtu?: number;
  flags?: string[];
}

interface IpJsonLink {
  ifindex: number;
  ifname: string;
  master?: string;
  operstate?: string;
  address?: string;
  mtu?: number;
  flags?: string[];
  linkinfo?: { info_kind?: string };
}

function toHostLink(link: IpJsonLink): HostLink {
  return {
    ifindex: link.ifindex,
    ifname: link.ifname,
    ...(link.master === undefined ? {} : { master: link.master }),
    ...(link.linkinfo?.info_kind === undefined ? {} : { kind: link.linkinfo.info_kind }),
    ...(link.operstate === undefined ? {} : { operstate: link.operstate }),
    ...(link.address === undefined ? {} : { address: link.address }),
    ...(link.mtu === undefined ? {} : { mtu: link.mtu }),
    ...(link.flags === undefined ? {} : { flags: link.flags }),
  };
}

/** Every link in the host's network namespace. */
export async function hostLinks(): Promise<HostLink[]> {
  const links = JSON.parse(await host(["ip", "-j", "-d", "link", "show"])) as IpJsonLink[];
  return links.map(toHostLink);
}

/** The host link named `name`, or undefined when there is none. */
export async function hostLink(name: string): Promise<HostLink | undefined> {
  return (await hostLinks()).find((link) => link.ifname === name);
}

/** Names of the ports of host bridge `bridge`. */
export async function bridgePorts(bridge: string): Promise<string[]> {
  const out = await host(["ip", "-j", "link", "show", "master", bridge]);
  return (JSON.parse(out || "[]") as IpJsonLink[]).map((link) => link.ifname);
}

/** Addresses with prefix length ("10.231.2.1/24") that host link `name` holds. */
export async function hostAddresses(name: string): Promise<string[]> {
  const out = await host(["ip", "-j", "addr", "show", "dev", name]);
  const entries = JSON.parse(out || "[]") as {
    addr_info?: { local: string; prefixlen: number }[];
  }[];
  return entries.flatMap((entry) =>
    (entry.addr_info ?? []).map((info) => `${info.local}/${info.prefixlen}`),
  );
}

/** The host-side link of `container`'s interface `ifname` (the veth peer), if it exists. */
export async function hostPeerOf(
  container: string,
  ifname = "eth0",
): Promise<HostLink | undefined> {
  const peerIndex = Number(await exec(container, ["cat", `/sys/class/net/${ifname}/iflink`]));
  return (await hostLinks()).find((link) => link.ifindex === peerIndex);
}

/** True when `address` answers one ping from the host within `timeoutS` seconds. */
export async function hostPing(address: string, timeoutS = 2): Promise<boolean> {
  const result = await execa(BUSYBOX, ["ping", "-c", "1", "-W", String(timeoutS), address], {
    reject: false,
    timeout: HOST_TIMEOUT_MS,
  });
  return result.exitCode === 0;
}

/** A random host interface name of at most 15 characters, e.g. `sye2e1a3f9c2`. */
export function uniqueLinkName(prefix = "sye2e"): string {
  const name = `${prefix}${randomBytes(3).toString("hex")}`;
  if (name.length > 15) throw new Error(`interface name "${name}" is longer than 15 characters`);
  return name;
}

/** Creates host bridge `name`, optionally with `address` (CIDR), and sets it up. */
export async function addHostBridge(name: string, address?: string): Promise<void> {
  await host(["ip", "link", "add", name, "type", "bridge"]);
  if (address) await host(["ip", "addr", "add", address, "dev", name]);
  await host(["ip", "link", "set", name, "up"]);
}

/**
 * Creates host interface `name` that exists but is not a bridge: one end of a veth pair (the
 * peer is `name` + "p"; deleting either end deletes both). A veth, not a dummy, because this
 * kernel has no dummy driver.
 */
export async function addNonBridgeLink(name: string): Promise<void> {
  const peer = `${name}p`;
  if (peer.length > 15) throw new Error(`interface name "${peer}" is longer than 15 characters`);
  await host(["ip", "link", "add", name, "type", "veth", "peer", "name", peer]);
}

/**
 * Docker 26 and later add a raw PREROUTING drop per container on their own bridge networks,
 * through iptables-nft, which keeps `table ip raw` and its empty chain once the last container
 * is gone. Tests that run containers on Docker's networks call this when they are done: the
 * table goes when no rule is left in it (the daemon's iptables makes it again when it needs it).
 */
export async function dropEmptiedRawTable(): Promise<void> {
  let table: string;
  try {
    table = await host(["nft", "list", "table", "ip", "raw"]);
  } catch {
    return; // no such table
  }
  const rules = table
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !/^(table|chain|type|policy|\})\b|^\}$/.test(line));
  if (rules.length === 0) await host(["nft", "delete", "table", "ip", "raw"]);
}

/** What the leftover check compares: host link names and routes. */
export interface HostSnapshot {
  links: string[];
  routes: string[];
  /** Lines of Switchyard's nftables table and iptables chain. */
  rules: string[];
}

/** Switchyard's firewall rules as text lines; none when its table and chain do not exist. */
async function switchyardRules(): Promise<string[]> {
  const lines: string[] = [];
  for (const argv of [
    ["nft", "list", "table", "inet", "switchyard"],
    ["iptables-nft", "-S", "SWITCHYARD"],
  ]) {
    try {
      lines.push(...(await host(argv)).split("\n"));
    } catch {
      // absent table/chain: nothing of Switchyard's is there
    }
  }
  return lines
    .map((line) => line.trim())
    .filter((line) => /[io]ifname|saddr|dnat|-[io] /.test(line));
}

/**
 * IPv6 link-local and multicast routes come and go with each link (and with docker0 gaining a
 * carrier for the first time), so the link list already covers them.
 */
function isPerLinkRoute(route: string): boolean {
  return /^(local |multicast )?(fe80:|ff00::\/8)/.test(route);
}

/** "linkdown" flips with a bridge's carrier as containers come and go; it is no leftover. */
function normalizeRoute(route: string): string {
  return route
    .replace(/\s+linkdown\b/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

/** The host's link names and routes (all tables, IPv4 and IPv6), sorted. */
export async function snapshotHost(): Promise<HostSnapshot> {
  const links = (await hostLinks()).map((link) => link.ifname).sort();
  const v4 = await host(["ip", "-4", "route", "show", "table", "all"]);
  const v6 = await host(["ip", "-6", "route", "show", "table", "all"]);
  const routes = `${v4}\n${v6}`
    .split("\n")
    .map(normalizeRoute)
    .filter((route) => route !== "" && !isPerLinkRoute(route))
    .sort();
  return { links, routes, rules: await switchyardRules() };
}

/** What appeared and what vanished between two snapshots. */
export interface SnapshotDiff {
  addedLinks: string[];
  removedLinks: string[];
  addedRoutes: string[];
  removedRoutes: string[];
  addedRules: string[];
}

/** Compares two snapshots; every list is empty when nothing changed. */
export function diffSnapshots(before: HostSnapshot, after: HostSnapshot): SnapshotDiff {
  const minus = (a: string[], b: string[]) => a.filter((item) => !b.includes(item));
  return {
    addedLinks: minus(after.links, before.links),
    removedLinks: minus(before.links, after.links),
    addedRoutes: minus(after.routes, before.routes),
    removedRoutes: minus(before.routes, after.routes),
    addedRules: minus(after.rules, before.rules),
  };
}

/** Only additions count as leftovers: links others remove meanwhile are not this test's doing. */
function leftovers(
  diff: SnapshotDiff,
): Pick<SnapshotDiff, "addedLinks" | "addedRoutes" | "addedRules"> {
  return {
    addedLinks: diff.addedLinks,
    addedRoutes: diff.addedRoutes,
    addedRules: diff.addedRules,
  };
}

/**
 * Asserts the host has no link or route that it lacked in `before`. dockerd deletes container
 * veths asynchronously after `docker rm`, so this polls for up to `timeoutMs` first. Links and
 * routes that vanished meanwhile are not checked: on a developer's machine other work (the
 * plugin's own tests) may remove its things while the suite runs.
 */
export async function assertNothingLeft(before: HostSnapshot, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let left = leftovers(diffSnapshots(before, await snapshotHost()));
  const count = (l: typeof left) =>
    l.addedLinks.length + l.addedRoutes.length + l.addedRules.length;
  while (count(left) > 0 && Date.now() < deadline) {
    await sleep(200);
    left = leftovers(diffSnapshots(before, await snapshotHost()));
  }
  assert.deepEqual(
    left,
    { addedLinks: [], addedRoutes: [], addedRules: [] },
    `links/routes/firewall rules left on the host: ${JSON.stringify(left, null, 2)}`,
  );
}

/** The running dockerd's PID, from /var/run/docker.pid, or undefined when none runs. */
export function dockerdPid(): number | undefined {
  try {
    const pid = Number(readFileSync("/var/run/docker.pid", "utf8").trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** dockerd's containerd socket, where managed plugins run as tasks (namespace plugins.moby). */
const CONTAINERD = "/var/run/docker/containerd/containerd.sock";

/** PID of the plugin's process, from dockerd's containerd (namespace plugins.moby). */
export function pluginPid(pluginId: string): number | undefined {
  const listing = execFileSync("ctr", ["-a", CONTAINERD, "-n", "plugins.moby", "task", "ls"], {
    encoding: "utf8",
  });
  for (const line of listing.split("\n")) {
    const [id, pid, status] = line.trim().split(/\s+/);
    if (id === pluginId && status === "RUNNING") return Number(pid);
  }
  return undefined;
}
