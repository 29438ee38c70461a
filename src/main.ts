import { chmod, mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { pino } from "pino";
import { buildApp } from "./app.ts";
import { IpDatapath } from "./datapath/ip-datapath.ts";
import { IpamDriver } from "./driver/ipam-driver.ts";
import { NetworkDriver } from "./driver/network-driver.ts";
import { createRunner } from "./exec/runner.ts";
import { createFirewall } from "./firewall/host-firewall.ts";
import { ProxyPublisher } from "./proxy/port-proxy.ts";
import { readSettings } from "./settings.ts";
import { StateManager } from "./state/state-manager.ts";
import { FileStore } from "./state/store.ts";

/** Process entry: settings, logger, state, socket; slow host work only after listening. */
async function main(): Promise<void> {
  const settings = readSettings(process.env);
  const logger = pino({ level: settings.logLevel, base: { plugin: "switchyard" } });
  const runner = createRunner(logger);
  const state = await StateManager.open(new FileStore(settings.stateDir), {
    defaultPoolsV4: settings.defaultPoolsV4,
    defaultPoolsV6: settings.defaultPoolsV6,
  });
  const firewall = createFirewall(runner, logger);
  const network = new NetworkDriver({
    state,
    datapath: new IpDatapath(runner),
    firewall,
    publisher: new ProxyPublisher(logger),
    logger,
  });
  const app = buildApp({ network, ipam: new IpamDriver(state), logger });

  await mkdir(dirname(settings.socketPath), { recursive: true });
  await rm(settings.socketPath, { force: true });
  await app.listen({ path: settings.socketPath });
  // Only dockerd (root) talks to the plugin.
  await chmod(settings.socketPath, 0o660);
  logger.info(
    {
      socket: settings.socketPath,
      stateDir: settings.stateDir,
      networks: Object.keys(state.document.networks).length,
    },
    "listening",
  );

  // After a restart the host may have lost bridges, addresses and rules (a reboot, a person):
  // repair them once listening, so dockerd never waits on this.
  network
    .reconcile()
    .catch((error: unknown) =>
      logger.error({ err: error }, "cannot reconcile the host at start-up"),
    );
  network
    .restorePublishedPorts()
    .catch((error: unknown) => logger.error({ err: error }, "cannot restore published ports"));

  const stop = (signal: string): void => {
    logger.info({ signal }, "stopping");
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

main().catch((error: unknown) => {
  // Before the logger exists (bad settings) this is the only way to say why we stop.
  console.error(JSON.stringify({ level: 60, msg: "switchyard cannot start", err: String(error) }));
  process.exit(1);
});
