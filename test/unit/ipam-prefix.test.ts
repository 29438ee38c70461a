import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  formatAddress,
  formatPrefix,
  isNetworkPrefix,
  lastAddress,
  networkOf,
  nthSubnet,
  parseAddress,
  parseAddressOrPrefix,
  parsePrefix,
  prefixContains,
  prefixContainsAddress,
  prefixesOverlap,
  subnetCount,
  tryParseAddress,
} from "../../src/ipam/prefix.ts";

const p = parsePrefix;

describe("address parsing and formatting", () => {
  const roundTrips: [input: string, canonical: string, v6: boolean][] = [
    ["0.0.0.0", "0.0.0.0", false],
    ["10.15.20.5", "10.15.20.5", false],
    ["255.255.255.255", "255.255.255.255", false],
    ["::", "::", true],
    ["::1", "::1", true],
    ["1::", "1::", true],
    ["fe80::1", "fe80::1", true],
    ["FE80:0:0:0:0:0:0:1", "fe80::1", true],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1", true], // first of two equal runs
    ["2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1", true], // longest run wins
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", true], // a single zero is not compressed
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1", true],
    ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0", true], // "::" may stand for one group
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1", true],
    ["::ffff:c000:0201", "::ffff:192.0.2.1", true],
    ["64:ff9b::192.0.2.1", "64:ff9b::c000:201", true],
    ["fd5b:7c1e:ad00::", "fd5b:7c1e:ad00::", true],
    ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true],
  ];
  for (const [input, canonical, v6] of roundTrips) {
    test(`${input} → ${canonical}`, () => {
      const address = parseAddress(input);
      assert.equal(address.v6, v6);
      assert.equal(formatAddress(address), canonical);
      assert.deepEqual(parseAddress(canonical), address);
    });
  }

  const invalid = [
    "",
    "10.0.0",
    "10.0.0.0.0",
    "300.1.1.1",
    "256.0.0.0",
    "10.0.0.-1",
    "010.0.0.1",
    "1.2.3.4 ",
    " 1.2.3.4",
    "a.b.c.d",
    "fe80::zz",
    ":::",
    "1:::2",
    "1::2::3",
    ":1::",
    "1::2:",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8::",
    "12345::",
    "fe80::1%eth0",
    "[::1]",
    "1.2.3.4::",
    "::1.2.3.4:5",
    "::1.2.3",
    "10.0.0.0/24",
  ];
  for (const text of invalid) {
    test(`refuses ${JSON.stringify(text)}`, () => {
      assert.equal(tryParseAddress(text), undefined);
      assert.throws(() => parseAddress(text), {
        kind: "BadRequest",
        message: `invalid IP address "${text}"`,
      });
    });
  }

  test("parseAddressOrPrefix accepts a bare address or one with a length", () => {
    assert.deepEqual(parseAddressOrPrefix("10.0.0.5"), { v6: false, value: 0x0a000005n });
    assert.deepEqual(parseAddressOrPrefix("10.0.0.5/24"), { v6: false, value: 0x0a000005n });
    assert.deepEqual(parseAddressOrPrefix("fd00::5/64"), parseAddress("fd00::5"));
    assert.throws(() => parseAddressOrPrefix("10.0.0.5/33"), { kind: "BadRequest" });
  });
});

