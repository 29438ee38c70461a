import { randomUUID } from "node:crypto";
import { chmod, mkdir, readFile, readlink, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname } from "node:path";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { type Logger, pino } from "pino";
import { buildApp } from "./app.ts";
import type { ClusterService, PublishedName } from "./cluster/cluster.ts";
import { IpDatapath } from "./datapath/ip-datapath.ts";
import type { NameService } from "./discovery/name-service.ts";
import { AddressNames } from "./driver/address-names.ts";
import { ClusterLink } from "./driver/cluster-link.ts";
import { IpamDriver } from "./driver/ipam-driver.ts";
import { NetworkDriver } from "./driver/network-driver.ts";
import { createRunner, type Runner } from "./exec/runner.ts";
import { detectDockerFirewall } from "./firewall/docker-backend.ts";
import { createFirewall } from "./firewall/host-firewall.ts";
import { formatAddress, tryParseAddress } from "./ipam/prefix.ts";
import { Metrics } from "./metrics/metrics.ts";
import { serveMetrics } from "./metrics/metrics-listener.ts";
import { TimedFirewall } from "./metrics/timed-firewall.ts";
import { ProxyPublisher } from "./proxy/port-proxy.ts";
import { readSettings, type Settings } from "./settings.ts";
import { StateManager } from "./state/state-manager.ts";
import { FileStore } from "./state/store.ts";
import { HostWarnings } from "./warnings.ts";

