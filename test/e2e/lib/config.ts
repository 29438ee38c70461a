/**
 * Which drivers the e2e suite drives. Default: the Switchyard plugin as both network and IPAM
 * driver. `E2E_DRIVER=bridge` runs the same scenarios against Docker's built-in bridge driver
 * (with the default IPAM), which checks the tests themselves while the plugin is not there.
 */

const driver = process.env.E2E_DRIVER || "switchyard:latest";

/** Drivers compiled into dockerd: they need no plugin. */
const BUILT_IN_DRIVERS = new Set(["bridge"]);

/** The network driver under test, as `docker network ls` shows it. */
export const networkDriver: string = driver;

/** The IPAM driver under test; the built-in bridge driver pairs with Docker's default IPAM. */
export const ipamDriver: string =
  process.env.E2E_IPAM_DRIVER || (BUILT_IN_DRIVERS.has(driver) ? "default" : driver);

/** True when the driver under test is Switchyard, so Switchyard-only options can be asserted. */
export const isSwitchyard: boolean = !BUILT_IN_DRIVERS.has(driver);

/** True when `name` is a driver dockerd has built in (no plugin to check). */
export function isBuiltInDriver(name: string): boolean {
  return BUILT_IN_DRIVERS.has(name) || name === "default";
}

/**
 * The `-o` option that puts a network on an existing host bridge. Switchyard's own option is
 * `bridge=NAME`; the built-in driver reuses an existing bridge given as its bridge name, which
 * lets S1's datapath checks run against it too.
 */
export function existingBridgeOption(bridge: string): Record<string, string> {
  return isSwitchyard ? { bridge } : { "com.docker.network.bridge.name": bridge };
}

/** Reason given for tests that assert behaviour only Switchyard has. */
export const SWITCHYARD_ONLY = isSwitchyard
  ? false
  : `only Switchyard has this behaviour (E2E_DRIVER=${driver})`;

/** The image every e2e container runs; built by scripts/test-image.sh. */
export const TEST_IMAGE = "switchyard-test/busybox:latest";

/**
 * The dockerd under test as `make` names it (DOCKER_TAG): its release (DOCKER=20, 26, 28, 29)
 * and, for 29's nftables firewall backend, `-nftables` (`29-nftables`).
 */
export const DOCKER_TAG: string =
  process.env.DOCKER_TAG ||
  `${process.env.DOCKER || "20"}${process.env.FIREWALL_BACKEND === "nftables" ? "-nftables" : ""}`;

/** True when the daemon under test runs Docker 29's nftables firewall backend. */
export const NFTABLES_BACKEND: boolean = DOCKER_TAG.endsWith("-nftables");

/**
 * The log of the dockerd under test, as scripts/ensure-docker.sh starts it: the host's own
 * Docker logs to /var/log/dockerd.log, the other releases (and backends) to their own.
 */
export const DOCKERD_LOG: string =
  DOCKER_TAG === "20" ? "/var/log/dockerd.log" : `/var/log/dockerd-${DOCKER_TAG}.log`;