describe("prefix parsing", () => {
  const valid: [input: string, formatted: string, network: string][] = [
    ["10.15.20.0/24", "10.15.20.0/24", "10.15.20.0/24"],
    ["10.15.20.5/24", "10.15.20.5/24", "10.15.20.0/24"],
    ["0.0.0.0/0", "0.0.0.0/0", "0.0.0.0/0"],
    ["10.0.0.5/32", "10.0.0.5/32", "10.0.0.5/32"],
    ["fd00::/8", "fd00::/8", "fd00::/8"],
    ["FD5B:7C1E:AD00:0::/40", "fd5b:7c1e:ad00::/40", "fd5b:7c1e:ad00::/40"],
    ["2001:db8::1/64", "2001:db8::1/64", "2001:db8::/64"],
    ["::/0", "::/0", "::/0"],
    ["::1/128", "::1/128", "::1/128"],
  ];
  for (const [input, formatted, network] of valid) {
    test(`${input} → ${network}`, () => {
      const prefix = p(input);
      assert.equal(formatPrefix(prefix), formatted);
      assert.equal(formatPrefix(networkOf(prefix)), network);
      assert.equal(isNetworkPrefix(prefix), formatted === network);
    });
  }

  const invalid: [input: string, message: string][] = [
    ["", 'invalid CIDR "": missing "/prefix-length"'],
    ["10.0.0.0", 'invalid CIDR "10.0.0.0": missing "/prefix-length"'],
    ["10.0.0.0/33", 'invalid CIDR "10.0.0.0/33": prefix length must be 0-32 for IPv4'],
    ["fd00::/129", 'invalid CIDR "fd00::/129": prefix length must be 0-128 for IPv6'],
    ["300.1.1.1/24", 'invalid CIDR "300.1.1.1/24": "300.1.1.1" is not an IP address'],
    ["fe80::zz/64", 'invalid CIDR "fe80::zz/64": "fe80::zz" is not an IP address'],
    ["10.0.0.0/", 'invalid CIDR "10.0.0.0/": prefix length must be 0-32 for IPv4'],
    ["10.0.0.0/024", 'invalid CIDR "10.0.0.0/024": prefix length must be 0-32 for IPv4'],
    ["10.0.0.0/-1", 'invalid CIDR "10.0.0.0/-1": prefix length must be 0-32 for IPv4'],
    ["10.0.0.0/24/25", 'invalid CIDR "10.0.0.0/24/25": prefix length must be 0-32 for IPv4'],
    ["/24", 'invalid CIDR "/24": "" is not an IP address'],
  ];
  for (const [input, message] of invalid) {
    test(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(() => p(input), { kind: "BadRequest", message });
    });
  }
});

describe("containment and overlap", () => {
  const cases: [a: string, b: string, aContainsB: boolean, overlap: boolean][] = [
    ["10.0.0.0/8", "10.15.20.0/24", true, true],
    ["10.15.20.0/24", "10.0.0.0/8", false, true],
    ["10.15.20.0/24", "10.15.20.0/24", true, true],
    ["10.15.20.0/24", "10.15.21.0/24", false, false],
    ["10.15.20.0/23", "10.15.21.0/24", true, true],
    ["10.15.20.0/25", "10.15.20.128/25", false, false],
    ["10.15.20.0/24", "10.15.20.255/32", true, true],
    ["0.0.0.0/0", "255.255.255.255/32", true, true],
    ["fd00::/8", "fd5b:7c1e:ad00::/40", true, true],
    ["fd5b:7c1e:ad00::/64", "fd5b:7c1e:ad00:1::/64", false, false],
    ["10.0.0.0/8", "::a00:0/104", false, false], // families never overlap
  ];
  for (const [a, b, contains, overlap] of cases) {
    test(`${a} vs ${b}`, () => {
      assert.equal(prefixContains(p(a), p(b)), contains);
      assert.equal(prefixesOverlap(p(a), p(b)), overlap);
      assert.equal(prefixesOverlap(p(b), p(a)), overlap);
    });
  }

  test("address membership", () => {
    const pool = p("10.15.20.0/24");
    assert.equal(prefixContainsAddress(pool, parseAddress("10.15.20.0")), true);
    assert.equal(prefixContainsAddress(pool, parseAddress("10.15.20.255")), true);
    assert.equal(prefixContainsAddress(pool, parseAddress("10.15.21.0")), false);
    assert.equal(prefixContainsAddress(pool, parseAddress("::a0f:1405")), false);
    assert.equal(lastAddress(pool), parseAddress("10.15.20.255").value);
  });
});

describe("subnet splitting", () => {
  test("192.168.0.0/16 into /20s", () => {
    const base = p("192.168.0.0/16");
    assert.equal(subnetCount(base, 20), 16n);
    assert.equal(formatPrefix(nthSubnet(base, 20, 0n)), "192.168.0.0/20");
    assert.equal(formatPrefix(nthSubnet(base, 20, 1n)), "192.168.16.0/20");
    assert.equal(formatPrefix(nthSubnet(base, 20, 15n)), "192.168.240.0/20");
  });

  test("an IPv6 /40 into /64s without materialising them", () => {
    const base = p("fd5b:7c1e:ad00::/40");
    assert.equal(subnetCount(base, 64), 1n << 24n);
    assert.equal(formatPrefix(nthSubnet(base, 64, 1n)), "fd5b:7c1e:ad00:1::/64");
    assert.equal(formatPrefix(nthSubnet(base, 64, (1n << 24n) - 1n)), "fd5b:7c1e:adff:ffff::/64");
  });

  test("a size shorter than the base or longer than the family gives no subnets", () => {
    assert.equal(subnetCount(p("10.0.0.0/16"), 8), 0n);
    assert.equal(subnetCount(p("10.0.0.0/16"), 33), 0n);
    assert.equal(subnetCount(p("10.0.0.0/16"), 16), 1n);
  });
});
