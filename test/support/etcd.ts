import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { EtcdClient } from "../../src/cluster/etcd.ts";

/** A throwaway etcd on loopback for tests; fails (never skips) when etcd is not installed. */
export async function startEtcd(clientPort: number): Promise<{
  url: string;
  process: ChildProcess;
  stop: () => void;
}> {
  try {
    execFileSync("sh", ["-c", "command -v etcd"], { stdio: "ignore" });
  } catch {
    throw new Error("these tests need etcd: apt-get install -y etcd-server");
  }
  const url = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${clientPort + 10}`;
  const dataDir = mkdtempSync(join(tmpdir(), "sy-etcd-"));
  const child = spawn(
    "etcd",
    [
      ...["--data-dir", dataDir, "--listen-client-urls", url, "--advertise-client-urls", url],
      ...["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer],
      ...["--initial-cluster", `default=${peer}`],
    ],
    { stdio: "ignore" },
  );
  const client = new EtcdClient([url]);
  for (let attempt = 0; ; attempt++) {
    if (
      await client.range("x").then(
        () => true,
        () => false,
      )
    )
      break;
    if (attempt > 100) throw new Error("etcd did not start");
    await sleep(100);
  }
  return {
    url,
    process: child,
    stop: () => {
      child.kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
