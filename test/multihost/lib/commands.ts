/** Docker commands the multi-host tests run inside a simulated host. */

import { PLUGIN, type SimHost } from "./cluster.ts";

/** `docker network create` of a multi-host network (Switchyard driver and IPAM, a vxlan.id). */
export const createMesh = (
  host: SimHost,
  name: string,
  vni: string,
  subnet: string,
  extra: string[] = [],
): Promise<string> =>
  host.docker([
    "network",
    "create",
    "-d",
    PLUGIN,
    "--ipam-driver",
    PLUGIN,
    "-o",
    `vxlan.id=${vni}`,
    "--subnet",
    subnet,
    ...extra,
    name,
  ]);

/** A container's IPv4 address on a network, as Docker reports it. */
export const addressOf = async (
  host: SimHost,
  container: string,
  network: string,
): Promise<string> =>
  host.docker([
    "inspect",
    "-f",
    `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`,
    container,
  ]);

/** Whether one ping from a container to a target (address or name) is answered within 2 s. */
export const pingFrom = async (
  host: SimHost,
  container: string,
  target: string,
): Promise<boolean> =>
  (await host.dockerMayFail(["exec", container, "ping", "-c", "1", "-W", "2", target])).exitCode ===
  0;

/**
 * The IPv4 addresses a name resolves to from inside a container (busybox nslookup through the
 * container's resolver, Docker's embedded DNS); empty when it does not resolve.
 */
export async function resolveFrom(
  host: SimHost,
  container: string,
  name: string,
): Promise<string[]> {
  const outcome = await host.dockerMayFail(["exec", container, "nslookup", "-type=a", name]);
  if (outcome.exitCode !== 0) return [];
  // The answer follows the "Name:" line; the lines before it name the server asked.
  const answer = outcome.stdout
    .split(/^Name:/m)
    .slice(1)
    .join("\n");
  return [...answer.matchAll(/Address(?: \d+)?:\s*([0-9.]+)/g)]
    .map((match) => match[1] ?? "")
    .sort();
}
