import type { Logger } from "pino";
import type { Runner } from "../exec/runner.ts";
import { emptyState, type StateDocument } from "../state/model.ts";
import { HostWarnings } from "../warnings.ts";
import { type DockerFirewallBackend, detectDockerFirewall } from "./docker-backend.ts";
import type { Firewall } from "./firewall.ts";
import {
  IPTABLES_CHAIN,
  NFT_TABLE,
  type NftCapabilities,
  type NftRenderOptions,
  type PublishedElements,
  publishedElements,
  renderIptables,
  renderNftables,
  renderNftStructure,
  renderPublishedUpdate,
} from "./render.ts";

/** Which iptables backend the host's Docker programs. */
export type IptablesVariant = "nft" | "legacy";

const DOCKER_USER = "DOCKER-USER";

/** The key of the warning about an iptables FORWARD policy of DROP under nftables-mode Docker. */
export const FORWARD_DROP_WARNING = "iptables-forward-drop";

/** A rule using the bridge meta expression, only checked (`nft -c`), never applied. */
const BRIDGE_META_PROBE = `table bridge ${NFT_TABLE}-probe {
  chain probe {
    meta ibrname "lo" accept
  }
}
`;

/**
 * Finds out what the kernel's nftables can match. `nft -c` hands the transaction to the kernel
 * and aborts it, so an expression the kernel lacks fails here without changing anything.
 */
export async function detectNftCapabilities(run: Runner): Promise<NftCapabilities> {
  const probe = await run(["nft", "-c", "-f", "-"], {
    input: BRIDGE_META_PROBE,
    allowFailure: true,
  }).catch(() => undefined);
  return { bridgeMeta: probe?.exitCode === 0 };
}

/** How long the host's uplinks, once read, are trusted before being read again. */
const UPLINKS_TTL_MS = 10_000;

/**
 * The interfaces of the host's default routes (IPv4 and IPv6). Only names Linux could have
 * are kept, since they go into the nft script.
 */
export async function detectUplinks(run: Runner): Promise<string[]> {
  const devices = new Set<string>();
  for (const family of ["-4", "-6"]) {
    const result = await run(["ip", "-j", family, "route", "show", "default"], {
      allowFailure: true,
    }).catch(() => undefined);
    if (result?.exitCode !== 0) continue;
    try {
      for (const route of JSON.parse(result.stdout || "[]") as { dev?: unknown }[]) {
        if (typeof route.dev === "string" && /^[A-Za-z0-9_.-]{1,15}$/.test(route.dev))
          devices.add(route.dev);
      }
    } catch {
      // no JSON: no uplink known
    }
  }
  return [...devices].sort();
}

/** The packet filter of a real host: Switchyard's nftables table plus one iptables chain. */
export class HostFirewall implements Firewall {
  readonly #run: Runner;
  readonly #logger: Logger;
  #variant: IptablesVariant | undefined;
  /** True when the iptables variant was given (tests): it is never looked for. */
  readonly #variantFixed: boolean;
  /** The host Docker's packet filter, once found (rules appear when dockerd sets up). */
  #backend: DockerFirewallBackend | undefined;
  readonly #warnings: HostWarnings;
  #capabilities: NftCapabilities | undefined;
  #uplinks: { names: string[]; readAt: number } | undefined;
  /** What the kernel holds: the ruleset without published ports, and those ports' elements. */
  #lastNft: { structure: string; published: PublishedElements } | undefined;
  #lastIptables: string | undefined;
  /** True once a chain of ours in iptables was removed under nftables-mode Docker. */
  #iptablesSwept = false;
  /** The name resolver's address (DNS_ADDRESS) when it runs: guarded in the packet filter. */
  readonly #resolverAddress: string | undefined;

  constructor(
    runner: Runner,
    logger: Logger,
    variant?: IptablesVariant,
    warnings = new HostWarnings(),
    resolverAddress?: string,
  ) {
    this.#resolverAddress = resolverAddress;
    this.#run = runner;
    this.#logger = logger;
    this.#variant = variant;
    this.#variantFixed = variant !== undefined;
    this.#warnings = warnings;
  }

