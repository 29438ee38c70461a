import assert from "node:assert/strict";
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from "node:dgram";
import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { afterEach, describe, it } from "node:test";
import { pino } from "pino";
import { openTcpRelay, openUdpRelay, ProxyPublisher } from "../../src/proxy/port-proxy.ts";
import type { PortBinding } from "../../src/state/model.ts";
import { RecordingPublisher } from "../support/recording-publisher.ts";

const LOCALHOST = "127.0.0.1";
const TIMEOUT = { timeout: 10_000 };

/** Things each test opened, closed afterwards so a failing test leaves no handle behind. */
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Rejects when `promise` has not settled within `ms`: a hang becomes a clear failure. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A TCP echo server on an ephemeral port; `accepted` holds the relay's upstream connections. */
async function tcpEchoServer(): Promise<{ port: number; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const server = createServer((socket) => {
    accepted.push(socket);
    socket.on("error", () => undefined);
    socket.pipe(socket);
  });
  server.listen({ host: LOCALHOST, port: 0 });
  await once(server, "listening");
  cleanups.push(() => {
    for (const socket of accepted) socket.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  return { port: (server.address() as AddressInfo).port, accepted };
}

/** A UDP echo server on an ephemeral port; `peers` records who sent to it (the relay's flows). */
async function udpEchoServer(): Promise<{ port: number; peers: RemoteInfo[] }> {
  const peers: RemoteInfo[] = [];
  const socket = createSocket("udp4");
  socket.on("message", (message, peer) => {
    peers.push(peer);
    socket.send(message, peer.port, peer.address);
  });
  socket.bind({ address: LOCALHOST, port: 0 });
  await once(socket, "listening");
  cleanups.push(() => new Promise((resolve) => socket.close(() => resolve(undefined))));
  return { port: socket.address().port, peers };
}

/** A port nothing listens on right now, for the relay to take. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen({ host: LOCALHOST, port: 0 });
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function tcpClient(port: number): Promise<Socket> {
  const socket = connect({ host: LOCALHOST, port });
  socket.on("error", () => undefined); // a reset from the relay is an expected outcome here
  cleanups.push(() => socket.destroy());
  await once(socket, "connect");
  return socket;
}

async function tcpRoundTrip(socket: Socket, text: string): Promise<string> {
  socket.write(text);
  const [data] = (await within(2_000, `echo of ${text}`, once(socket, "data"))) as [Buffer];
  return data.toString();
}

async function udpClient(): Promise<UdpSocket> {
  const socket = createSocket("udp4");
  socket.bind({ address: LOCALHOST, port: 0 });
  await once(socket, "listening");
  cleanups.push(() => new Promise((resolve) => socket.close(() => resolve(undefined))));
  return socket;
}

/** The reply to one datagram, or undefined when none comes within `ms`. */
async function udpRoundTrip(
  socket: UdpSocket,
  port: number,
  text: string,
  ms = 2_000,
): Promise<string | undefined> {
  const reply = once(socket, "message") as Promise<[Buffer, RemoteInfo]>;
  socket.send(text, port, LOCALHOST);
  try {
    const [message] = await within(ms, `reply to ${text}`, reply);
    return message.toString();
  } catch {
    return undefined;
  }
}

function binding(proto: "tcp" | "udp", hostPort: number): PortBinding {
  return { proto, containerPort: 8080, hostIp: LOCALHOST, hostPort, hostPortEnd: hostPort };
}

/** A silent logger that still counts its warnings, since the caps and late errors warn. */
function countingLogger() {
  const logger = pino({ level: "silent" });
  const warnings: unknown[] = [];
  logger.warn = ((...args: unknown[]) => {
    warnings.push(args);
  }) as typeof logger.warn;
  return { logger, warnings };
}

function publisher(options?: { maxConnections?: number; maxUdpFlows?: number }) {
  const { logger, warnings } = countingLogger();
  const proxy = new ProxyPublisher(logger, options);
  cleanups.push(() => proxy.close("owner"));
  return { proxy, warnings };
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect({ host: LOCALHOST, port });
    probe.on("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.on("error", () => resolve(false));
  });
}

describe("ProxyPublisher over TCP", () => {
  it("relays data to the target", TIMEOUT, async () => {
    const echo = await tcpEchoServer();
    const port = await freePort();
    const { proxy } = publisher();
    await proxy.open("owner", binding("tcp", port), { address: LOCALHOST, port: echo.port });
    const client = await tcpClient(port);
    assert.equal(await tcpRoundTrip(client, "ping"), "ping");
    assert.equal(proxy.openCount(), 1);
  });

  it(
    "delivers a whole large reply to a client that has already ended its side",
    TIMEOUT,
    async () => {
      const reply = Buffer.alloc(8 * 1024 * 1024, "r");
      const target = createServer({ allowHalfOpen: true }, (socket) => {
        socket.on("error", () => undefined);
        socket.resume();
        socket.on("end", () => socket.end(reply));
      });
      target.listen({ host: LOCALHOST, port: 0 });
      await once(target, "listening");
      cleanups.push(() => new Promise((resolve) => target.close(resolve)));
      const port = await freePort();
      const { proxy } = publisher();
      const targetPort = (target.address() as AddressInfo).port;
      await proxy.open("owner", binding("tcp", port), { address: LOCALHOST, port: targetPort });

      const client = await tcpClient(port);
      // A reader that starts late makes the reply cross the relay under backpressure.
      client.pause();
      client.end("request");
      await new Promise((resolve) => setTimeout(resolve, 300));
      let received = 0;
      client.on("data", (chunk: Buffer) => {
        received += chunk.length;
      });
      client.resume();
      await within(5_000, "the whole reply", once(client, "end"));
      assert.equal(received, reply.length);
    },
  );

  // Regression: close() used server.close(), which waits for every relayed connection to end,
  // so one idle client made close() (and with it `docker stop`) hang forever.
  it(
    "closes within 1 s while an idle client is connected, closing the client",
    TIMEOUT,
    async () => {
      const echo = await tcpEchoServer();
      const port = await freePort();
      const { proxy } = publisher();
      await proxy.open("owner", binding("tcp", port), { address: LOCALHOST, port: echo.port });
      const client = await tcpClient(port);
      assert.equal(await tcpRoundTrip(client, "hello"), "hello");
      const clientClosed = once(client, "close");

      await within(1_000, "close() with an idle client", proxy.close("owner"));
      await within(1_000, "the client's 'close'", clientClosed);
      assert.equal(proxy.openCount(), 0);
    },
  );

  it("frees the port and destroys the upstream connection on close", TIMEOUT, async () => {
    const echo = await tcpEchoServer();
    const port = await freePort();
    const { proxy } = publisher();
    await proxy.open("owner", binding("tcp", port), { address: LOCALHOST, port: echo.port });
    const client = await tcpClient(port);
    await tcpRoundTrip(client, "hello");
    const [upstream] = echo.accepted;
    assert.ok(upstream, "the relay connected to the target");
    const upstreamClosed = once(upstream, "close");

    await within(1_000, "close()", proxy.close("owner"));
    await within(1_000, "the upstream's 'close'", upstreamClosed);
    assert.equal(await isListening(port), false);
    const again = createServer();
    again.listen({ host: LOCALHOST, port, exclusive: true });
    await once(again, "listening");
    await new Promise((resolve) => again.close(resolve));
  });

  it(
    "refuses a connection above maxConnections while the others keep relaying",
    TIMEOUT,
    async () => {
      const echo = await tcpEchoServer();
      const port = await freePort();
      const { proxy, warnings } = publisher({ maxConnections: 2 });
      await proxy.open("owner", binding("tcp", port), { address: LOCALHOST, port: echo.port });
      const first = await tcpClient(port);
      const second = await tcpClient(port);
      assert.equal(await tcpRoundTrip(first, "one"), "one");
      assert.equal(await tcpRoundTrip(second, "two"), "two");

      const third = connect({ host: LOCALHOST, port });
      third.on("error", () => undefined);
      cleanups.push(() => third.destroy());
      await within(1_000, "the third connection's 'close'", once(third, "close"));
      const fourth = connect({ host: LOCALHOST, port });
      fourth.on("error", () => undefined);
      cleanups.push(() => fourth.destroy());
      await within(1_000, "the fourth connection's 'close'", once(fourth, "close"));

      assert.equal(echo.accepted.length, 2, "no upstream connection for refused clients");
      assert.equal(await tcpRoundTrip(first, "still one"), "still one");
      assert.equal(await tcpRoundTrip(second, "still two"), "still two");
      assert.equal(warnings.length, 1, "one rate-limited warning, not one per refused client");
    },
  );
});

describe("ProxyPublisher over UDP", () => {
  it("relays a datagram to the target and back", TIMEOUT, async () => {
    const echo = await udpEchoServer();
    const port = await freePort();
    const { proxy } = publisher();
    await proxy.open("owner", binding("udp", port), { address: LOCALHOST, port: echo.port });
    const client = await udpClient();
    assert.equal(await udpRoundTrip(client, port, "ping"), "ping");
  });

  it("drops datagrams from a client above maxUdpFlows", TIMEOUT, async () => {
    const echo = await udpEchoServer();
    const port = await freePort();
    const { proxy, warnings } = publisher({ maxUdpFlows: 1 });
    await proxy.open("owner", binding("udp", port), { address: LOCALHOST, port: echo.port });
    const first = await udpClient();
    const second = await udpClient();
    assert.equal(await udpRoundTrip(first, port, "one"), "one");

    assert.equal(await udpRoundTrip(second, port, "two", 300), undefined);
    assert.equal(await udpRoundTrip(second, port, "two again", 300), undefined);
    assert.equal(await udpRoundTrip(first, port, "still one"), "still one");
    assert.equal(echo.peers.length, 2, "only the first client's datagrams reached the target");
    assert.equal(warnings.length, 1, "one rate-limited warning, not one per datagram");
  });

  // Regression: the flow sockets were not connected, so anyone who could reach a flow's
  // ephemeral port could inject datagrams that the relay passed on to the client.
  it("delivers to the client only what the target sends to its flow", TIMEOUT, async () => {
    const echo = await udpEchoServer();
    const port = await freePort();
    const { proxy } = publisher();
    await proxy.open("owner", binding("udp", port), { address: LOCALHOST, port: echo.port });
    const client = await udpClient();
    assert.equal(await udpRoundTrip(client, port, "ping"), "ping");
    const [flow] = echo.peers;
    assert.ok(flow, "the relay sent from a flow socket");

    const received: string[] = [];
    client.on("message", (message) => received.push(message.toString()));
    const intruder = await udpClient();
    intruder.send("injected", flow.port, LOCALHOST);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(received, [], "a datagram from another source never reaches the client");
    assert.equal(await udpRoundTrip(client, port, "still relayed"), "still relayed");
  });

  it("closes every flow's upstream socket on close", TIMEOUT, async () => {
    const echo = await udpEchoServer();
    const port = await freePort();
    const { proxy } = publisher();
    await proxy.open("owner", binding("udp", port), { address: LOCALHOST, port: echo.port });
    const client = await udpClient();
    assert.equal(await udpRoundTrip(client, port, "ping"), "ping");
    const [flow] = echo.peers;
    assert.ok(flow, "the relay sent from a flow socket");

    await within(1_000, "close()", proxy.close("owner"));
    // Binding the flow's port and the published port succeeds only if both sockets are gone.
    for (const taken of [flow.port, port]) {
      const probe = await new Promise<UdpSocket>((resolve, reject) => {
        const socket = createSocket("udp4");
        socket.once("error", reject);
        socket.bind({ address: LOCALHOST, port: taken, exclusive: true }, () => resolve(socket));
      });
      await new Promise((resolve) => probe.close(() => resolve(undefined)));
    }
  });
});

// Regression: after listen nothing listened for 'error', so a late error (EMFILE on accept, a
// failed send) was thrown as an uncaught exception and killed the plugin process.
describe("relay listeners after listen", () => {
  it("log a late TCP server error and go on relaying", TIMEOUT, async () => {
    const echo = await tcpEchoServer();
    const port = await freePort();
    const { logger, warnings } = countingLogger();
    const relay = await openTcpRelay(
      { host: LOCALHOST, port },
      { address: LOCALHOST, port: echo.port },
      { maxConnections: 4, maxUdpFlows: 4 },
      logger,
    );
    cleanups.push(() => relay.close());

    assert.doesNotThrow(() => relay.listener.emit("error", new Error("accept: EMFILE")));
    assert.equal(warnings.length, 1);
    const client = await tcpClient(port);
    assert.equal(await tcpRoundTrip(client, "after"), "after");
  });

  it("log a late UDP socket error and go on relaying", TIMEOUT, async () => {
    const echo = await udpEchoServer();
    const port = await freePort();
    const { logger, warnings } = countingLogger();
    const relay = await openUdpRelay(
      { host: LOCALHOST, port },
      { address: LOCALHOST, port: echo.port },
      { maxConnections: 4, maxUdpFlows: 4 },
      logger,
    );
    cleanups.push(() => relay.close());

    assert.doesNotThrow(() => relay.listener.emit("error", new Error("send: ENOBUFS")));
    assert.equal(warnings.length, 1);
    const client = await udpClient();
    assert.equal(await udpRoundTrip(client, port, "after"), "after");
  });
});

describe("RecordingPublisher", () => {
  it("still records opens and closes", TIMEOUT, async () => {
    const recorder = new RecordingPublisher();
    await recorder.open("owner", binding("tcp", 8080));
    assert.equal(recorder.openCount(), 1);
    await recorder.close("owner");
    assert.equal(recorder.openCount(), 0);
  });
});
