// A DNS responder for the netns tests, run inside a namespace:
//   ip netns exec NS node test/netns/dns-responder.ts ADDRESS
// Switchyard's DnsServer on ADDRESS:53 (UDP and TCP), answering web1 A 10.60.0.5 to anyone and
// REFUSED to anything else. Prints "ready" once listening, then one JSON line per query it
// resolved ({ client, name }), so a test sees which clients reached the socket.
import { pino } from "pino";
import { DnsServer } from "../../src/dns/server.ts";

const address = process.argv[2] ?? "169.254.53.53";
const server = new DnsServer({
  address,
  port: 53,
  logger: pino({ level: "silent" }),
  resolve: (question, client) => {
    process.stdout.write(`${JSON.stringify({ client: client.address, name: question.name })}\n`);
    if (question.name !== "web1" || question.type !== 1) return { rcode: "REFUSED" };
    return {
      rcode: "NOERROR",
      authoritative: true,
      records: [{ type: "A", address: "10.60.0.5", ttl: 1 }],
    };
  },
});
await server.start();
process.stdout.write("ready\n");
process.on("SIGTERM", () => {
  void server.stop().then(() => process.exit(0));
});