  async apply(state: Readonly<StateDocument>): Promise<void> {
    const resolver = this.#resolverAddress;
    if (Object.keys(state.networks).length === 0 && resolver === undefined) {
      await this.clear();
      return;
    }
    const rebuilt = await this.#applyNft(state, {
      ...(await this.#nftCapabilities()),
      uplinks: await this.#currentUplinks(),
      ...(resolver === undefined ? {} : { resolverAddress: resolver }),
    });
    if (Object.keys(state.networks).length === 0) {
      // Only the resolver's guard: nothing of ours belongs in iptables.
      await this.#clearIptables();
      return;
    }
    if (rebuilt) await this.#detectBackend();
    if ((await this.#dockerBackend()) === "nftables") {
      // Docker 29's nftables backend has no DOCKER-USER, and its own bridges rely on nothing
      // in iptables: neither does Switchyard. A chain of ours left from an iptables-mode
      // daemon (by this process or an earlier one) goes, once.
      if (this.#lastIptables !== undefined || !this.#iptablesSwept) await this.#clearIptables();
      this.#iptablesSwept = true;
      if (rebuilt) await this.#checkForwardPolicy();
      return;
    }
    const iptables = renderIptables(state);
    if (iptables !== this.#lastIptables) {
      await this.#applyIptables(iptables);
      this.#lastIptables = iptables;
    }
  }

  /**
   * A change of published ports only (the rest of the ruleset as last applied) is one small
   * transaction of element deletes and adds; anything else (a network made or removed, the
   * first apply after start-up) rebuilds both tables atomically. A failed update is repaired
   * by a rebuild. True when the ruleset was rebuilt.
   */
  async #applyNft(
    state: Readonly<StateDocument>,
    capabilities: NftRenderOptions,
  ): Promise<boolean> {
    const structure = renderNftStructure(state, capabilities);
    const published = publishedElements(state);
    const last = this.#lastNft;
    if (last !== undefined && last.structure === structure) {
      const update = renderPublishedUpdate(last.published, published);
      if (update === "") return false;
      try {
        await this.#run(["nft", "-f", "-"], { input: update });
        this.#lastNft = { structure, published };
        return false;
      } catch (error) {
        this.#logger.warn({ err: error }, "incremental nft update failed; rebuilding the ruleset");
      }
    }
    this.#lastNft = undefined;
    await this.#run(["nft", "-f", "-"], { input: renderNftables(state, capabilities) });
    this.#lastNft = { structure, published };
    return true;
  }

