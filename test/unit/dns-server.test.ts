import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { Resolver } from "node:dns/promises";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import { pino } from "pino";
import type { DnsAnswer, DnsQuestion } from "../../src/dns/message.ts";
import { type DnsResolve, DnsServer, type DnsServerLimits } from "../../src/dns/server.ts";

const LOCALHOST = "127.0.0.1";
const TIMEOUT = { timeout: 20_000 };

/** Rejects when `promise` has not settled within `ms`: a hang becomes a clear failure. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Log lines the server wrote, parsed, so tests can check levels and fields. */
const logLines: { level: number; msg: string; [field: string]: unknown }[] = [];
const logger = pino(
  { level: "debug" },
  { write: (line: string) => void logLines.push(JSON.parse(line)) },
);

/** web1 has an A, an AAAA and a PTR record; "boom" makes the resolver throw; the rest is refused. */
function resolveForTest(question: DnsQuestion): DnsAnswer {
  if (question.name === "boom") throw new Error("resolver exploded");
  if (question.name === "web1" && question.type === 1) {
    return {
      rcode: "NOERROR",
      authoritative: true,
      records: [{ type: "A", address: "10.60.0.5", ttl: 5 }],
    };
  }
  if (question.name === "web1" && question.type === 28) {
    return { rcode: "NOERROR", records: [{ type: "AAAA", address: "fd00::5", ttl: 5 }] };
  }
  if (question.name === "5.0.60.10.in-addr.arpa" && question.type === 12) {
    return { rcode: "NOERROR", records: [{ type: "PTR", target: "web1", ttl: 5 }] };
  }
  if (question.name === "many") {
    const records = Array.from({ length: 100 }, (_, i) => ({
      type: "A" as const,
      address: `10.61.0.${i}`,
      ttl: 5,
    }));
    return { rcode: "NOERROR", records };
  }
  return { rcode: "REFUSED" };
}

/** A query for `name` (labels as given) of `type`, as bytes, with RD set. */
function queryBytes(id: number, name: string, type: number): Buffer {
  const labels = name.split(".").flatMap((label) => [label.length, ...Buffer.from(label)]);
  const header = [id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
  return Buffer.from([...header, ...labels, 0, type >> 8, type & 0xff, 0, 1]);
}

/** The header fields and the rdata of each answer, for replies to {@link queryBytes}. */
function decodeReply(reply: Buffer) {
  const flags = reply.readUInt16BE(2);
  let at = 12;
  if (reply.readUInt16BE(4) === 1) {
    // Skip the echoed name (no pointers in it), then its type and class.
    while (at < reply.length && reply[at] !== 0) at += 1 + (reply[at] ?? 0);
    at += 5;
  }
  const answers: number[][] = [];
  for (let i = 0; i < reply.readUInt16BE(6); i++) {
    const length = reply.readUInt16BE(at + 10);
    answers.push([...reply.subarray(at + 12, at + 12 + length)]);
    at += 12 + length;
  }
  return {
    id: reply.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    tc: (flags & 0x0200) !== 0,
    rcode: flags & 0xf,
    answers,
  };
}

/** Sends one datagram to the server and waits for one reply. */
async function udpExchange(port: number, packet: Buffer): Promise<Buffer> {
  const socket = createSocket("udp4");
  try {
    const reply = once(socket, "message");
    socket.send(packet, port, LOCALHOST);
    const [message] = await within(5_000, "UDP reply", reply);
    return message as Buffer;
  } finally {
    socket.close();
  }
}

/** Reads length-prefixed replies from a TCP socket until `count` arrived. */
function tcpReplies(socket: Socket, count: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const replies: Buffer[] = [];
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const length = buffered.readUInt16BE(0);
        replies.push(buffered.subarray(2, 2 + length));
        buffered = buffered.subarray(2 + length);
      }
      if (replies.length >= count) {
        socket.off("data", onData);
        resolve(replies);
      }
    };
    socket.on("data", onData);
    socket.once("close", () =>
      reject(new Error(`connection closed after ${replies.length} replies`)),
    );
  });
}

