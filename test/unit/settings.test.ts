import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { readSettings } from "../../src/settings.ts";

const TIMEOUT = { timeout: 10_000 };

describe("settings: etcd", () => {
  it("accepts IPv4, IPv6 and named endpoints", TIMEOUT, () => {
    const settings = readSettings({
      ETCD_ENDPOINTS: "http://10.0.0.5:2379, http://[fd00::1]:2379,https://etcd.example:2379",
    });
    assert.deepEqual(settings.etcdEndpoints, [
      "http://10.0.0.5:2379",
      "http://[fd00::1]:2379",
      "https://etcd.example:2379",
    ]);
  });

  it("refuses TLS files with an http:// endpoint, naming the setting", TIMEOUT, () => {
    const cases: [Record<string, string>, string][] = [
      [{ ETCD_CA_FILE: "/tls/ca.pem" }, "ETCD_CA_FILE"],
      [{ ETCD_CERT_FILE: "/tls/cert.pem", ETCD_KEY_FILE: "/tls/key.pem" }, "ETCD_CERT_FILE"],
    ];
    for (const [files, named] of cases) {
      assert.throws(
        () =>
          readSettings({ ETCD_ENDPOINTS: "https://10.0.0.5:2379,http://10.0.0.6:2379", ...files }),
        {
          message: `setting ${named} is set but ETCD_ENDPOINTS has "http://10.0.0.6:2379", which does not use TLS; use https:// endpoints with TLS files`,
        },
      );
    }
  });

  it("takes TLS files with https:// endpoints; a certificate needs its key", TIMEOUT, () => {
    const settings = readSettings({
      ETCD_ENDPOINTS: "https://[fd00::1]:2379",
      ETCD_CA_FILE: "/tls/ca.pem",
      ETCD_CERT_FILE: "/tls/cert.pem",
      ETCD_KEY_FILE: "/tls/key.pem",
    });
    assert.equal(settings.etcdCaFile, "/tls/ca.pem");
    assert.equal(settings.etcdKeyFile, "/tls/key.pem");
    assert.throws(
      () => readSettings({ ETCD_ENDPOINTS: "https://10.0.0.5:2379", ETCD_CERT_FILE: "/tls/c" }),
      { message: /ETCD_CERT_FILE and ETCD_KEY_FILE go together/ },
    );
  });
});

describe("settings: the resolver of names across hosts", () => {
  it("listens on 169.254.53.53 unless told otherwise; empty turns it off", TIMEOUT, () => {
    assert.equal(readSettings({}).dnsAddress, "169.254.53.53");
    assert.equal(readSettings({ DNS_ADDRESS: "10.255.0.53" }).dnsAddress, "10.255.0.53");
    assert.equal(readSettings({ DNS_ADDRESS: "" }).dnsAddress, undefined);
    assert.equal(readSettings({}).dockerSocket, "/host/docker-api/docker.sock");
  });

  it("refuses anything but a unicast IPv4 address, naming the setting", TIMEOUT, () => {
    for (const value of ["fd00::53", "127.0.0.53", "224.0.0.1", "0.0.0.0", "10.0.0.1/32", "x"]) {
      assert.throws(() => readSettings({ DNS_ADDRESS: value }), /setting DNS_ADDRESS=/, value);
    }
    assert.throws(() => readSettings({ DNS_ADDRESS: "10.0.0.53\nip link" }), /DNS_ADDRESS/);
  });
});

describe("settings: metrics over TCP", () => {
  it("is off unless METRICS_ADDRESS names an address and a port", TIMEOUT, () => {
    assert.equal(readSettings({}).metricsAddress, undefined);
    assert.equal(readSettings({ METRICS_ADDRESS: "" }).metricsAddress, undefined);
    assert.deepEqual(readSettings({ METRICS_ADDRESS: "127.0.0.1:9474" }).metricsAddress, {
      host: "127.0.0.1",
      port: 9474,
    });
    assert.deepEqual(readSettings({ METRICS_ADDRESS: "[::1]:9474" }).metricsAddress, {
      host: "::1",
      port: 9474,
    });
    assert.deepEqual(readSettings({ METRICS_ADDRESS: "[FD00:0::5]:65535" }).metricsAddress, {
      host: "fd00::5",
      port: 65535,
    });
  });

  it("refuses anything else, naming the setting", TIMEOUT, () => {
    for (const value of [
      "9474",
      ":9474",
      "127.0.0.1",
      "127.0.0.1:",
      "127.0.0.1:0",
      "127.0.0.1:09474",
      "127.0.0.1:65536",
      "127.0.0.1:94741",
      "localhost:9474",
      "::1:9474",
      "[::1]",
      "[127.0.0.1]:9474",
      "[::1]:9474/metrics",
      "http://127.0.0.1:9474",
      "300.0.0.1:9474",
      "127.0.0.1:9474\nip link",
    ]) {
      assert.throws(
        () => readSettings({ METRICS_ADDRESS: value }),
        /^Error: setting METRICS_ADDRESS=".*" must be an IP address and a port/s,
        value,
      );
    }
  });
});
