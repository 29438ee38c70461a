import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { createRunner, type Runner } from "../../src/exec/runner.ts";

/** Fails (never skips) when the tier needs root. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "netns tests need root: they create network namespaces, bridges, veths and nftables tables",
    );
  }
  for (const tool of ["ip", "nft", "iptables-nft", "busybox"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      throw new Error(
        `netns tests need ${tool}: apt-get install -y iproute2 nftables iptables busybox-static`,
      );
    }
  }
}

/** A throwaway network namespace and a runner whose commands run inside it. */
export function createNamespace(): { name: string; runner: Runner; destroy: () => void } {
  const name = `sytest-${randomBytes(3).toString("hex")}`;
  execFileSync("ip", ["netns", "add", name]);
  execFileSync("ip", ["-n", name, "link", "set", "lo", "up"]);
  const base = createRunner(pino({ level: "silent" }));
  const runner: Runner = (argv, options) => base(["ip", "netns", "exec", name, ...argv], options);
  return { name, runner, destroy: () => execFileSync("ip", ["netns", "del", name]) };
}

/** Runs a command inside a namespace and returns stdout. */
export function inNamespace(name: string, argv: string[]): string {
  return execFileSync("ip", ["netns", "exec", name, ...argv], { encoding: "utf8" });
}

/** True when `ping` from one namespace reaches the address. */
export function pings(name: string, address: string): boolean {
  try {
    execFileSync("ip", ["netns", "exec", name, "busybox", "ping", "-c1", "-W1", address], {
      stdio: "ignore",
    });
    return true;
  } catch {
    return false;
  }
}
