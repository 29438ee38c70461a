import { type DefaultPool, defaultIpamSettings, parseDefaultPools } from "./ipam/ipam.ts";
import { formatAddress, tryParseAddress } from "./ipam/prefix.ts";

/** Everything the plugin reads from its environment (settable with `docker plugin set`). */
export interface Settings {
  logLevel: string;
  socketPath: string;
  stateDir: string;
  defaultPoolsV4: DefaultPool[];
  defaultPoolsV6: DefaultPool[];
  /** etcd client URLs; empty: no multi-host networks. */
  etcdEndpoints: string[];
  etcdCaFile?: string;
  etcdCertFile?: string;
  etcdKeyFile?: string;
  /** VXLAN underlay: an IPv4 address or an interface name; empty: the default route's. */
  vxlanLocal: string;
  /** Prefix length of the address blocks a host claims in a multi-host network. */
  addressBlockLength: number;
  /**
   * Where the resolver of multi-host names listens (an IPv4 address this host adds to its
   * loopback interface); undefined: off. Only with etcd.
   */
  dnsAddress?: string;
  /** dockerd's API socket, as mounted into the plugin (names come from the Docker API). */
  dockerSocket: string;
  /** Where `GET /metrics` is served over TCP, on the host's network; undefined: off. */
  metricsAddress?: ListenAddress;
}

/** A TCP address to listen on: an IP address (never a name to resolve) and a port. */
export interface ListenAddress {
  /** Canonical, as node:net takes it: "127.0.0.1", "::1" (no brackets). */
  readonly host: string;
  readonly port: number;
}

/** "127.0.0.1:9474", "[::1]:9474": how the setting is written, for messages and logs. */
export const formatListenAddress = (address: ListenAddress): string =>
  address.host.includes(":")
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;

const LISTEN_ADDRESS = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([1-9][0-9]{0,4})$/;

/** Parses "ADDRESS:PORT" (IPv6 in brackets), or returns undefined; port 0 (any) is refused. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const match = LISTEN_ADDRESS.exec(text);
  if (match === null) return undefined;
  const [, bracketed, plain, portText = ""] = match;
  const address = tryParseAddress(bracketed ?? plain ?? "");
  const port = Number(portText);
  // Brackets only around IPv6, and IPv6 only in brackets: "[10.0.0.1]:80" is a typo, not intent.
  if (address === undefined || address.v6 !== (bracketed !== undefined) || port > 65535)
    return undefined;
  return { host: formatAddress(address), port };
}

/** The resolver of multi-host names listens here unless DNS_ADDRESS says otherwise. */
export const DEFAULT_DNS_ADDRESS = "169.254.53.53";

/** A setting of the plugin's manifest (config.json `env`), as `docker plugin set` takes it. */
export interface SettingInfo {
  readonly name: string;
  /** config.json's description of it, word for word. */
  readonly description: string;
  /** Its value in config.json; "" stands for the fallback the README's Settings table names. */
  readonly default: string;
}

/**
 * Every setting the plugin declares, in config.json's order: the one list that config.json's
 * `env` and the README's Settings table are checked against (test/unit/settings-sources.test.ts),
 * and where readSettings takes its defaults from.
 */
export const SETTINGS = [
  {
    name: "LOG_LEVEL",
    description: "Log level: fatal, error, warn, info, debug (every command run), trace, silent",
    default: "info",
  },
  {
    name: "DEFAULT_POOLS_V4",
    description: "IPv4 pools for networks created without --subnet: BASE/LEN:SIZE, comma separated",
    default: "",
  },
  {
    name: "DEFAULT_POOLS_V6",
    description:
      "IPv6 pools for --ipv6 networks created without an IPv6 --subnet: BASE/LEN:SIZE, comma separated",
    default: "",
  },
  {
    name: "ETCD_ENDPOINTS",
    description:
      "etcd client URLs (comma separated) for multi-host networks (-o vxlan.id=N); empty: single-host only",
    default: "",
  },
  {
    name: "VXLAN_LOCAL",
    description:
      "This host's VXLAN underlay: an IPv4 address or an interface name; empty: the address of the default route's interface",
    default: "",
  },
  {
    name: "ADDRESS_BLOCK_SIZE",
    description:
      "Prefix length of the address blocks each host claims in a multi-host network (26 = 64 addresses)",
    default: "26",
  },
  {
    name: "DNS_ADDRESS",
    description:
      "Multi-host networks: the IPv4 address where Switchyard answers names of containers on other hosts; list it first in dockerd's dns setting (daemon.json). Empty: off",
    default: DEFAULT_DNS_ADDRESS,
  },
  {
    name: "METRICS_ADDRESS",
    description:
      "Metrics over TCP: ADDRESS:PORT (e.g. 127.0.0.1:9474 or [::1]:9474) where Switchyard serves GET /metrics in the Prometheus text format. The plugin uses the host's network, so this listens on the host: keep it on 127.0.0.1 unless a firewall guards the port. Empty: off",
    default: "",
  },
  {
    name: "ETCD_CA_FILE",
    description:
      "CA bundle for https etcd endpoints, as a path inside the plugin (put it under the state directory, e.g. /var/lib/switchyard/tls/ca.pem)",
    default: "",
  },
  {
    name: "ETCD_CERT_FILE",
    description: "Client certificate for etcd (e.g. /var/lib/switchyard/tls/client.pem)",
    default: "",
  },
  {
    name: "ETCD_KEY_FILE",
    description: "Client key for etcd (e.g. /var/lib/switchyard/tls/client-key.pem)",
    default: "",
  },
] as const satisfies readonly SettingInfo[];