/** Process entry: settings, logger, state, socket; slow host work only after listening. */
async function main(): Promise<void> {
  const settings = readSettings(process.env);
  const logger = pino({ level: settings.logLevel, base: { plugin: "switchyard" } });
  const runner = createRunner(logger);
  let state: StateManager;
  try {
    state = await StateManager.open(new FileStore(settings.stateDir), {
      defaultPoolsV4: settings.defaultPoolsV4,
      defaultPoolsV6: settings.defaultPoolsV6,
    });
  } catch (error) {
    // State this Switchyard cannot read (e.g. written by a newer one after a downgrade) is
    // never misread or overwritten. Exiting would make dockerd restart the plugin in a loop;
    // instead it stays up and refuses every request, saying why, in every docker command.
    await serveRefusal(settings, logger, error instanceof Error ? error.message : String(error));
    return;
  }
  const version = await readVersion();
  const metrics = new Metrics({
    state: () => state.document,
    pools: () => state.ipam.pools(),
    version,
  });
  const warnings = new HostWarnings();
  const multiHost = settings.etcdEndpoints.length > 0;
  const resolves = multiHost && settings.dnsAddress !== undefined;
  const firewall = new TimedFirewall(
    createFirewall(runner, logger, warnings, resolves ? settings.dnsAddress : undefined),
    metrics,
  );
  const datapath = new IpDatapath(runner);
  let names: NameService | undefined;
  const dockerSendsNames = await dockerNamesContainers();
  // Docker 29 names the container in RequestAddress: the IPAM side keeps the name for the
  // network side's CreateEndpoint, so endpoints know their container without the Docker API.
  const addressNames = new AddressNames();
  const clusterLink = new ClusterLink();
  const network = new NetworkDriver({
    state,
    datapath,
    firewall,
    publisher: new ProxyPublisher(logger),
    logger,
    metrics,
    ...(resolves ? { resolverAddress: settings.dnsAddress } : {}),
    addressNames,
    clusterLink,
    names: { endpointsChanged: () => names?.endpointsChanged() },
  });
  const ipam = new IpamDriver({
    state,
    hostPrefixes: () => datapath.hostPrefixes(),
    logger,
    dockerSendsNames,
    addressNames,
    clusterLink,
  });
  const app = buildApp({
    network,
    ipam,
    state: () => state.document,
    metrics,
    warnings: () => [...warnings.list(), ...clusterWarnings(clusterLink.service)],
    logger,
  });

  // The multi-host side: a failure to set it up (a missing TLS file, no default route yet at
  // boot) never stops the plugin, which would take single-host networks down with it; it is
  // retried in the background, and multi-host calls say why until it is up.
  const setUpCluster = async (): Promise<boolean> => {
    try {
      const service = await createCluster(settings, state, runner, logger, metrics, {
        onPeers: (vni, peers) => {
          network
            .updatePeers(vni, peers)
            .catch((error: unknown) =>
              logger.error({ err: error, vni }, "cannot update peer hosts"),
            );
        },
        onNames: (vni, published) => names?.onNames(vni, published),
      });
      if (service === undefined) return true;
      if (resolves && settings.dnsAddress !== undefined)
        names = await createNameService(
          settings,
          state,
          service,
          datapath,
          logger,
          dockerSendsNames,
        );
      clusterLink.attach(service);
      warnings.set(CLUSTER_WARNING, undefined);
      return true;
    } catch (error) {
      const reason = `multi-host networks are not available yet: ${error instanceof Error ? error.message : String(error)}; retrying every ${CLUSTER_RETRY_MS / 1000} s`;
      if (warnings.set(CLUSTER_WARNING, reason)) logger.error({ err: error }, reason);
      clusterLink.setPending(reason);
      return false;
    }
  };
  const clusterPending = multiHost && !(await setUpCluster());

  await listenOnSocket(app, settings.socketPath);
  logger.info(
    {
      version,
      socket: settings.socketPath,
      stateDir: settings.stateDir,
      networks: Object.keys(state.document.networks).length,
      dockerSendsNames,
    },
    "listening",
  );
  // Off by default; a listener that cannot start is logged and never stops the plugin.
  if (settings.metricsAddress !== undefined)
    void serveMetrics(settings.metricsAddress, metrics, logger);
  // Which packet filter the host's Docker uses explains most "published port unreachable"
  // reports; found after listening, as it runs commands.
  detectDockerFirewall(runner).then(
    async (backend) => {
      logger.info({ version, dockerFirewall: backend }, "switchyard started");
      // Docker 29 with its nftables backend leaves IP forwarding as it finds it.
      const forwarding = await readFile("/proc/sys/net/ipv4/ip_forward", "utf8").catch(() => "");
      if (forwarding.trim() === "0") {
        logger.warn(
          { dockerFirewall: backend },
          "IPv4 forwarding is off on this host (net.ipv4.ip_forward=0): containers cannot reach beyond their network until it is on (sysctl -w net.ipv4.ip_forward=1)",
        );
      }
    },
    (error: unknown) => logger.warn({ err: error }, "cannot tell Docker's firewall backend"),
  );

  // After a restart the host may have lost bridges, addresses and rules (a reboot, a person):
  // repair them once listening, so dockerd never waits on this.
  const driver = network;
  // A failed reconciliation must not keep this host out of its multi-host networks.
  driver
    .reconcile()
    .catch((error: unknown) =>
      logger.error({ err: error }, "cannot reconcile the host at start-up"),
    )
    .finally(() => clusterLink.service?.resume(driver.clusterNetworks()));
  // Names across hosts: the resolver and the publisher run beside requests, never in them.
  void names?.start();
  if (clusterPending) {
    const retry = setInterval(() => {
      void setUpCluster().then((up) => {
        if (!up) return;
        clearInterval(retry);
        logger.info("multi-host networks are up");
        void names?.start();
        // What start-up could not repair without the cluster (VXLAN devices), then re-join.
        driver
          .reconcile()
          .catch((error: unknown) => logger.error({ err: error }, "cannot reconcile the host"))
          .finally(() => clusterLink.service?.resume(driver.clusterNetworks()));
      });
    }, CLUSTER_RETRY_MS);
    retry.unref();
  }
  driver
    .restorePublishedPorts()
    .catch((error: unknown) => logger.error({ err: error }, "cannot restore published ports"));

  const stop = (signal: string): void => {
    logger.info({ signal }, "stopping");
    clusterLink.service?.stop();
    names?.stop();
    driver.stop();
    // Requests answered, then the journal folded into state.json: what an older Switchyard
    // (a downgrade) reads is then the whole state.
    app
      .close()
      .then(() => state.close())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

/** What the multi-host side still owes etcd, for the status view: it is retried meanwhile. */
function clusterWarnings(cluster: ClusterService | undefined): string[] {
  if (cluster === undefined) return [];
  return [
    ...cluster
      .namesOutOfSync()
      .map(
        ({ vni, reason }) =>
          `names of vxlan.id ${vni} are not yet as they should be in etcd (${reason}); retrying`,
      ),
    ...cluster
      .leavesPending()
      .map(
        (vni) => `vxlan.id ${vni} was removed here but etcd has not taken the leave yet; retrying`,
      ),
  ];
}

/** The status view's warning while the multi-host side cannot be set up. */
const CLUSTER_WARNING = "cluster-setup";
/** How often a multi-host side that could not be set up is tried again. */
const CLUSTER_RETRY_MS = 10_000;

/** The resolver and publisher of names across hosts, with the access the user granted. */
async function createNameService(
  settings: Settings,
  state: StateManager,
  cluster: ClusterService,
  datapath: IpDatapath,
  logger: Logger,
  dockerSendsNames: boolean,
): Promise<NameService> {
  const [{ NameService }, { SocketDockerApi, dockerApiGranted }] = await Promise.all([
    import("./discovery/name-service.ts"),
    import("./discovery/docker-api.ts"),
  ]);
  const granted = await dockerApiGranted(settings.dockerSocket, settings.stateDir);
  logNamesMode(logger, granted, dockerSendsNames);
  return new NameService({
    address: settings.dnsAddress ?? "",
    state: () => state.document,
    stateRevision: () => state.revision,
    cluster,
    docker: granted ? new SocketDockerApi(settings.dockerSocket) : undefined,
    datapath,
    logger,
  });
}

/** Says once which names across hosts this host can publish, and with which access. */
function logNamesMode(logger: Logger, granted: boolean, dockerSendsNames: boolean): void {
  if (granted) {
    logger.info(
      { dockerApi: "granted" },
      "names across hosts: container names from Docker's requests, and network aliases and renames from the Docker API (the docker-api mount the user granted)",
    );
  } else if (dockerSendsNames) {
    logger.info(
      { dockerApi: "not granted" },
      "names across hosts: container names from Docker's requests; network aliases (Compose service names) need the docker-api grant (see README)",
    );
  } else {
    logger.warn(
      { dockerApi: "not granted" },
      "names across hosts: Docker before 29 sends no container names, and the Docker API is not granted: containers of this host resolve on no other host until you grant it (docker plugin set switchyard:latest docker-api.source=/run; see README)",
    );
  }
}

/** The kernel's fixed inode number of the initial time namespace (PROC_TIME_INIT_INO). */
const INITIAL_TIME_NAMESPACE = "time:[4026531834]";

/**
 * True when the Docker that started this plugin is 29.5 or later, and so names the container in
 * RequestAddress (what `--ipam-opt sticky=true` needs; names came with 29.0). Nothing in the
 * protocol says which release is calling, and a request must never call the Docker API; but
 * 29.5 is also the first release to start managed plugins in a time namespace of their own
 * (moby's default OCI spec), which the plugin can see in /proc. 29.0–29.4 cannot be told
 * from 28 and get the refusal. (A Docker before 29 that itself runs in a container with its own time namespace
 * looks like 29 here; a sticky pool there still refuses any request that names no container.)
 */
async function dockerNamesContainers(): Promise<boolean> {
  const link = await readlink("/proc/self/ns/time").catch(() => "");
  return link !== "" && link !== INITIAL_TIME_NAMESPACE;
}

/** Switchyard's version, from the package.json beside dist/ (or src/) in the plugin's /app. */
async function readVersion(): Promise<string> {
  try {
    const text = await readFile(new URL("../package.json", import.meta.url), "utf8");
    const version = (JSON.parse(text) as { version?: unknown }).version;
    return typeof version === "string" ? version : "unknown";
  } catch {
    return "unknown";
  }
}

/** Listens on the plugin socket (replacing a stale one); only dockerd (root) may use it. */
async function listenOnSocket(app: FastifyInstance, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await rm(path, { force: true });
  await app.listen({ path });
  await chmod(path, 0o660);
}

/** Serves only refusals: the plugin is up (so dockerd does not loop) but touches nothing. */
async function serveRefusal(settings: Settings, logger: Logger, reason: string): Promise<void> {
  logger.fatal({ err: reason }, "switchyard cannot use its state; refusing every request");
  const app = Fastify({ loggerInstance: logger as FastifyBaseLogger });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string" }, (_request, _body, done) => done(null, {}));
  app.post("/Plugin.Activate", async () => ({ Implements: ["NetworkDriver", "IpamDriver"] }));
  app.post("/NetworkDriver.GetCapabilities", async () => ({
    Scope: "local",
    ConnectivityScope: "local",
  }));
  app.post("/IpamDriver.GetCapabilities", async () => ({
    RequiresMACAddress: false,
    RequiresRequestReplay: false,
  }));
  app.setNotFoundHandler(async (_request, reply) =>
    reply.code(500).send({ Err: `Switchyard refuses to work: ${reason}` }),
  );
  await listenOnSocket(app, settings.socketPath);
}

/** The multi-host side, when ETCD_ENDPOINTS is set: etcd client, this host's ID and VTEP. */
async function createCluster(
  settings: Settings,
  state: StateManager,
  runner: Runner,
  logger: Logger,
  metrics: Metrics,
  on: {
    onPeers: (vni: number, peers: string[]) => void;
    onNames: (vni: number, names: PublishedName[]) => void;
  },
): Promise<ClusterService | undefined> {
  if (settings.etcdEndpoints.length === 0) return undefined;
  // Loaded only for multi-host: the etcd client pulls in node:https and TLS, ~3 MB resident
  // that a single-host plugin would carry for nothing.
  const [{ ClusterService }, { EtcdClient }] = await Promise.all([
    import("./cluster/cluster.ts"),
    import("./cluster/etcd.ts"),
  ]);
  const read = async (path: string | undefined) =>
    path === undefined ? undefined : readFile(path);
  const etcd = new EtcdClient(
    settings.etcdEndpoints,
    {
      ca: await read(settings.etcdCaFile),
      cert: await read(settings.etcdCertFile),
      key: await read(settings.etcdKeyFile),
    },
    (operation, ok, seconds) => metrics.etcd(operation, ok ? "ok" : "error", seconds),
  );
  const vtep = await findVtep(runner, settings.vxlanLocal);
  const hostId = state.document.cluster?.hostId || `${hostname()}-${randomUUID().slice(0, 8)}`;
  logger.info({ etcd: settings.etcdEndpoints, vtep, hostId }, "multi-host networks enabled");
  return new ClusterService({
    kv: etcd,
    logger,
    identity: { hostId, vtep },
    blockLength: settings.addressBlockLength,
    ...on,
    // What this host hands out from, to claim again when it rejoins or its lease lapsed.
    ownedClaims: (vni) => {
      const record = state.document.cluster?.networks[String(vni)];
      return { blocks: record?.blocks ?? [], statics: record?.statics ?? [] };
    },
  });
}

/** This host's VXLAN underlay address: VXLAN_LOCAL (address or interface), else the default route's. */
async function findVtep(runner: Runner, setting: string): Promise<string> {
  const given = tryParseAddress(setting);
  if (given !== undefined && !given.v6) return formatAddress(given);
  let device = setting;
  if (device === "") {
    const { stdout } = await runner(["ip", "-j", "-4", "route", "show", "default"]);
    device = (JSON.parse(stdout) as { dev?: string }[])[0]?.dev ?? "";
    if (device === "")
      throw new Error(
        "setting VXLAN_LOCAL is empty and there is no default route to pick an address from; set it",
      );
  }
  const { stdout } = await runner(["ip", "-j", "-4", "addr", "show", "dev", device]);
  const address = (JSON.parse(stdout) as { addr_info?: { local?: string }[] }[])[0]?.addr_info?.[0]
    ?.local;
  if (address === undefined)
    throw new Error(`setting VXLAN_LOCAL: interface "${device}" has no IPv4 address`);
  return address;
}

main().catch((error: unknown) => {
  // Before the logger exists (bad settings) this is the only way to say why we stop.
  console.error(JSON.stringify({ level: 60, msg: "switchyard cannot start", err: String(error) }));
  process.exit(1);
});
