/** Cleanup of everything an e2e test makes, and of what a crashed earlier run left behind. */

import { setTimeout as sleep } from "node:timers/promises";
import { docker, dockerMayFail } from "./docker.ts";
import { host, hostLinks } from "./host.ts";

type Kind = "container" | "network" | "link" | "netns";

/**
 * Containers go before networks (a network with endpoints cannot be removed), networks before
 * host links (a network may sit on a bridge the test made), links before namespaces.
 */
const REMOVAL_ORDER: readonly Kind[] = ["container", "network", "link", "netns"];

const NOT_FOUND = /no such (container|network)|not found|cannot find device|no such file/i;

/** A record of what a test made, removed by `cleanup()`. Each method returns the name. */
export interface Tracker {
  container(name: string): string;
  network(name: string): string;
  /** A host bridge the test made. */
  bridge(name: string): string;
  /** Any other host link the test made (dummy, veth…). */
  link(name: string): string;
  netns(name: string): string;
  /**
   * Removes everything recorded, by kind (containers, networks, links, namespaces) and newest
   * first within a kind; "not found" counts as removed. Throws once at the end if anything
   * else failed, after trying all.
   */
  cleanup(): Promise<void>;
}

async function removeContainer(name: string): Promise<void> {
  const outcome = await dockerMayFail(["rm", "-f", name]);
  if (outcome.exitCode !== 0 && !NOT_FOUND.test(outcome.stderr)) {
    throw new Error(`docker rm -f ${name}: ${outcome.stderr}`);
  }
}

async function removeNetwork(name: string): Promise<void> {
  // Endpoint teardown of a just-removed container can lag a moment behind `docker rm -f`.
  for (let attempt = 1; ; attempt++) {
    const outcome = await dockerMayFail(["network", "rm", name]);
    if (outcome.exitCode === 0 || NOT_FOUND.test(outcome.stderr)) return;
    if (!/active endpoints/i.test(outcome.stderr) || attempt >= 10) {
      throw new Error(`docker network rm ${name}: ${outcome.stderr}`);
    }
    await sleep(300);
  }
}

async function removeLink(name: string): Promise<void> {
  try {
    await host(["ip", "link", "del", name]);
  } catch (error) {
    if (!NOT_FOUND.test(String(error))) throw error;
  }
}

async function removeNetns(name: string): Promise<void> {
  try {
    await host(["ip", "netns", "del", name]);
  } catch (error) {
    if (!NOT_FOUND.test(String(error))) throw error;
  }
}

const REMOVERS: Record<Kind, (name: string) => Promise<void>> = {
  container: removeContainer,
  network: removeNetwork,
  link: removeLink,
  netns: removeNetns,
};

/** Starts a record of what a test makes; call `await t.cleanup()` in `after`. */
export function track(): Tracker {
  const made: { kind: Kind; name: string }[] = [];
  const add = (kind: Kind) => (name: string) => {
    made.push({ kind, name });
    return name;
  };
  return {
    container: add("container"),
    network: add("network"),
    bridge: add("link"),
    link: add("link"),
    netns: add("netns"),
    async cleanup() {
      const failures: unknown[] = [];
      for (const kind of REMOVAL_ORDER) {
        const names = made.filter((item) => item.kind === kind).map((item) => item.name);
        for (const name of [...new Set(names)].reverse()) {
          try {
            await REMOVERS[kind](name);
          } catch (error) {
            failures.push(error);
          }
        }
      }
      made.length = 0;
      if (failures.length > 0) throw new AggregateError(failures, "e2e cleanup failed");
    },
  };
}

/**
 * Removes containers, networks and network namespaces whose names start with `prefix`, and
 * host links whose names start with `linkPrefix`, that an earlier, interrupted run left.
 * Use prefixes only e2e tests use, so nothing else on the host is touched.
 */
export async function removeLeftovers(prefix: string, linkPrefix?: string): Promise<void> {
  if (!prefix.startsWith("sy-e2e")) throw new Error(`refusing leftover prefix "${prefix}"`);
  const mine = (names: string) =>
    names.split("\n").filter((name) => name !== "" && name.startsWith(prefix));

  for (const name of mine(await docker(["ps", "-a", "--format", "{{.Names}}"]))) {
    await removeContainer(name);
  }
  for (const name of mine(await docker(["network", "ls", "--format", "{{.Name}}"]))) {
    await removeNetwork(name);
  }
  if (linkPrefix !== undefined) {
    if (!linkPrefix.startsWith("sye2e")) throw new Error(`refusing link prefix "${linkPrefix}"`);
    for (const link of await hostLinks()) {
      if (link.ifname.startsWith(linkPrefix)) await removeLink(link.ifname);
    }
  }
  const namespaces = (await host(["ip", "netns", "list"]))
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "");
  for (const name of namespaces) {
    if (name.startsWith(prefix)) await removeNetns(name);
  }
}