const framed = (packet: Buffer): Buffer =>
  Buffer.concat([Buffer.from([packet.length >> 8, packet.length & 0xff]), packet]);

/** Client sockets a test opened; destroyed afterwards so a failing test leaves no handle. */
const clients: Socket[] = [];
afterEach(() => {
  for (const socket of clients.splice(0)) socket.destroy();
});

async function tcpClient(port: number, from = LOCALHOST): Promise<Socket> {
  const socket = connect({ host: LOCALHOST, port, localAddress: from });
  clients.push(socket);
  socket.on("error", () => undefined); // a reset from the server is an expected outcome here
  await within(5_000, "TCP connect", once(socket, "connect"));
  return socket;
}

const closed = (socket: Socket): Promise<unknown> =>
  socket.destroyed ? Promise.resolve() : once(socket, "close");

describe("DnsServer", TIMEOUT, () => {
  const server = new DnsServer({ address: LOCALHOST, port: 0, logger, resolve: resolveForTest });
  const resolver = new Resolver({ timeout: 3_000, tries: 1 });

  before(async () => {
    await server.start();
    resolver.setServers([`${LOCALHOST}:${server.port}`]);
  });
  after(() => server.stop());

  it("binds UDP and TCP on one free port", TIMEOUT, () => {
    assert.ok(server.port > 0);
  });

  it("answers A, AAAA and PTR questions over UDP through node's resolver", TIMEOUT, async () => {
    assert.deepEqual(await resolver.resolve4("web1", { ttl: true }), [
      { address: "10.60.0.5", ttl: 5 },
    ]);
    assert.deepEqual(await resolver.resolve4("WEB1"), ["10.60.0.5"]);
    assert.deepEqual(await resolver.resolve6("web1"), ["fd00::5"]);
    assert.deepEqual(await resolver.reverse("10.60.0.5"), ["web1"]);
  });

  it("surfaces REFUSED as EREFUSED and a throwing resolver as ESERVFAIL", TIMEOUT, async () => {
    await assert.rejects(resolver.resolve4("db1"), { code: "EREFUSED" });
    const warningsBefore = logLines.filter((line) => line.level === 40).length;
    await assert.rejects(resolver.resolve4("boom"), { code: "ESERVFAIL" });
    const warnings = logLines.filter((line) => line.level === 40).slice(warningsBefore);
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.name, "boom");
  });

  it(
    "logs each query at debug with name, type and rcode, and nothing at info",
    TIMEOUT,
    async () => {
      await resolver.resolve4("web1");
      assert.ok(
        logLines.some(
          (line) =>
            line.level === 20 &&
            line.name === "web1" &&
            line.type === 1 &&
            line.rcode === "NOERROR",
        ),
      );
      assert.deepEqual(
        logLines.filter((line) => line.level >= 30 && line.level !== 40),
        [],
      );
    },
  );

  // Regression: FORMERR and NOTIMP ended the lookup in Docker's embedded DNS and glibc, which
  // go on to the next server of the `dns` setting only on REFUSED (or SERVFAIL).
  it(
    "refuses a malformed UDP query with its id, and an opcode other than QUERY",
    TIMEOUT,
    async () => {
      // QDCOUNT 1, but the packet ends after the header.
      const reply = await udpExchange(
        server.port,
        Buffer.from([0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
      );
      assert.deepEqual(decodeReply(reply), {
        id: 0xabcd,
        qr: true,
        tc: false,
        rcode: 5,
        answers: [],
      });
      // NOTIFY (opcode 4) for web1: refused, opcode and question echoed.
      const notify = queryBytes(0x0102, "web1", 1);
      notify[2] = 4 << 3;
      const refused = await udpExchange(server.port, notify);
      assert.equal(decodeReply(refused).rcode, 5);
      assert.equal(((refused[2] ?? 0) >> 3) & 0xf, 4);
      assert.deepEqual([...refused.subarray(12)], [...notify.subarray(12)]);
    },
  );

  it("truncates a UDP reply to 512 bytes and sets TC", TIMEOUT, async () => {
    const reply = await udpExchange(server.port, queryBytes(7, "many", 1));
    const decoded = decodeReply(reply);
    assert.ok(reply.length <= 512, `${reply.length} bytes`);
    assert.equal(decoded.tc, true);
    assert.equal(decoded.answers.length, Math.floor((512 - 12 - 10) / 16));
  });

  it("answers several framed queries on one TCP connection, in order", TIMEOUT, async () => {
    const socket = await tcpClient(server.port);
    const replies = tcpReplies(socket, 3);
    // Two queries in one write and the third split across writes exercise the framing.
    socket.write(
      Buffer.concat([framed(queryBytes(1, "web1", 1)), framed(queryBytes(2, "db1", 1))]),
    );
    const third = framed(queryBytes(3, "many", 1));
    socket.write(third.subarray(0, 5));
    socket.write(third.subarray(5));
    const [first, second, many] = (await within(5_000, "TCP replies", replies)).map(decodeReply);
    assert.deepEqual(first, { id: 1, qr: true, tc: false, rcode: 0, answers: [[10, 60, 0, 5]] });
    assert.deepEqual(second, { id: 2, qr: true, tc: false, rcode: 5, answers: [] });
    // No 512-byte limit over TCP.
    assert.equal(many?.tc, false);
    assert.equal(many?.answers.length, 100);
  });

  it("answers a client that half-closes after its query", TIMEOUT, async () => {
    const socket = await tcpClient(server.port);
    const replies = tcpReplies(socket, 1);
    socket.end(framed(queryBytes(9, "web1", 1)));
    const [reply] = await within(5_000, "TCP reply", replies);
    assert.equal(decodeReply(reply as Buffer).id, 9);
    await within(5_000, "server closing its side", closed(socket));
  });

  it("closes a TCP connection that announces a message over 4096 bytes", TIMEOUT, async () => {
    const socket = await tcpClient(server.port);
    socket.write(Buffer.from([0x10, 0x01, 0, 0]));
    await within(5_000, "server closing the connection", closed(socket));
  });

  it("closes the 65th TCP connection at once and serves the 64 before it", TIMEOUT, async () => {
    const open: Socket[] = [];
    // Eight sources of eight: no source is over its own cap of eight.
    for (let i = 0; i < 64; i++) {
      const socket = await tcpClient(server.port, `127.0.1.${1 + (i % 8)}`);
      // A reply proves the server accepted this connection before the next one arrives.
      const reply = tcpReplies(socket, 1);
      socket.write(framed(queryBytes(i, "web1", 1)));
      assert.equal(decodeReply((await within(5_000, "TCP reply", reply))[0] as Buffer).id, i);
      open.push(socket);
    }
    const extra = await tcpClient(server.port, "127.0.1.9");
    extra.write(framed(queryBytes(65, "web1", 1)));
    await within(5_000, "server closing the 65th connection", closed(extra));

    // Room frees up as soon as one closes.
    open[0]?.destroy();
    await closed(open[0] as Socket);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const next = await tcpClient(server.port, "127.0.1.1");
    const reply = tcpReplies(next, 1);
    next.write(framed(queryBytes(66, "web1", 1)));
    assert.equal(decodeReply((await within(5_000, "TCP reply", reply))[0] as Buffer).id, 66);
    for (const socket of [...open, next]) socket.destroy();
  });
});

/**
 * Sends `count` A queries for web1 from one socket (bound to `from`) and counts the replies,
 * waiting until none came for 300 ms.
 */
async function replyCount(port: number, count: number, from = LOCALHOST): Promise<number> {
  const socket = createSocket("udp4");
  try {
    await new Promise<void>((resolve) => socket.bind(0, from, resolve));
    let replies = 0;
    let last = Date.now();
    socket.on("message", () => {
      replies += 1;
      last = Date.now();
    });
    for (let id = 0; id < count; id++) socket.send(queryBytes(id, "web1", 1), port, LOCALHOST);
    const started = Date.now();
    while (Date.now() - last < 300 && Date.now() - started < 5_000) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return replies;
  } finally {
    socket.close();
  }
}

/** A server with small limits on a clock the test moves. */
function limitedServer(limits: Partial<DnsServerLimits>, resolve: DnsResolve = resolveForTest) {
  const clock = { now: 0 };
  const server = new DnsServer({
    address: LOCALHOST,
    port: 0,
    logger,
    resolve,
    limits: {
      perSourceRate: 10,
      perSourceBurst: 20,
      globalRate: 1_000,
      globalBurst: 1_000,
      ...limits,
    },
    now: () => clock.now,
  });
  return { server, clock };
}

// The resolver shares the event loop that answers dockerd: no client may make it work without
// bound. Before these limits every datagram was parsed, resolved and answered.
describe("DnsServer limits", TIMEOUT, () => {
  let running: DnsServer | undefined;
  afterEach(() => running?.stop());

  it("answers one source its burst, then its rate, and logs the drops once", TIMEOUT, async () => {
    const { server, clock } = limitedServer({});
    running = server;
    await server.start();
    const warnings = () => logLines.filter((line) => line.level === 40 && "rateLimited" in line);
    const before = warnings().length;
    assert.equal(await replyCount(server.port, 30), 20);
    // One line for the first drop; the other nine only counted until 10 s have passed.
    assert.equal(warnings().length - before, 1);
    clock.now += 1_000;
    assert.equal(await replyCount(server.port, 15), 10, "10 tokens a second later");
    clock.now += 10_000;
    assert.equal(await replyCount(server.port, 120), 20, "full again, never above the burst");
    assert.equal(warnings().length - before, 2);
    // Since the first line: nine and five counted, and the drop that wrote this one.
    assert.equal(warnings().at(-1)?.rateLimited, 15);
  });

  it(
    "caps all sources together, and a source over its own limit spends none of it",
    TIMEOUT,
    async () => {
      const { server } = limitedServer({ globalBurst: 30, globalRate: 1 });
      running = server;
      await server.start();
      assert.equal(await replyCount(server.port, 25, "127.0.2.1"), 20);
      // The five refused above took no global token: 30 - 20 are left for everyone else.
      assert.equal(await replyCount(server.port, 20, "127.0.2.2"), 10);
      assert.equal(await replyCount(server.port, 5, "127.0.2.3"), 0);
    },
  );

  it("drops UDP queries beyond the cap of queries in progress", TIMEOUT, async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let asked = 0;
    const { server } = limitedServer({ maxPendingUdp: 4 }, async (question) => {
      asked += 1;
      await gate;
      return resolveForTest(question);
    });
    running = server;
    await server.start();
    const replies = replyCount(server.port, 10);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(asked, 4);
    release();
    assert.equal(await replies, 4);
    // The replies went out, so the queue is empty again.
    assert.equal(await replyCount(server.port, 3), 3);
  });

  it("closes a TCP connection whose queries go over the source's rate", TIMEOUT, async () => {
    const { server } = limitedServer({ perSourceBurst: 2 });
    running = server;
    await server.start();
    const socket = await tcpClient(server.port);
    const replies: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => replies.push(chunk));
    socket.write(Buffer.concat([1, 2, 3].map((id) => framed(queryBytes(id, "web1", 1)))));
    await within(5_000, "server closing the connection", closed(socket));
    const ids = tcpIds(Buffer.concat(replies));
    assert.deepEqual(ids, [1, 2]);
  });

  it("takes at most 8 TCP connections from one source", TIMEOUT, async () => {
    const { server } = limitedServer({ perSourceBurst: 100 });
    running = server;
    await server.start();
    const open: Socket[] = [];
    for (let i = 0; i < 8; i++) {
      const socket = await tcpClient(server.port, "127.0.3.1");
      const reply = tcpReplies(socket, 1);
      socket.write(framed(queryBytes(i, "web1", 1)));
      await within(5_000, "TCP reply", reply);
      open.push(socket);
    }
    const ninth = await tcpClient(server.port, "127.0.3.1");
    await within(5_000, "server closing the ninth", closed(ninth));
    const other = await tcpClient(server.port, "127.0.3.2");
    const reply = tcpReplies(other, 1);
    other.write(framed(queryBytes(99, "web1", 1)));
    assert.equal(decodeReply((await within(5_000, "TCP reply", reply))[0] as Buffer).id, 99);
  });

  it(
    "closes a TCP connection kept alive byte by byte once its lifetime is over",
    TIMEOUT,
    async () => {
      const { server } = limitedServer({ tcpMaxLifetimeMs: 300 });
      running = server;
      await server.start();
      const socket = await tcpClient(server.port);
      const started = Date.now();
      // A byte every 50 ms keeps it from ever being idle; the query is never finished.
      const query = framed(queryBytes(1, "web1", 1));
      const trickle = setInterval(() => {
        if (!socket.destroyed) socket.write(query.subarray(0, 1));
      }, 50);
      try {
        await within(5_000, "server closing the connection", closed(socket));
      } finally {
        clearInterval(trickle);
      }
      assert.ok(Date.now() - started >= 250, `closed after ${Date.now() - started} ms`);
    },
  );
});

