import type { Logger } from "pino";
import type { Runner } from "../exec/runner.ts";
import { emptyState, type StateDocument } from "../state/model.ts";
import type { Firewall } from "./firewall.ts";
import {
  IPTABLES_CHAIN,
  NFT_TABLE,
  type NftCapabilities,
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

/**
 * Decides which iptables the host's Docker uses: the one whose tables hold Docker's chains.
 * Using the other one is a classic bug: rules land in tables the kernel path never consults
 * in the order Docker's DROP policy expects.
 */
export async function detectIptablesVariant(run: Runner): Promise<IptablesVariant> {
  for (const variant of ["nft", "legacy"] as const) {
    const result = await run([`iptables-${variant}`, "-w", "-n", "-L", DOCKER_USER], {
      allowFailure: true,
    }).catch(() => undefined);
    if (result?.exitCode === 0) return variant;
  }
  return "nft";
}

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
  #capabilities: NftCapabilities | undefined;
  #uplinks: { names: string[]; readAt: number } | undefined;
  /** What the kernel holds: the ruleset without published ports, and those ports' elements. */
  #lastNft: { structure: string; published: PublishedElements } | undefined;
  #lastIptables: string | undefined;

  constructor(runner: Runner, logger: Logger, variant?: IptablesVariant) {
    this.#run = runner;
    this.#logger = logger;
    this.#variant = variant;
  }

  async apply(state: Readonly<StateDocument>): Promise<void> {
    if (Object.keys(state.networks).length === 0) {
      await this.clear();
      return;
    }
    await this.#applyNft(state, {
      ...(await this.#nftCapabilities()),
      uplinks: await this.#currentUplinks(),
    });
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
   * by a rebuild.
   */
  async #applyNft(state: Readonly<StateDocument>, capabilities: NftCapabilities): Promise<void> {
    const structure = renderNftStructure(state, capabilities);
    const published = publishedElements(state);
    const last = this.#lastNft;
    if (last !== undefined && last.structure === structure) {
      const update = renderPublishedUpdate(last.published, published);
      if (update === "") return;
      try {
        await this.#run(["nft", "-f", "-"], { input: update });
        this.#lastNft = { structure, published };
        return;
      } catch (error) {
        this.#logger.warn({ err: error }, "incremental nft update failed; rebuilding the ruleset");
      }
    }
    this.#lastNft = undefined;
    await this.#run(["nft", "-f", "-"], { input: renderNftables(state, capabilities) });
    this.#lastNft = { structure, published };
  }

  async clear(): Promise<void> {
    await this.#run(["nft", "-f", "-"], {
      input: renderNftables(emptyState()),
    });
    this.#lastNft = undefined;
    const iptables = await this.#iptables();
    await this.#run([iptables, "-w", "-D", DOCKER_USER, "-j", IPTABLES_CHAIN], {
      allowFailure: true,
    });
    await this.#run([iptables, "-w", "-F", IPTABLES_CHAIN], { allowFailure: true });
    await this.#run([iptables, "-w", "-X", IPTABLES_CHAIN], { allowFailure: true });
    this.#lastIptables = undefined;
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
      this.#variant = await detectIptablesVariant(this.#run);
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

/** The firewall of the host this process runs on. */
export function createFirewall(runner: Runner, logger: Logger): Firewall {
  return new HostFirewall(runner, logger);
}
