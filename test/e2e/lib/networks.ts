/**
 * `docker network create` beyond what `createNetwork` covers: an explicit driver pair (for the
 * differential test, which runs the same cases on both drivers in one process), several
 * subnets and IPv6.
 */

import { ipamDriver, networkDriver } from "./config.ts";
import { docker, type NetworkSpec } from "./docker.ts";

/** The driver pair of Docker's built-in bridge networks. */
export const BUILT_IN = { driver: "bridge", ipam: "default" } as const;
/** The driver pair of Switchyard networks. */
export const SWITCHYARD = { driver: "switchyard:latest", ipam: "switchyard:latest" } as const;

export interface DriverPair {
  driver: string;
  ipam: string;
}

export interface ExtendedNetworkSpec extends NetworkSpec {
  /** Drivers to use instead of the ones under test (config.ts). */
  drivers?: DriverPair;
  /** More `--subnet` values after `subnet` (e.g. an IPv6 one). */
  extraSubnets?: string[];
  /** `--ipv6`. */
  ipv6?: boolean;
}

/** The argv of `docker network create` for `spec`. */
export function extendedNetworkCreateArgs(spec: ExtendedNetworkSpec): string[] {
  const drivers = spec.drivers ?? { driver: networkDriver, ipam: ipamDriver };
  const args = ["network", "create", "--driver", drivers.driver, "--ipam-driver", drivers.ipam];
  for (const subnet of [spec.subnet, ...(spec.extraSubnets ?? [])]) {
    if (subnet) args.push("--subnet", subnet);
  }
  if (spec.gateway) args.push("--gateway", spec.gateway);
  if (spec.ipRange) args.push("--ip-range", spec.ipRange);
  for (const [key, address] of Object.entries(spec.aux ?? {})) {
    args.push("--aux-address", `${key}=${address}`);
  }
  for (const [key, value] of Object.entries(spec.options ?? {})) args.push("-o", `${key}=${value}`);
  if (spec.internal) args.push("--internal");
  if (spec.ipv6) args.push("--ipv6");
  args.push(spec.name);
  return args;
}

/** Creates the network `spec` describes; returns its name. */
export async function createExtendedNetwork(spec: ExtendedNetworkSpec): Promise<string> {
  await docker(extendedNetworkCreateArgs(spec));
  return spec.name;
}

/** The IPv6 address dockerd reports for `container` on `network` ("" when none). */
export function containerAddress6(container: string, network: string): Promise<string> {
  return docker([
    "inspect",
    "--format",
    `{{with index .NetworkSettings.Networks ${JSON.stringify(network)}}}{{.GlobalIPv6Address}}{{end}}`,
    container,
  ]);
}
