import { type DefaultPool, defaultIpamSettings, parseDefaultPools } from "./ipam/ipam.ts";

/** Everything the plugin reads from its environment (settable with `docker plugin set`). */
export interface Settings {
  logLevel: string;
  socketPath: string;
  stateDir: string;
  defaultPoolsV4: DefaultPool[];
  defaultPoolsV6: DefaultPool[];
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** Reads and checks the settings; a bad value throws an error naming the setting. */
export function readSettings(env: NodeJS.ProcessEnv): Settings {
  const defaults = defaultIpamSettings();
  const logLevel = env.LOG_LEVEL || "info";
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
  return {
    logLevel,
    socketPath: env.SOCKET_PATH || "/run/docker/plugins/switchyard.sock",
    stateDir: env.STATE_DIR || "/var/lib/switchyard",
    defaultPoolsV4: pools("DEFAULT_POOLS_V4", defaults.defaultPoolsV4),
    defaultPoolsV6: pools("DEFAULT_POOLS_V6", defaults.defaultPoolsV6),
  };
}