  async clear(): Promise<void> {
    await this.#run(["nft", "-f", "-"], {
      input: renderNftables(emptyState()),
    });
    this.#lastNft = undefined;
    await this.#clearIptables();
  }

  async #clearIptables(): Promise<void> {
    const iptables = await this.#iptables();
    await this.#run([iptables, "-w", "-D", DOCKER_USER, "-j", IPTABLES_CHAIN], {
      allowFailure: true,
    });
    await this.#run([iptables, "-w", "-F", IPTABLES_CHAIN], { allowFailure: true });
    await this.#run([iptables, "-w", "-X", IPTABLES_CHAIN], { allowFailure: true });
    this.#lastIptables = undefined;
  }

  /** The host Docker's packet filter; read again while dockerd has set up none. */
  async #dockerBackend(): Promise<DockerFirewallBackend> {
    if (this.#backend === undefined || this.#backend === "none") await this.#detectBackend();
    return this.#backend ?? "none";
  }

  /**
   * Reads the host Docker's packet filter again, at every full rebuild: a plugin that started
   * before dockerd set up its firewall, or a daemon restarted with the other backend, is
   * followed from the next network made or removed. Our iptables chain, if any, leaves the
   * iptables it was in when the answer changes (it is made again where it now belongs).
   */
  async #detectBackend(): Promise<void> {
    const found = await detectDockerFirewall(this.#run);
    if (found === this.#backend) return;
    if (this.#backend !== undefined && this.#backend !== "none")
      this.#logger.info({ from: this.#backend, to: found }, "Docker's firewall backend changed");
    if (this.#lastIptables !== undefined && found !== "none") await this.#clearIptables();
    if (!this.#variantFixed) this.#variant = undefined;
    this.#backend = found;
  }

  /**
   * Under nftables-mode Docker, an iptables FORWARD policy of DROP (left by an iptables-mode
   * daemon that ran before) drops the traffic of every bridge, Docker's own and Switchyard's
   * alike, and Docker does not change it. Switchyard does not override the host's policy
   * either: it says so, in the log and the status view, with the fix. Read at every full
   * rebuild (a network made or removed, start-up), not at each published port.
   */
  async #checkForwardPolicy(): Promise<void> {
    const dropping: string[] = [];
    for (const iptables of ["iptables-nft", "iptables-legacy"]) {
      const rules = await this.#run([iptables, "-w", "-S", "FORWARD"], {
        allowFailure: true,
      }).catch(() => undefined);
      if (rules?.exitCode === 0 && /^-P FORWARD DROP$/m.test(rules.stdout)) dropping.push(iptables);
    }
    const message =
      dropping.length === 0
        ? undefined
        : `Docker uses its nftables firewall backend, but the iptables FORWARD policy is DROP (${dropping.join(", ")}; an iptables-mode dockerd that ran before leaves it so): containers on bridge networks, Docker's own and Switchyard's, cannot reach each other or the outside. Fix: iptables -P FORWARD ACCEPT (and make it persist), or run dockerd with its iptables backend`;
    if (this.#warnings.set(FORWARD_DROP_WARNING, message) && message !== undefined)
      this.#logger.warn({ dockerFirewall: "nftables" }, message);
  }

  async #currentUplinks(): Promise<string[]> {
    if (this.#uplinks === undefined || Date.now() - this.#uplinks.readAt > UPLINKS_TTL_MS) {
      this.#uplinks = { names: await detectUplinks(this.#run), readAt: Date.now() };
    }
    return this.#uplinks.names;
  }

  async #nftCapabilities(): Promise<NftCapabilities> {
    if (this.#capabilities === undefined) {
      this.#capabilities = await detectNftCapabilities(this.#run);
      if (!this.#capabilities.bridgeMeta) {
        this.#logger.warn(
          "nftables cannot match a frame's bridge (kernel without CONFIG_NFT_BRIDGE_META): ICC=false falls back to matching the network's addresses, which misses IPv6 link-local traffic",
        );
      }
    }
    return this.#capabilities;
  }

  async #iptables(): Promise<string> {
    if (this.#variant === undefined) {
      // The iptables whose tables hold Docker's chains: rules put in the other one are never
      // consulted in the order Docker's DROP policy expects (a classic bug).
      this.#variant = (await this.#dockerBackend()) === "iptables-legacy" ? "legacy" : "nft";
      this.#logger.info({ variant: this.#variant }, "iptables variant detected");
    }
    return `iptables-${this.#variant}`;
  }

  async #applyIptables(script: string): Promise<void> {
    const iptables = await this.#iptables();
    // DOCKER-USER exists once Docker's bridge driver started; make it ourselves if not yet
    // (Docker keeps an existing chain and only moves its FORWARD jump to the top).
    const hasUserChain = await this.#run([iptables, "-w", "-n", "-L", DOCKER_USER], {
      allowFailure: true,
    });
    if (hasUserChain.exitCode !== 0) {
      await this.#run([iptables, "-w", "-N", DOCKER_USER], { allowFailure: true });
      await this.#run([iptables, "-w", "-I", "FORWARD", "-j", DOCKER_USER]);
    }
    await this.#run([`${iptables}-restore`, "-w", "--noflush"], { input: script });
    const jump = await this.#run([iptables, "-w", "-C", DOCKER_USER, "-j", IPTABLES_CHAIN], {
      allowFailure: true,
    });
    if (jump.exitCode !== 0)
      await this.#run([iptables, "-w", "-I", DOCKER_USER, "-j", IPTABLES_CHAIN]);
  }
}

/**
 * The firewall of the host this process runs on; host conditions it finds go to `warnings`.
 * With `resolverAddress` (the name resolver runs), that address takes DNS only from this host.
 */
export function createFirewall(
  runner: Runner,
  logger: Logger,
  warnings: HostWarnings,
  resolverAddress?: string,
): Firewall {
  return new HostFirewall(runner, logger, undefined, warnings, resolverAddress);
}
