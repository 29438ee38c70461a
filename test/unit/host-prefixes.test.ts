import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { IpDatapath } from "../../src/datapath/ip-datapath.ts";
import { formatPrefix } from "../../src/ipam/prefix.ts";
import { createRecordingRunner } from "../support/recording-runner.ts";

// `ip -j` output as iproute2 6.1 prints it (trimmed to the fields that matter).
const ROUTES_V4 = JSON.stringify([
  { dst: "default", gateway: "172.17.0.254", dev: "d0" },
  { dst: "10.9.1.0/24", dev: "d0", scope: "link" },
  { type: "unreachable", dst: "10.77.0.0/16" },
  { dst: "172.17.0.0/16", dev: "d0", scope: "link" },
  { type: "local", dst: "10.9.0.1", dev: "d0", table: "local" },
  { type: "broadcast", dst: "10.9.1.255", dev: "d0", table: "local" },
  { type: "local", dst: "10.88.0.0/16", dev: "lo", table: "local" },
  { type: "broadcast", dst: "172.17.255.255", dev: "d0", table: "local" },
  { dst: "224.0.0.0/4", dev: "d0" },
]);
const ROUTES_V6 = JSON.stringify([
  { dst: "fd00:5::/64", dev: "d0" },
  { dst: "fe80::/64", dev: "d0" },
  { dst: "default", gateway: "fd00:5::fe", dev: "d0" },
  { type: "local", dst: "fd00:5::1", dev: "d0", table: "local" },
  { type: "multicast", dst: "ff00::/8", dev: "d0", table: "local" },
]);
const ADDRESSES = JSON.stringify([
  {
    ifname: "lo",
    addr_info: [
      { family: "inet", local: "127.0.0.1", prefixlen: 8 },
      { family: "inet6", local: "::1", prefixlen: 128 },
    ],
  },
  { ifname: "eth1", addr_info: [] },
  {
    ifname: "d0",
    addr_info: [
      { family: "inet", local: "172.17.0.1", prefixlen: 16 },
      { family: "inet", local: "10.9.0.1", address: "10.9.1.0", prefixlen: 24 },
      { family: "inet6", local: "fd00:5::1", prefixlen: 64 },
      { family: "inet6", local: "fe80::28c2:8bff:fe80:f15b", prefixlen: 64 },
    ],
  },
]);

function datapathAnswering(v6: { stdout?: string; stderr?: string; exitCode?: number }) {
  const runner = createRecordingRunner((argv) => {
    if (argv.includes("-4")) return { stdout: ROUTES_V4 };
    if (argv.includes("-6")) return v6;
    return { stdout: ADDRESSES };
  });
  return { runner, datapath: new IpDatapath(runner) };
}

describe("IpDatapath.hostPrefixes parses ip -j output", () => {
  test("routes of every table and addresses, as networks, once each", {
    timeout: 10_000,
  }, async () => {
    const { runner, datapath } = datapathAnswering({ stdout: ROUTES_V6 });
    const got = (await datapath.hostPrefixes()).map(formatPrefix);
    assert.deepEqual(got.toSorted(), [
      "10.77.0.0/16",
      "10.88.0.0/16",
      "10.9.0.1/32",
      "10.9.1.0/24",
      "127.0.0.0/8",
      "172.17.0.0/16",
      "::1/128",
      "fd00:5::/64",
      "fd00:5::1/128",
    ]);
    assert.deepEqual(runner.calls.map((call) => call.argv.join(" ")).toSorted(), [
      "ip -j -4 route show table all",
      "ip -j -6 route show table all",
      "ip -j addr show",
    ]);
  });

  test("a kernel without IPv6 has no IPv6 routes", { timeout: 10_000 }, async () => {
    const { datapath } = datapathAnswering({
      exitCode: 255,
      stderr: "RTNETLINK answers: Address family not supported by protocol\n",
    });
    const got = (await datapath.hostPrefixes()).map(formatPrefix);
    assert.ok(got.includes("172.17.0.0/16"), "IPv4 routes still read");
    assert.ok(got.includes("fd00:5::/64"), "addresses still read");
    assert.ok(!got.includes("fd00:5::1/128"), "no IPv6 route read");
  });

  test("any other failure of the IPv6 dump is an error", { timeout: 10_000 }, async () => {
    const { datapath } = datapathAnswering({ exitCode: 1, stderr: "Error: something else\n" });
    await assert.rejects(datapath.hostPrefixes(), /ip -j -6 route show table all failed/);
  });

  test("empty output is no entries", { timeout: 10_000 }, async () => {
    const runner = createRecordingRunner(() => ({ stdout: "" }));
    assert.deepEqual(await new IpDatapath(runner).hostPrefixes(), []);
  });
});
