import type { Runner } from "../exec/runner.ts";

/** Where the host's Docker keeps its packet filter rules, as seen from the plugin. */
export type DockerFirewallBackend = "iptables-nft" | "iptables-legacy" | "nftables" | "none";

/**
 * Finds the host Docker's firewall backend: Docker's own nftables tables (Docker 29's
 * `firewall-backend: nftables`), else the iptables whose tables hold Docker's DOCKER-USER
 * chain, else none (dockerd has not set up networking yet, or runs with `iptables: false`).
 * The nftables tables are looked for first: an nftables-mode daemon leaves the DOCKER-USER
 * chain an earlier iptables-mode one made, while an iptables-mode 29 deletes the
 * `docker-bridges` tables at start. Never throws: a missing tool counts as "not found".
 */
export async function detectDockerFirewall(run: Runner): Promise<DockerFirewallBackend> {
  const tables = await run(["nft", "list", "tables"], { allowFailure: true }).catch(
    () => undefined,
  );
  if (tables?.exitCode === 0 && /\bdocker-bridges\b/.test(tables.stdout)) return "nftables";
  const succeeds = async (argv: string[]) =>
    (await run(argv, { allowFailure: true }).catch(() => undefined))?.exitCode === 0;
  for (const variant of ["nft", "legacy"] as const) {
    if (await succeeds([`iptables-${variant}`, "-w", "-n", "-L", "DOCKER-USER"]))
      return `iptables-${variant}`;
  }
  return "none";
}
