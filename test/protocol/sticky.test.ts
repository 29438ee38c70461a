// `--ipam-opt sticky=true` through the IPAM protocol, as Docker 29 sends it (the container's
// name in RequestAddress options) and as older releases do (no name).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildTestApp } from "../support/fakes.ts";
import { MemoryStore } from "../support/memory-store.ts";

const NAME = "com.docker.network.endpoint.name";

async function stickyPool(t: Awaited<ReturnType<typeof buildTestApp>>, sticky = "true") {
  return t.call("/IpamDriver.RequestPool", {
    AddressSpace: "LocalDefault",
    Pool: "10.42.0.0/24",
    Options: { sticky },
    V6: false,
  });
}

describe("sticky pools (--ipam-opt sticky=true)", () => {
  it("a name gets its address back after release; another name does not take it", async () => {
    const t = await buildTestApp();
    const pool = await stickyPool(t);
    assert.equal(pool.status, 200, JSON.stringify(pool.body));
    const PoolID = pool.body.PoolID as string;
    const ask = (name: string) =>
      t.call("/IpamDriver.RequestAddress", { PoolID, Address: "", Options: { [NAME]: name } });
    const web = (await ask("web")).body.Address as string;
    assert.equal(web, "10.42.0.1/24");
    await t.call("/IpamDriver.ReleaseAddress", { PoolID, Address: web });
    assert.deepEqual((await ask("db")).body, { Address: "10.42.0.2/24", Data: {} });
    assert.deepEqual((await ask("web")).body, { Address: web, Data: {} });
  });

  it("the reservation is on disk: a restarted plugin keeps it", async () => {
    const store = new MemoryStore();
    const first = await buildTestApp(store);
    const PoolID = (await stickyPool(first)).body.PoolID as string;
    const ask = (t: typeof first, name: string) =>
      t.call("/IpamDriver.RequestAddress", { PoolID, Address: "", Options: { [NAME]: name } });
    const web = (await ask(first, "web")).body.Address as string;
    await first.call("/IpamDriver.ReleaseAddress", { PoolID, Address: web });
    const again = await buildTestApp(store);
    await ask(again, "other");
    assert.equal((await ask(again, "web")).body.Address, web);
  });

  it("is refused at RequestPool when Docker names no container (before 29), saying why", async () => {
    const t = await buildTestApp(new MemoryStore(), { dockerSendsNames: false });
    const pool = await stickyPool(t);
    assert.equal(pool.status, 500);
    assert.match(String(pool.body.Err), /sticky=true needs Docker 29\.5 or later/);
    assert.deepEqual(t.state.ipam.pools(), [], "no pool is left behind");
    const plain = await stickyPool(t, "false");
    assert.equal(plain.status, 200, "sticky=false is fine on any release");
  });

  it("a container's request without a name is refused on a sticky pool", async () => {
    const t = await buildTestApp();
    const PoolID = (await stickyPool(t)).body.PoolID as string;
    const bare = await t.call("/IpamDriver.RequestAddress", { PoolID, Address: "", Options: {} });
    assert.equal(bare.status, 500);
    assert.match(String(bare.body.Err), /needs Docker 29/);
    const gateway = await t.call("/IpamDriver.RequestAddress", {
      PoolID,
      Address: "",
      Options: { RequestAddressType: "com.docker.network.gateway" },
    });
    assert.equal(gateway.status, 200, "the gateway carries no name and needs none");
  });

  it("refuses a bad sticky value and a malformed name", async () => {
    const t = await buildTestApp();
    const bad = await stickyPool(t, "yes");
    assert.equal(bad.status, 500);
    assert.match(String(bad.body.Err), /sticky="yes" must be true or false/);
    const PoolID = (await stickyPool(t)).body.PoolID as string;
    const odd = await t.call("/IpamDriver.RequestAddress", {
      PoolID,
      Address: "",
      Options: { [NAME]: "web\nrm -rf /" },
    });
    assert.equal(odd.status, 500);
    assert.match(String(odd.body.Err), /is not a valid name/);
  });
});
