import { createHash } from "node:crypto";
import { badRequest } from "./errors.ts";
import { parseAddressOrPrefix } from "./ipam/prefix.ts";

/** An ID as Docker prints it: the first 12 characters. */
export const shortId = (id: string): string => id.slice(0, 12);

/** Linux IFNAMSIZ is 16 including the terminating NUL. */
export const MAX_INTERFACE_NAME = 15;

const INTERFACE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Checks a user-given interface name: 1–15 bytes of letters, digits, `_`, `.`, `-`. */
export function validateInterfaceName(name: string, what: string): string {
  if (name.length === 0) throw badRequest(`${what} must not be empty`);
  if (Buffer.byteLength(name) > MAX_INTERFACE_NAME) {
    throw badRequest(
      `${what} "${name}" is ${Buffer.byteLength(name)} bytes long; Linux allows at most ${MAX_INTERFACE_NAME}`,
    );
  }
  if (!INTERFACE_NAME.test(name)) {
    throw badRequest(
      `${what} "${name}" has characters Linux or Switchyard do not accept; use letters, digits, "_", "." and "-", starting with a letter or digit`,
    );
  }
  return name;
}

/** Name of the bridge Switchyard makes for a network when none is given: `sy-` + 12 hex of its ID. */
export function bridgeNameFor(networkId: string): string {
  return `sy-${networkId.slice(0, 12)}`;
}

/** True for a name {@link bridgeNameFor} makes. */
export const isDerivedBridgeName = (name: string): boolean => /^sy-[0-9a-f]{12}$/.test(name);

/** True for a host-side name {@link vethNamesFor} makes. */
export const isHostVethName = (name: string): boolean => /^vsy[0-9a-f]{11}$/.test(name);

/** Host-side and container-side veth names for an endpoint (both fit IFNAMSIZ). */
export function vethNamesFor(endpointId: string): { hostVeth: string; peerVeth: string } {
  const suffix = endpointId.slice(0, 11);
  return { hostVeth: `vsy${suffix}`, peerVeth: `csy${suffix}` };
}

/**
 * A locally administered MAC for an endpoint. Like Docker's bridge it derives from the IPv4
 * address (02:42 + the four bytes) so it is stable; without IPv4 it derives from the endpoint ID.
 */
export function macFor(endpointId: string, ipv4?: string): string {
  let bytes: number[];
  const address = ipv4 === undefined ? undefined : parseAddressOrPrefix(ipv4);
  if (address !== undefined && !address.v6) {
    const value = Number(address.value);
    bytes = [0x02, 0x42, value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255];
  } else {
    const digest = createHash("sha256").update(endpointId).digest();
    bytes = [0x02, 0x42, ...digest.subarray(0, 4)];
  }
  return bytes.map((byte) => byte.toString(16).padStart(2, "0")).join(":");
}

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

/** Normalises and checks a MAC address given by Docker. */
export function validateMac(mac: string): string {
  const lower = mac.toLowerCase();
  if (!MAC.test(lower))
    throw badRequest(`MAC address "${mac}" is not of the form 02:42:ac:11:00:02`);
  if ((Number.parseInt(lower.slice(0, 2), 16) & 1) === 1) {
    throw badRequest(
      `MAC address "${mac}" is a multicast address; a container needs a unicast one`,
    );
  }
  return lower;
}

/** Name of a multi-host network's VXLAN device (fits IFNAMSIZ: the id has at most 8 digits). */
export const vxlanDeviceName = (vni: number): string => `syvx${vni}`;

/** True for a name {@link vxlanDeviceName} makes. */
export const isVxlanDeviceName = (name: string): boolean => /^syvx[0-9]+$/.test(name);
