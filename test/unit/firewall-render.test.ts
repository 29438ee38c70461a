import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderIptables, renderNftables } from "../../src/firewall/render.ts";
import { emptyState, type NetworkRecord, type StateDocument } from "../../src/state/model.ts";

function network(
  id: string,
  bridge: string,
  pool: string,
  extra: Partial<NetworkRecord> = {},
): NetworkRecord {
  return {
    id,
    bridge,
    bridgeOwned: true,
    ipv4: [{ pool, gateway: pool.replace(/0\/(\d+)$/, "1/$1") }],
    ipv6: [],
    internal: false,
    enableIpv6: false,
    icc: true,
    masquerade: true,
    options: {},
    ...extra,
  };
}

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
      ports: [{ proto: "tcp", containerPort: 80, hostIp: "", hostPort: 8081, hostPortEnd: 8081 }],
    };
    assert.equal(
      renderNftables(document),
      `table inet switchyard {}
delete table inet switchyard
table bridge switchyard {}
delete table bridge switchyard
table inet switchyard {
  set bridges {
    type ifname;
    elements = { "sy-one", "sy-three", "sy-two" }
  }
  chain forward {
    type filter hook forward priority -10; policy accept;
    oifname "sy-one" iifname != "sy-one" ct state established,related accept
    oifname "sy-one" iifname != "sy-one" ct status dnat accept
    oifname "sy-one" iifname != @bridges iifname != "docker0" iifname != "br-*" ip daddr 10.1.0.2 tcp dport 80 accept
    oifname "sy-one" iifname != "sy-one" drop comment "isolation"
    iifname "sy-three" oifname != "sy-three" drop comment "internal"
    oifname "sy-three" iifname != "sy-three" drop comment "internal"
    iifname "sy-two" oifname "sy-two" drop comment "icc off"
    oifname "sy-two" iifname != "sy-two" ct state established,related accept
    oifname "sy-two" iifname != "sy-two" ct status dnat accept
    oifname "sy-two" iifname != "sy-two" drop comment "isolation"
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    iifname != "sy-one" fib daddr type local tcp dport 8081 dnat ip to 10.1.0.2:80
  }
  chain output {
    type nat hook output priority -100; policy accept;
    ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8081 dnat ip to 10.1.0.2:80
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    ip saddr 10.1.0.0/24 oifname != "sy-one" masquerade
  }
}
`,
    );
  });
});

describe("renderIptables", () => {
  it("accepts traffic of Switchyard's bridges and leaves Docker's bridges to Docker (golden)", () => {
    assert.equal(
      renderIptables(
        state(network("n1", "sy-one", "10.1.0.0/24"), network("n2", "br1", "10.2.0.0/24")),
      ),
      `*filter
:SWITCHYARD - [0:0]
-F SWITCHYARD
-A SWITCHYARD -o br1 -j ACCEPT
-A SWITCHYARD -o sy-one -j ACCEPT
-A SWITCHYARD -o docker0 -j RETURN
-A SWITCHYARD -o br-+ -j RETURN
-A SWITCHYARD -i br1 -j ACCEPT
-A SWITCHYARD -i sy-one -j ACCEPT
COMMIT
`,
    );
  });
});
