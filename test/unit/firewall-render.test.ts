import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  publishedElements,
  renderIptables,
  renderNftables,
  renderNftStructure,
  renderPublishedUpdate,
} from "../../src/firewall/render.ts";
import { emptyState, type NetworkRecord, type StateDocument } from "../../src/state/model.ts";
import { networkRecord } from "../support/records.ts";

const network = networkRecord;

function state(...networks: NetworkRecord[]): StateDocument {
  const document = emptyState();
  for (const item of networks) document.networks[item.id] = item;
  return document;
}

describe("renderNftables", () => {
  it("removes the table when there is no network", () => {
    assert.equal(
      renderNftables(emptyState()),
      "table inet switchyard {}\ndelete table inet switchyard\ntable bridge switchyard {}\ndelete table bridge switchyard\n",
    );
  });

  it("renders isolation, ICC, internal and masquerade rules (golden)", () => {
    const document = state(
      network("n1", "sy-one", "10.1.0.0/24"),
      network("n2", "sy-two", "10.2.0.0/24", { icc: false, masquerade: false }),
      network("n3", "sy-three", "10.3.0.0/24", { internal: true }),
    );
    document.endpoints.e1 = {
      id: "e1",
      networkId: "n1",
      hostVeth: "vsye1",
      peerVeth: "csye1",
      mac: "02:42:0a:01:00:02",
      address: "10.1.0.2/24",
      ports: [
        { proto: "tcp", containerPort: 80, hostIp: "", hostPort: 8081, hostPortEnd: 8081 },
        { proto: "sctp", containerPort: 90, hostIp: "", hostPort: 8082, hostPortEnd: 8082 },
        { proto: "udp", containerPort: 53, hostIp: "10.0.0.5", hostPort: 5353, hostPortEnd: 5353 },
        {
          proto: "sctp",
          containerPort: 91,
          hostIp: "127.0.0.1",
          hostPort: 8083,
          hostPortEnd: 8083,
        },
      ],
    };
    assert.equal(
      renderNftables(document, { bridgeMeta: true, uplinks: ["br0"] }),
      `table inet switchyard {}
delete table inet switchyard
table bridge switchyard {}
delete table bridge switchyard
table inet switchyard {
  set bridges {
    type ifname;
    elements = { "sy-one", "sy-three", "sy-two" }
  }
  set uplinks {
    type ifname;
    elements = { "br0" }
  }
  map published {
    type inet_proto . inet_service : ipv4_addr . inet_service;
    elements = { tcp . 8081 : 10.1.0.2 . 80, sctp . 8082 : 10.1.0.2 . 90 }
  }
  map published_addr {
    type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;
    elements = { 10.0.0.5 . udp . 5353 : 10.1.0.2 . 53 }
  }
  set published_own {
    type ifname . inet_proto . inet_service;
    elements = { "sy-one" . tcp . 8081, "sy-one" . sctp . 8082 }
  }
  set published_addr_own {
    type ifname . ipv4_addr . inet_proto . inet_service;
    elements = { "sy-one" . 10.0.0.5 . udp . 5353 }
  }
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname @bridges meta mark set meta mark | 0x10000000 comment "leaves a Switchyard bridge"
    iifname @bridges oifname != @bridges oifname != @uplinks meta oifkind "bridge" meta mark set meta mark & 0xefffffff comment "into another bridge: Docker decides"
    iifname "sy-three" oifname != "sy-three" drop comment "internal"
    oifname "sy-three" iifname != "sy-three" drop comment "internal"
    iifname "sy-two" oifname "sy-two" drop comment "icc off"
    oifname "sy-one" iifname != "sy-one" ct state established,related accept
    oifname "sy-one" iifname != "sy-one" ct status dnat accept
    oifname "sy-one" iifname != "sy-one" drop comment "isolation"
    oifname "sy-two" iifname != "sy-two" ct state established,related accept
    oifname "sy-two" iifname != "sy-two" ct status dnat accept
    oifname "sy-two" iifname != "sy-two" drop comment "isolation"
  }
  chain raw_prerouting {
    type filter hook prerouting priority -300; policy accept;
    iifname != "sy-one" ip daddr 10.1.0.0/24 ip daddr != 10.1.0.1 drop comment "no direct access"
    iifname != "sy-three" ip daddr 10.3.0.0/24 ip daddr != 10.3.0.1 drop comment "no direct access"
    iifname != "sy-two" ip daddr 10.2.0.0/24 ip daddr != 10.2.0.1 drop comment "no direct access"
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    meta nfproto ipv4 fib daddr type local iifname . meta l4proto . th dport != @published_own dnat ip to meta l4proto . th dport map @published
    iifname . ip daddr . meta l4proto . th dport != @published_addr_own dnat ip to ip daddr . meta l4proto . th dport map @published_addr
  }
  chain output {
    type nat hook output priority -100; policy accept;
    ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to meta l4proto . th dport map @published
    ip daddr != 127.0.0.0/8 dnat ip to ip daddr . meta l4proto . th dport map @published_addr
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    ip saddr 10.1.0.0/24 oifname != "sy-one" masquerade
  }
}
table bridge switchyard {
  chain forward {
    type filter hook forward priority -10; policy accept;
    meta ibrname "sy-two" meta obrname "sy-two" meta protocol { ip, ip6 } drop comment "icc off"
  }
}
`,
    );
  });

  it("drops ICC=false traffic by the network's addresses when the kernel cannot name the bridge (golden)", {
    timeout: 60_000,
  }, () => {
    const document = state(
      network("n1", "sy-one", "10.1.0.0/24", {
        icc: false,
        internal: true,
        ipv6: [{ pool: "fd00:1::/64", gateway: "fd00:1::1/64" }],
      }),
    );
    const rendered = renderNftables(document, { bridgeMeta: false });
    assert.equal(
      rendered.slice(rendered.lastIndexOf("table bridge switchyard {\n")),
      `table bridge switchyard {
  chain forward {
    type filter hook forward priority -10; policy accept;
    ip saddr 10.1.0.0/24 drop comment "icc off"
    ip daddr 10.1.0.0/24 drop comment "icc off"
    ip6 saddr fd00:1::/64 drop comment "icc off"
    ip6 daddr fd00:1::/64 drop comment "icc off"
  }
}
`,
    );
  });

  it("renders no bridge table when every network has ICC on and none is multi-host", {
    timeout: 60_000,
  }, () => {
    assert.doesNotMatch(
      renderNftables(state(network("n1", "sy-one", "10.1.0.0/24"))),
      /table bridge switchyard \{\n/,
    );
  });
});

describe("VXLAN from peer hosts only", () => {
  it("takes UDP 4789 only from the recorded peers, parsed, and renders nothing for single-host networks", {
    timeout: 10_000,
  }, () => {
    assert.doesNotMatch(renderNftables(state(network("n1", "sy-one", "10.1.0.0/24"))), /4789/);
    const document = state(network("n1", "sy-one", "10.60.0.0/24", { vxlanId: 4242 }));
    document.cluster = {
      hostId: "h1",
      networks: {
        "4242": {
          vni: 4242,
          networkId: "n1",
          subnet: "10.60.0.0/24",
          gateway: "10.60.0.1/24",
          blocks: [],
          // One peer from etcd is not an address: it must never reach the script.
          peers: ["192.0.2.7", "192.0.2.3", "1.2.3.4 } accept; flush ruleset"],
        },
      },
    };
    const rendered = renderNftables(document);
    assert.match(
      rendered,
      /set vxlan_peers \{\n {4}type ipv4_addr;\n {4}elements = \{ 192\.0\.2\.3, 192\.0\.2\.7 \}\n {2}\}/,
    );
    assert.match(
      rendered,
      /type filter hook input priority -1; policy accept;\n {4}udp dport 4789 @th,96,24 \{ 4242 \} ip saddr != @vxlan_peers drop/,
    );
    assert.doesNotMatch(rendered, /flush ruleset/);
  });

  // Regression: every UDP 4789 packet from a non-peer was dropped, which also dropped Docker
  // swarm's overlay and Calico's VXLAN on the same host.
  it("drops only the VNIs of Switchyard's networks, each once, in order (golden)", {
    timeout: 10_000,
  }, () => {
    const document = state(
      network("n1", "sy-b", "10.61.0.0/24", { vxlanId: 4343 }),
      network("n2", "sy-a", "10.60.0.0/24", { vxlanId: 4242 }),
      network("n3", "sy-c", "10.62.0.0/24"),
      network("n4", "sy-d", "10.63.0.0/24", { vxlanId: 16_777_215 }),
      network("n5", "sy-e", "10.64.0.0/24", { vxlanId: 4242 }),
    );
    const rendered = renderNftables(document);
    assert.equal(
      rendered.slice(rendered.indexOf("  set vxlan_peers"), rendered.indexOf("  map published {")),
      `  set vxlan_peers {
    type ipv4_addr;
  }
  chain vxlan_input {
    type filter hook input priority -1; policy accept;
    udp dport 4789 @th,96,24 { 4242, 4343, 16777215 } ip saddr != @vxlan_peers drop comment "Switchyard's VXLAN only from peer hosts"
  }
`,
    );
  });
});

describe("the resolver's address only for this host", () => {
  const resolverPart = (rendered: string): string =>
    rendered.slice(rendered.indexOf("  set resolver_flood"), rendered.indexOf("  map published {"));

  // Regression: nothing kept the LAN from the resolver's address: any neighbour could route to
  // it through this host and make the plugin's event loop answer.
  it("takes port 53 only from lo, the multi-host bridges' subnets and other container networks (golden)", {
    timeout: 10_000,
  }, () => {
    const document = state(
      network("n1", "sy-mesh", "10.60.0.0/24", { vxlanId: 4242 }),
      network("n2", "sy-one", "10.1.0.0/24"),
      network("n3", "sy-wide", "10.61.0.0/16", {
        vxlanId: 4343,
        ipv4: [{ pool: "10.61.0.0/16" }, { pool: "10.62.0.0/16", gateway: "10.62.0.1/16" }],
      }),
    );
    const rendered = renderNftables(document, {
      bridgeMeta: true,
      uplinks: ["eth0"],
      resolverAddress: "169.254.53.53",
    });
    assert.equal(
      resolverPart(rendered),
      `  set resolver_flood {
    type ipv4_addr;
    size 4096;
    flags dynamic,timeout;
    timeout 1m;
  }
  chain resolver_input {
    type filter hook input priority -1; policy accept;
    ip daddr 169.254.53.53 meta l4proto { tcp, udp } th dport 53 jump resolver_clients
    ip daddr 169.254.53.53 udp dport 53 iifname != "lo" update @resolver_flood { ip saddr limit rate over 200/second burst 400 packets } drop comment "a flood from one client"
  }
  chain resolver_clients {
    iifname "lo" return comment "the host itself"
    iifname "sy-mesh" ip saddr 10.60.0.0/24 return comment "a multi-host network's containers"
    iifname "sy-wide" ip saddr 10.61.0.0/16 return comment "a multi-host network's containers"
    iifname "sy-wide" ip saddr 10.62.0.0/16 return comment "a multi-host network's containers"
    iifname != @uplinks meta iifkind { "bridge", "veth" } return comment "another container network: refused by the resolver, at once"
    drop comment "the resolver answers only this host's containers"
  }
`,
    );
    // The structure (what decides between a rebuild and an element update) carries it too.
    assert.ok(
      renderNftStructure(document, { bridgeMeta: true, resolverAddress: "169.254.53.53" }).includes(
        "chain resolver_clients",
      ),
    );
  });

  it("guards the address with no multi-host network yet, and renders nothing without one", {
    timeout: 10_000,
  }, () => {
    const document = state(network("n2", "sy-one", "10.1.0.0/24"));
    const guarded = resolverPart(
      renderNftables(document, { bridgeMeta: true, resolverAddress: "169.254.53.53" }),
    );
    assert.match(guarded, /iifname "lo" return comment "the host itself"\n {4}iifname != @uplinks/);
    assert.doesNotMatch(renderNftables(document), /resolver|dport 53/);
  });

  it("guards the address before the first network, and only it (golden)", {
    timeout: 10_000,
  }, () => {
    assert.equal(
      renderNftables(emptyState(), {
        bridgeMeta: true,
        uplinks: ["eth0"],
        resolverAddress: "169.254.53.53",
      }),
      `table inet switchyard {}
delete table inet switchyard
table bridge switchyard {}
delete table bridge switchyard
table inet switchyard {
  set uplinks {
    type ifname;
    elements = { "eth0" }
  }
  set resolver_flood {
    type ipv4_addr;
    size 4096;
    flags dynamic,timeout;
    timeout 1m;
  }
  chain resolver_input {
    type filter hook input priority -1; policy accept;
    ip daddr 169.254.53.53 meta l4proto { tcp, udp } th dport 53 jump resolver_clients
    ip daddr 169.254.53.53 udp dport 53 iifname != "lo" update @resolver_flood { ip saddr limit rate over 200/second burst 400 packets } drop comment "a flood from one client"
  }
  chain resolver_clients {
    iifname "lo" return comment "the host itself"
    iifname != @uplinks meta iifkind { "bridge", "veth" } return comment "another container network: refused by the resolver, at once"
    drop comment "the resolver answers only this host's containers"
  }
}
`,
    );
  });

  it("refuses to render an address that is not IPv4", { timeout: 10_000 }, () => {
    const document = state(network("n2", "sy-one", "10.1.0.0/24"));
    for (const resolverAddress of ["fd00::53", "169.254.53.53; flush ruleset", ""]) {
      assert.throws(
        () => renderNftables(document, { bridgeMeta: true, resolverAddress }),
        /is not an IPv4 address/,
        resolverAddress,
      );
    }
  });
});

describe("published ports as elements", () => {
  const withPorts = (ports: StateDocument["endpoints"][string]["ports"]): StateDocument => {
    const document = state(network("n1", "sy-one", "10.1.0.0/24"));
    document.endpoints.e1 = {
      id: "e1",
      networkId: "n1",
      hostVeth: "vsye1",
      peerVeth: "csye1",
      mac: "02:42:0a:01:00:02",
      address: "10.1.0.2/24",
      ports,
    };
    return document;
  };
  const tcp = (hostPort: number, containerPort: number) => ({
    proto: "tcp" as const,
    containerPort,
    hostIp: "",
    hostPort,
    hostPortEnd: hostPort,
  });

  it("a port change leaves the rest of the ruleset as it was", () => {
    assert.equal(
      renderNftStructure(withPorts([tcp(8081, 80)])),
      renderNftStructure(withPorts([tcp(9000, 90), tcp(9001, 91)])),
    );
    assert.notEqual(
      renderNftStructure(withPorts([])),
      renderNftStructure(
        state(network("n1", "sy-one", "10.1.0.0/24"), network("n2", "b2", "10.2.0.0/24")),
      ),
    );
  });

  it("renders one transaction: removals first, then additions (golden)", () => {
    const update = renderPublishedUpdate(
      publishedElements(withPorts([tcp(8081, 80), tcp(8082, 82)])),
      publishedElements(withPorts([tcp(8081, 8080), tcp(8083, 83)])),
    );
    assert.equal(
      update,
      `delete element inet switchyard published { tcp . 8081, tcp . 8082 }
delete element inet switchyard published_own { "sy-one" . tcp . 8082 }
add element inet switchyard published { tcp . 8081 : 10.1.0.2 . 8080, tcp . 8083 : 10.1.0.2 . 83 }
add element inet switchyard published_own { "sy-one" . tcp . 8083 }
`,
    );
    const same = publishedElements(withPorts([tcp(8081, 80)]));
    assert.equal(renderPublishedUpdate(same, same), "");
  });
});

describe("renderIptables", () => {
  it("accepts traffic into Switchyard's bridges and, out of them, only what nftables marked (golden)", () => {
    assert.equal(
      renderIptables(
        state(network("n1", "sy-one", "10.1.0.0/24"), network("n2", "br1", "10.2.0.0/24")),
      ),
      `*filter
:SWITCHYARD - [0:0]
-F SWITCHYARD
-A SWITCHYARD -o br1 -j ACCEPT
-A SWITCHYARD -o sy-one -j ACCEPT
-A SWITCHYARD -i br1 -m mark --mark 0x10000000/0x10000000 -j ACCEPT
-A SWITCHYARD -i sy-one -m mark --mark 0x10000000/0x10000000 -j ACCEPT
COMMIT
`,
    );
  });
});
