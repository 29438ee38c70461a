import { startCluster } from "./cluster.ts";
const t0 = Date.now();
const c = await startCluster({ hosts: 3 });
console.log("start", Date.now() - t0);
let t = Date.now(); await c.stopEtcd(); console.log("stopEtcd", Date.now() - t);
t = Date.now(); await c.startEtcd(); console.log("startEtcd", Date.now() - t);
await c.destroy();
