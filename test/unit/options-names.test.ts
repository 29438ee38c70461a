import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseNetworkOptions } from "../../src/driver/options.ts";
import { parsePortBindings } from "../../src/driver/ports.ts";
import {
  bridgeNameFor,
  macFor,
  validateInterfaceName,
  validateMac,
  vethNamesFor,
} from "../../src/names.ts";

const ID = "0123456789abcdef".repeat(4);

describe("name derivation", () => {
  it("derives names that fit IFNAMSIZ", () => {
    assert.equal(bridgeNameFor(ID), "sy-0123456789ab");
    assert.deepEqual(vethNamesFor(ID), { hostVeth: "vsy0123456789a", peerVeth: "csy0123456789a" });
    for (const name of [bridgeNameFor(ID), ...Object.values(vethNamesFor(ID))])
      assert.ok(name.length <= 15);
  });

  it("derives a MAC from the IPv4 address as Docker does, else from the endpoint ID", () => {
    assert.equal(macFor(ID, "172.18.0.2/16"), "02:42:ac:12:00:02");
    const fallback = macFor(ID);
    assert.match(fallback, /^02:42(:[0-9a-f]{2}){4}$/);
    assert.equal(macFor(ID), fallback, "stable");
  });

  it("checks interface names", () => {
    assert.equal(validateInterfaceName("br-lan_1.2", "bridge"), "br-lan_1.2");
    assert.throws(
      () => validateInterfaceName("sixteen-chars-xx", "bridge"),
      /16 bytes long; Linux allows at most 15/,
    );
    assert.throws(() => validateInterfaceName("ünï", "bridge"), /characters/);
    assert.throws(() => validateInterfaceName("a/b", "bridge"), /characters/);
    assert.throws(() => validateInterfaceName("-x", "bridge"), /characters/);
  });

  it("checks MAC addresses", () => {
    assert.equal(validateMac("02:42:AC:11:00:02"), "02:42:ac:11:00:02");
    assert.throws(() => validateMac("02:42:ac:11:00"), /not of the form/);
    assert.throws(() => validateMac("01:00:5e:00:00:01"), /multicast/);
  });
});

describe("parseNetworkOptions", () => {
  it("gives Docker bridge defaults when nothing is set", () => {
    assert.deepEqual(parseNetworkOptions(undefined), {
      icc: true,
      masquerade: true,
      internal: false,
      enableIpv6: false,
      generic: {},
    });
  });

  it("reads every option", () => {
    const parsed = parseNetworkOptions({
      "com.docker.network.enable_ipv6": true,
      "com.docker.network.internal": true,
      "com.docker.network.generic": {
        "com.docker.network.bridge.name": "mybr",
        "com.docker.network.driver.mtu": "1400",
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.bridge.enable_ip_masquerade": "0",
        "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1",
      },
    });
    assert.equal(parsed.bridgeName, "mybr");
    assert.equal(parsed.mtu, 1400);
    assert.equal(parsed.icc, false);
    assert.equal(parsed.masquerade, false);
    assert.equal(parsed.hostBindingIpv4, "127.0.0.1");
    assert.equal(parsed.internal, true);
    assert.equal(parsed.enableIpv6, true);
  });

  for (const [generic, message] of [
    [{ "com.docker.network.driver.mtu": "67" }, /from 68 to 65535/],
    [{ "com.docker.network.driver.mtu": "1e3" }, /whole number/],
    [{ "com.docker.network.bridge.host_binding_ipv4": "1.2.3.256" }, /IPv4 address/],
    [{ bridge: "br1", "com.docker.network.bridge.name": "br2" }, /both name a bridge/],
    [{ "com.docker.network.bridge.enable_icc": "yes" }, /true or false/],
  ] as const) {
    it(`refuses ${JSON.stringify(generic)}`, () => {
      assert.throws(() => parseNetworkOptions({ "com.docker.network.generic": generic }), message);
    });
  }

  it("refuses a generic option block that is not a map of strings", () => {
    assert.throws(
      () => parseNetworkOptions({ "com.docker.network.generic": { bridge: 5 } }),
      /must be a string/,
    );
    assert.throws(
      () => parseNetworkOptions({ "com.docker.network.generic": ["x"] }),
      /object of strings/,
    );
    assert.throws(() => parseNetworkOptions({ "com.docker.network.internal": 3 }), /boolean/);
  });
});

describe("parsePortBindings", () => {
  it("decodes Docker's port map", () => {
    assert.deepEqual(
      parsePortBindings({
        "com.docker.network.portmap": [
          { Proto: 6, IP: "", Port: 80, HostIP: "", HostPort: 8081, HostPortEnd: 8081 },
          { Proto: 17, IP: "", Port: 53, HostIP: "127.0.0.1", HostPort: 0, HostPortEnd: 0 },
        ],
      }),
      [
        { proto: "tcp", containerPort: 80, hostIp: "", hostPort: 8081, hostPortEnd: 8081 },
        { proto: "udp", containerPort: 53, hostIp: "127.0.0.1", hostPort: 0, hostPortEnd: 0 },
      ],
    );
  });

  it("refuses bad entries", () => {
    assert.throws(() => parsePortBindings({ "com.docker.network.portmap": {} }), /must be a list/);
    assert.throws(
      () => parsePortBindings({ "com.docker.network.portmap": [{ Proto: 1, Port: 80 }] }),
      /protocol 1/,
    );
    assert.throws(
      () => parsePortBindings({ "com.docker.network.portmap": [{ Proto: 6, Port: 70000 }] }),
      /port number/,
    );
    assert.throws(
      () => parsePortBindings({ "com.docker.network.portmap": [{ Proto: 6, Port: 0 }] }),
      /must not be 0/,
    );
  });
});
