import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { EtcdClient } from "../../src/cluster/etcd.ts";

describe("EtcdClient endpoints", () => {
  it("reaches an etcd at an IPv6 literal (http://[::1]:PORT)", { timeout: 10_000 }, async () => {
    // Regression: URL keeps the brackets of "[::1]" in hostname, and connecting to the host
    // "[::1]" fails to resolve, so IPv6 etcd endpoints never worked.
    const requests: { path: string | undefined; host: string | undefined }[] = [];
    const server = createServer((req, res) => {
      requests.push({ path: req.url, host: req.headers.host });
      req.resume();
      req.on("end", () => {
        res.setHeader("content-type", "application/json");
        const kv = {
          key: Buffer.from("k").toString("base64"),
          value: Buffer.from("v").toString("base64"),
        };
        res.end(JSON.stringify({ header: { revision: "7" }, kvs: [kv] }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "::1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const client = new EtcdClient([`http://[::1]:${port}`]);
      assert.equal(await client.get("k"), "v");
      assert.deepEqual(requests, [{ path: "/v3/kv/range", host: `[::1]:${port}` }]);
    } finally {
      server.close();
    }
  });
});
