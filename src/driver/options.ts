import { badRequest } from "../errors.ts";
import { formatAddress, tryParseAddress } from "../ipam/prefix.ts";
import { validateInterfaceName } from "../names.ts";
import { OptionKeys, type WireOptions } from "../protocol/wire.ts";

/** Network options after parsing and validation. */
export interface NetworkOptions {
  /** An existing host bridge to attach to (`-o bridge=NAME`). */
  existingBridge?: string;
  /** Name for the bridge Switchyard creates (`-o com.docker.network.bridge.name=NAME`). */
  bridgeName?: string;
  mtu?: number;
  icc: boolean;
  masquerade: boolean;
  hostBindingIpv4?: string;
  internal: boolean;
  enableIpv6: boolean;
  /** The `-o` options as given. */
  generic: Record<string, string>;
  /** A multi-host network's VXLAN id: the same on every host makes them one network. */
  vxlanId?: number;
}

/** The `-o` keys Switchyard understands, with what each does (also printed in errors). */
export const GENERIC_OPTIONS = {
  bridge: "attach to this existing host bridge instead of creating one",
  "com.docker.network.bridge.name": "name of the bridge Switchyard creates",
  "com.docker.network.driver.mtu": "MTU of the bridge and of both veth ends",
  "com.docker.network.bridge.enable_icc": "allow traffic between containers of the network",
  "com.docker.network.bridge.enable_ip_masquerade": "masquerade traffic leaving the network",
  "com.docker.network.bridge.host_binding_ipv4": "default host address for published ports",
  "vxlan.id": "make a multi-host network: hosts creating it with the same id share it over VXLAN",
} as const;

function parseBoolean(key: string, value: string): boolean {
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw badRequest(`option ${key}="${value}" must be true or false`);
}

function parseMtu(value: string): number {
  const mtu = /^[0-9]{1,5}$/.test(value) ? Number(value) : Number.NaN;
  if (!(mtu >= 68 && mtu <= 65535)) {
    throw badRequest(
      `option com.docker.network.driver.mtu="${value}" must be a whole number from 68 to 65535`,
    );
  }
  return mtu;
}

function parseIpv4(key: string, value: string): string {
  const address = tryParseAddress(value);
  if (address === undefined || address.v6) {
    throw badRequest(`option ${key}="${value}" must be an IPv4 address`);
  }
  return formatAddress(address);
}

/** Parses and checks a `vxlan.id` option value: a VXLAN network identifier (24 bits, not 0). */
function parseVxlanId(value: string): number {
  const id = /^[0-9]{1,8}$/.test(value) ? Number(value) : Number.NaN;
  if (!(id >= 1 && id <= 16_777_215)) {
    throw badRequest(`option vxlan.id="${value}" must be a whole number from 1 to 16777215`);
  }
  return id;
}

function readFlag(options: WireOptions, key: string): boolean {
  const value = options[key];
  if (value === undefined || value === null) return false;
  if (typeof value === "boolean") return value;
  if (typeof value === "string") return parseBoolean(key, value);
  throw badRequest(`option ${key} must be a boolean`);
}

function readGeneric(options: WireOptions): Record<string, string> {
  const generic = options[OptionKeys.generic];
  if (generic === undefined || generic === null) return {};
  if (typeof generic !== "object" || Array.isArray(generic)) {
    throw badRequest(`option ${OptionKeys.generic} must be an object of strings`);
  }
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(generic)) {
    if (typeof value !== "string") throw badRequest(`option ${key} must be a string`);
    result[key] = value;
  }
  return result;
}

/** Parses CreateNetwork options; every problem is a BadRequest naming the option. */
export function parseNetworkOptions(options: WireOptions | null | undefined): NetworkOptions {
  const wire = options ?? {};
  const generic = readGeneric(wire);
  const parsed: NetworkOptions = {
    icc: true,
    masquerade: true,
    internal: readFlag(wire, OptionKeys.internal),
    enableIpv6: readFlag(wire, OptionKeys.enableIpv6),
    generic,
  };
  for (const [key, value] of Object.entries(generic)) {
    switch (key) {
      case "bridge":
        parsed.existingBridge = validateInterfaceName(value, "bridge");
        break;
      case "com.docker.network.bridge.name":
        parsed.bridgeName = validateInterfaceName(value, "bridge name");
        break;
      case "com.docker.network.driver.mtu":
        parsed.mtu = parseMtu(value);
        break;
      case "com.docker.network.bridge.enable_icc":
        parsed.icc = parseBoolean(key, value);
        break;
      case "com.docker.network.bridge.enable_ip_masquerade":
        parsed.masquerade = parseBoolean(key, value);
        break;
      case "com.docker.network.bridge.host_binding_ipv4":
        parsed.hostBindingIpv4 = parseIpv4(key, value);
        break;
      case "vxlan.id":
        parsed.vxlanId = parseVxlanId(value);
        break;
      default:
        throw badRequest(
          `unknown option "${key}"; Switchyard understands: ${Object.keys(GENERIC_OPTIONS).join(", ")}`,
        );
    }
  }
  if (parsed.existingBridge !== undefined && parsed.bridgeName !== undefined) {
    throw badRequest(
      `options bridge and com.docker.network.bridge.name both name a bridge; use bridge=NAME for an existing one or com.docker.network.bridge.name=NAME for one Switchyard creates`,
    );
  }
  return parsed;
}