/** The ids of the length-prefixed replies in `bytes`. */
function tcpIds(bytes: Buffer): number[] {
  const ids: number[] = [];
  for (let at = 0; at + 2 <= bytes.length; at += 2 + bytes.readUInt16BE(at)) {
    ids.push(bytes.readUInt16BE(at + 2));
  }
  return ids;
}

describe("DnsServer lifecycle", TIMEOUT, () => {
  it("stop() closes the listeners and every connection, and frees the port", TIMEOUT, async () => {
    const server = new DnsServer({ address: LOCALHOST, port: 0, logger, resolve: resolveForTest });
    await server.start();
    const port = server.port;
    const socket = await tcpClient(port);
    const reply = tcpReplies(socket, 1);
    socket.write(framed(queryBytes(1, "web1", 1)));
    await within(5_000, "TCP reply", reply);

    await within(5_000, "stop", server.stop());
    await within(5_000, "connection closed by stop", closed(socket));
    assert.throws(() => server.port, /not started/);
    const handles = process
      .getActiveResourcesInfo()
      .filter((name) => ["UDPWRAP", "TCPSERVERWRAP", "TCPSocketWrap"].includes(name));
    assert.deepEqual(handles, []);

    // The same port binds again, for both protocols, so nothing of the old server holds it.
    const again = new DnsServer({ address: LOCALHOST, port, logger, resolve: resolveForTest });
    await again.start();
    assert.equal(again.port, port);
    await again.stop();
  });

  it(
    "refuses to start on a port another program holds, leaving nothing bound",
    TIMEOUT,
    async () => {
      const first = new DnsServer({ address: LOCALHOST, port: 0, logger, resolve: resolveForTest });
      await first.start();
      try {
        const second = new DnsServer({
          address: LOCALHOST,
          port: first.port,
          logger,
          resolve: resolveForTest,
        });
        await assert.rejects(second.start(), /cannot start DNS server on 127\.0\.0\.1:\d+\/udp/);
        assert.throws(() => second.port, /not started/);
      } finally {
        await first.stop();
      }
    },
  );

  it("refuses a listen address that is not an IP address", TIMEOUT, async () => {
    const server = new DnsServer({
      address: "localhost",
      port: 0,
      logger,
      resolve: resolveForTest,
    });
    await assert.rejects(server.start(), /"localhost" is not an IP address/);
  });
});