/** The name of a declared setting. */
export type SettingName = (typeof SETTINGS)[number]["name"];

/**
 * Read from the environment but declared nowhere: paths that are fixed inside a managed plugin,
 * set only by tests and bench/standalone.ts when Switchyard runs outside Docker.
 */
export const UNDECLARED_SETTINGS: readonly string[] = ["SOCKET_PATH", "STATE_DIR", "DOCKER_SOCKET"];

const defaultOf = (name: SettingName): string =>
  SETTINGS.find((setting) => setting.name === name)?.default ?? "";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** Reads and checks the settings; a bad value throws an error naming the setting. */
export function readSettings(env: NodeJS.ProcessEnv): Settings {
  const defaults = defaultIpamSettings();
  const logLevel = env.LOG_LEVEL || defaultOf("LOG_LEVEL");
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new Error(`setting LOG_LEVEL="${logLevel}" must be one of ${LOG_LEVELS.join(", ")}`);
  }
  const pools = (name: string, fallback: DefaultPool[]): DefaultPool[] => {
    const text = env[name];
    if (text === undefined || text === "") return fallback;
    try {
      return parseDefaultPools(text);
    } catch (error) {
      throw new Error(`setting ${name}="${text}" is invalid: ${(error as Error).message}`);
    }
  };
  const etcdEndpoints = (env.ETCD_ENDPOINTS ?? "")
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
  for (const endpoint of etcdEndpoints) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new Error(
        `setting ETCD_ENDPOINTS has "${endpoint}", which is not a URL like http://10.0.0.5:2379`,
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new Error(
        `setting ETCD_ENDPOINTS has "${endpoint}": only http:// and https:// are supported`,
      );
    }
  }
  const blockText = env.ADDRESS_BLOCK_SIZE || defaultOf("ADDRESS_BLOCK_SIZE");
  const addressBlockLength = /^[0-9]{1,3}$/.test(blockText) ? Number(blockText) : Number.NaN;
  if (!(addressBlockLength >= 16 && addressBlockLength <= 30)) {
    throw new Error(
      `setting ADDRESS_BLOCK_SIZE="${blockText}" must be a prefix length from 16 to 30 (26: blocks of 64 addresses)`,
    );
  }
  const vxlanLocal = env.VXLAN_LOCAL ?? "";
  if (vxlanLocal !== "" && !/^[A-Za-z0-9_.:-]{1,39}$/.test(vxlanLocal)) {
    throw new Error(
      `setting VXLAN_LOCAL="${vxlanLocal}" must be an IPv4 address or an interface name`,
    );
  }
  const file = (name: string): string | undefined => env[name] || undefined;
  // TLS files with an http:// endpoint would mean talking to etcd in clear while believing
  // otherwise: refuse, naming the setting.
  const plain = etcdEndpoints.find((endpoint) => new URL(endpoint).protocol === "http:");
  for (const name of ["ETCD_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"]) {
    if (file(name) !== undefined && plain !== undefined) {
      throw new Error(
        `setting ${name} is set but ETCD_ENDPOINTS has "${plain}", which does not use TLS; use https:// endpoints with TLS files`,
      );
    }
  }
  if ((file("ETCD_CERT_FILE") === undefined) !== (file("ETCD_KEY_FILE") === undefined)) {
    throw new Error(
      "settings ETCD_CERT_FILE and ETCD_KEY_FILE go together (a client certificate and its key): set both or neither",
    );
  }
  const dnsText = (env.DNS_ADDRESS ?? defaultOf("DNS_ADDRESS")).trim();
  const dnsAddress = dnsText === "" ? undefined : tryParseAddress(dnsText);
  if (
    dnsText !== "" &&
    (dnsAddress === undefined || dnsAddress.v6 || /^(0|127|22[4-9]|2[3-5][0-9])\./.test(dnsText))
  ) {
    throw new Error(
      `setting DNS_ADDRESS="${dnsText}" must be a unicast IPv4 address for the name resolver (default ${DEFAULT_DNS_ADDRESS}), or empty to turn it off`,
    );
  }
  const metricsText = (env.METRICS_ADDRESS ?? "").trim();
  const metricsAddress = metricsText === "" ? undefined : parseListenAddress(metricsText);
  if (metricsText !== "" && metricsAddress === undefined) {
    throw new Error(
      `setting METRICS_ADDRESS="${metricsText}" must be an IP address and a port, e.g. 127.0.0.1:9474 or [::1]:9474, or empty to turn it off`,
    );
  }
  return {
    ...(metricsAddress === undefined ? {} : { metricsAddress }),
    ...(dnsAddress === undefined ? {} : { dnsAddress: formatAddress(dnsAddress) }),
    dockerSocket: env.DOCKER_SOCKET || "/host/docker-api/docker.sock",
    etcdEndpoints,
    ...(file("ETCD_CA_FILE") === undefined ? {} : { etcdCaFile: file("ETCD_CA_FILE") }),
    ...(file("ETCD_CERT_FILE") === undefined ? {} : { etcdCertFile: file("ETCD_CERT_FILE") }),
    ...(file("ETCD_KEY_FILE") === undefined ? {} : { etcdKeyFile: file("ETCD_KEY_FILE") }),
    vxlanLocal,
    addressBlockLength,
    logLevel,
    socketPath: env.SOCKET_PATH || "/run/docker/plugins/switchyard.sock",
    stateDir: env.STATE_DIR || "/var/lib/switchyard",
    defaultPoolsV4: pools("DEFAULT_POOLS_V4", defaults.defaultPoolsV4),
    defaultPoolsV6: pools("DEFAULT_POOLS_V6", defaults.defaultPoolsV6),
  };
}
