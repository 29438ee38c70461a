/**
 * Growth without Docker: one firewall apply (HostFirewall: nft and the iptables chain) in a
 * throwaway network namespace, at N networks (a network made: the full atomic rebuild) and at
 * N published ports (one port published: an element transaction, against a full rebuild of
 * the same state). Needs root. Prints min / median / max over RUNS samples.
 *
 *   node bench/firewall.ts [RUNS]      (default 7)
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { pino } from "pino";
import { createRunner, type Runner } from "../src/exec/runner.ts";
import { HostFirewall } from "../src/firewall/host-firewall.ts";
import { emptyState, type NetworkRecord, type StateDocument } from "../src/state/model.ts";
import { quantile } from "./lib/stats.ts";

const runs = Number(process.argv[2] ?? 7);
if (process.getuid?.() !== 0) throw new Error("bench/firewall.ts needs root (network namespaces)");

const namespace = `sybench-${randomBytes(3).toString("hex")}`;
execFileSync("ip", ["netns", "add", namespace]);
const base = createRunner(pino({ level: "silent" }));
const runner: Runner = (argv, options) =>
  base(["ip", "netns", "exec", namespace, ...argv], options);

function network(i: number): NetworkRecord {
  const subnet = `10.${100 + Math.floor(i / 256)}.${i % 256}`;
  return {
    id: `n${i}`,
    bridge: `sy-b${i}`,
    bridgeOwned: true,
    ipv4: [{ pool: `${subnet}.0/24`, gateway: `${subnet}.1/24` }],
    ipv6: [],
    internal: false,
    enableIpv6: false,
    icc: true,
    masquerade: true,
    options: {},
  };
}

function withNetworks(count: number): StateDocument {
  const state = emptyState();
  for (let i = 0; i < count; i++) state.networks[`n${i}`] = network(i);
  return state;
}

/** `count` endpoints each publishing one port, spread over 50 networks (≤ 200 per /24). */
function withPorts(count: number): StateDocument {
  const state = withNetworks(50);
  for (let i = 0; i < count; i++) {
    const n = i % 50;
    const host = Math.floor(i / 50) + 2;
    const subnet = `10.${100 + Math.floor(n / 256)}.${n % 256}`;
    state.endpoints[`e${i}`] = {
      id: `e${i}`,
      networkId: `n${n}`,
      hostVeth: `vsy${i}`,
      peerVeth: `csy${i}`,
      mac: "02:42:00:00:00:02",
      address: `${subnet}.${host}/24`,
      ports: [
        {
          proto: "tcp",
          containerPort: 80,
          hostIp: "",
          hostPort: 10000 + i,
          hostPortEnd: 10000 + i,
        },
      ],
    };
  }
  return state;
}

const time = async (work: () => Promise<void>): Promise<number> => {
  const started = performance.now();
  await work();
  return performance.now() - started;
};
const spread = (values: number[]) =>
  `${Math.min(...values).toFixed(1)} / ${quantile(values, 0.5).toFixed(1)} / ${Math.max(...values).toFixed(1)}`;

try {
  console.log(`one firewall apply, ms (min / median / max of ${runs})`);
  for (const count of [1, 100, 500]) {
    const samples: number[] = [];
    for (let run = 0; run < runs; run++) {
      const firewall = new HostFirewall(runner, pino({ level: "silent" }), "nft");
      const state = withNetworks(count - 1);
      await firewall.apply(state);
      state.networks[`n${count - 1}`] = network(count - 1);
      samples.push(await time(() => firewall.apply(state)));
    }
    console.log(
      `network create at ${String(count).padEnd(5)} networks (full rebuild)   ${spread(samples)}`,
    );
  }
  for (const count of [10, 1000, 10000]) {
    const incremental: number[] = [];
    const full: number[] = [];
    const firewall = new HostFirewall(runner, pino({ level: "silent" }), "nft");
    const state = withPorts(count);
    await firewall.apply(state);
    for (let run = 0; run < runs; run++) {
      const endpoint = state.endpoints.e0;
      if (endpoint === undefined) throw new Error("no endpoint");
      const port = 60000 + run;
      state.endpoints.e0 = {
        ...endpoint,
        ports: [{ proto: "tcp", containerPort: 80, hostIp: "", hostPort: port, hostPortEnd: port }],
      };
      incremental.push(await time(() => firewall.apply(state)));
      // The same state by a full rebuild on a warm firewall (its probes already done): the
      // rebuild a network change forces, which is what every port change did before.
      const rebuilder = new HostFirewall(runner, pino({ level: "silent" }), "nft");
      const fewer = { ...state, networks: { ...state.networks } };
      delete fewer.networks.n49;
      await rebuilder.apply(fewer);
      full.push(await time(() => rebuilder.apply(state)));
    }
    const ratios = incremental.map((value, i) => value / (full[i] ?? Number.NaN));
    console.log(
      `one port published at ${String(count).padEnd(5)} ports: elements ${spread(incremental)}   full rebuild ${spread(full)}   ratio ${ratios.map((r) => r.toFixed(2)).sort()[Math.floor(ratios.length / 2)]}`,
    );
  }
} finally {
  execFileSync("ip", ["netns", "del", namespace]);
}
