import { createSocket, type RemoteInfo, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import { badRequest, internal } from "../errors.ts";
import { tryParseAddress } from "../ipam/prefix.ts";
import { bound } from "../sockets.ts";
import {
  buildResponse,
  type DnsAnswer,
  type DnsQuestion,
  EDNS_MAX_BYTES,
  parseQuery,
  UDP_MAX_BYTES,
} from "./message.ts";
import { type QueryLimits, QueryRateLimiter, RESOLVER_LIMITS } from "./rate-limit.ts";

/** Who asked: the client's address, for resolvers that answer differently per network. */
export interface DnsClient {
  address: string;
}

/** Answers one question; a throw or rejection becomes SERVFAIL. */
export type DnsResolve = (
  question: DnsQuestion,
  client: DnsClient,
) => DnsAnswer | Promise<DnsAnswer>;

/** What bounds a DnsServer's work and memory, beyond the query rates. */
export interface DnsServerLimits extends QueryLimits {
  /** UDP queries being resolved or whose reply waits to be sent; more are dropped. */
  maxPendingUdp: number;
  /** TCP connections open at once, in all and from one source address. */
  tcpMaxConnections: number;
  tcpMaxConnectionsPerSource: number;
  /** A TCP connection is closed after this long without a byte, or this long in all. */
  tcpIdleMs: number;
  tcpMaxLifetimeMs: number;
}

/**
 * The resolver's limits: {@link RESOLVER_LIMITS} for the query rates, and
 * - 256 pending UDP queries: resolving is synchronous today, so the queue is near empty; the
 *   cap keeps a slow resolver or a send queue the kernel does not drain from holding more
 *   packets and replies in memory than that.
 * - 64 TCP connections, 8 per source: DNS over TCP is only for answers that did not fit in
 *   UDP, one or two queries per connection (Docker and glibc open one per query), so eight
 *   is plenty for a container and no one container can take every connection.
 * - 10 s idle and 30 s in all: a client trickling a byte at a time holds a connection no
 *   longer than half a minute.
 */
export const DNS_SERVER_LIMITS: DnsServerLimits = {
  ...RESOLVER_LIMITS,
  maxPendingUdp: 256,
  tcpMaxConnections: 64,
  tcpMaxConnectionsPerSource: 8,
  tcpIdleMs: 10_000,
  tcpMaxLifetimeMs: 30_000,
};

/** What a DnsServer listens on and whom it asks. */
export interface DnsServerOptions {
  address: string;
  /** 0 picks a free port, the same for UDP and TCP. */
  port: number;
  logger: Logger;
  resolve: DnsResolve;
  /** Limits other than {@link DNS_SERVER_LIMITS} (tests). */
  limits?: Partial<DnsServerLimits>;
  /** A monotonic clock in milliseconds; `performance.now` unless a test gives its own. */
  now?: () => number;
}

const TCP_MAX_MESSAGE_BYTES = 4096;
const TCP_MAX_REPLY_BYTES = 65_535;
/** With port 0, how often to try another port when TCP finds the one UDP got taken. */
const FREE_PORT_ATTEMPTS = 5;
/** Dropped queries are logged at most this often, counted, never one line per packet. */
const DROP_LOG_INTERVAL_MS = 10_000;

/** Why a query got no answer at all. */
type DropReason = "rateLimited" | "overloaded" | "tcpRefused";

type Transport = "udp" | "tcp";

/**
 * A DNS responder on one address and port, over UDP and TCP (RFC 1035 §4.2, RFC 7766). It
 * shares its event loop with everything else in the process, so its work is bounded whatever
 * arrives: a token bucket per source address and one for all (over them a query is dropped
 * unread), a cap on UDP queries in progress, and caps on TCP connections. libuv reads at most
 * 32 datagrams per turn of the loop, so a flood never starves other sockets either; what it
 * cannot read waits in, and overflows from, the kernel's receive buffer.
 */
export class DnsServer {
  readonly #address: string;
  readonly #requestedPort: number;
  readonly #logger: Logger;
  readonly #resolve: DnsResolve;
  readonly #limits: DnsServerLimits;
  readonly #now: () => number;
  readonly #limiter: QueryRateLimiter;
  readonly #connections = new Set<Socket>();
  /** Open TCP connections per source address. */
  readonly #connectionsBySource = new Map<string, number>();
  #pendingUdp = 0;
  readonly #drops: Record<DropReason, number> = { rateLimited: 0, overloaded: 0, tcpRefused: 0 };
  #dropsLoggedAt = Number.NEGATIVE_INFINITY;
  #udp: UdpSocket | undefined;
  #tcp: Server | undefined;
  #port: number | undefined;

  constructor(options: DnsServerOptions) {
    this.#address = options.address;
    this.#requestedPort = options.port;
    this.#logger = options.logger;
    this.#resolve = options.resolve;
    this.#limits = { ...DNS_SERVER_LIMITS, ...options.limits };
    this.#now = options.now ?? (() => performance.now());
    this.#limiter = new QueryRateLimiter(this.#limits);
  }

  /** The port both listeners are bound to; throws before start(). */
  get port(): number {
    if (this.#port === undefined) throw internal("DNS server is not started");
    return this.#port;
  }

  /** Binds UDP, then TCP on the port UDP got; rejects (and binds nothing) when either fails. */
  async start(): Promise<void> {
    if (this.#udp !== undefined) throw internal("DNS server is already started");
    const parsed = tryParseAddress(this.#address);
    if (parsed === undefined) {
      throw badRequest(`cannot start DNS server: "${this.#address}" is not an IP address`);
    }
    const attempts = this.#requestedPort === 0 ? FREE_PORT_ATTEMPTS : 1;
    for (let attempt = 1; ; attempt++) {
      const udp = createSocket({ type: parsed.v6 ? "udp6" : "udp4" });
      try {
        await bound(udp, (done) =>
          udp.bind({ address: this.#address, port: this.#requestedPort, exclusive: true }, done),
        );
      } catch (error) {
        closeQuietly(udp);
        throw internal(
          `cannot start DNS server on ${this.#where()}/udp: ${errorText(error)}`,
          error,
        );
      }
      const port = udp.address().port;
      const tcp = this.#createTcpServer();
      try {
        await bound(tcp, (done) =>
          tcp.listen({ host: this.#address, port, exclusive: true }, done),
        );
      } catch (error) {
        closeQuietly(udp);
        // Another program may hold the TCP side of the port UDP picked; try a fresh one.
        if ((error as NodeJS.ErrnoException).code === "EADDRINUSE" && attempt < attempts) continue;
        throw internal(
          `cannot start DNS server on ${this.#where()}/tcp: ${errorText(error)}`,
          error,
        );
      }
      this.#listen(udp, tcp);
      this.#port = port;
      return;
    }
  }

  /** Closes both listeners and every TCP connection; queries still being resolved get no reply. */
  async stop(): Promise<void> {
    const udp = this.#udp;
    const tcp = this.#tcp;
    this.#udp = undefined;
    this.#tcp = undefined;
    this.#port = undefined;
    const closed: Promise<void>[] = [];
    if (udp !== undefined) closed.push(new Promise((resolve) => udp.close(() => resolve())));
    if (tcp !== undefined) closed.push(new Promise((resolve) => tcp.close(() => resolve())));
    // server.close() waits for open connections; an idle client would hold it for 10 s.
    for (const socket of this.#connections) socket.destroy();
    this.#connections.clear();
    await Promise.all(closed);
  }

  #where(): string {
    return this.#address.includes(":")
      ? `[${this.#address}]:${this.#requestedPort}`
      : `${this.#address}:${this.#requestedPort}`;
  }

  #listen(udp: UdpSocket, tcp: Server): void {
    // Later errors (a failed send, EMFILE on accept) must not become uncaught exceptions.
    udp.on("error", (error) => this.#logger.warn({ err: error }, "DNS UDP socket failed"));
    tcp.on("error", (error) => this.#logger.warn({ err: error }, "DNS TCP listener failed"));
    udp.on("message", (packet, peer) => this.#onDatagram(udp, packet, peer));
    this.#udp = udp;
    this.#tcp = tcp;
  }

  #onDatagram(udp: UdpSocket, packet: Buffer, peer: RemoteInfo): void {
    if (!this.#limiter.allow(peer.address, this.#now())) {
      this.#dropped("rateLimited", peer.address);
      return;
    }
    if (this.#pendingUdp >= this.#limits.maxPendingUdp) {
      this.#dropped("overloaded", peer.address);
      return;
    }
    this.#pendingUdp += 1;
    let sending = false;
    void this.#answer(packet, { address: peer.address }, "udp")
      .then((reply) => {
        // The socket may have been closed by stop() while the answer was being resolved.
        if (reply === undefined || this.#udp !== udp) return;
        udp.send(reply, peer.port, peer.address, (error) => {
          this.#pendingUdp -= 1;
          if (error) this.#logger.debug({ err: error, client: peer.address }, "DNS reply not sent");
        });
        sending = true;
      })
      .catch((error: unknown) =>
        this.#logger.debug({ err: error, client: peer.address }, "DNS reply not sent"),
      )
      .finally(() => {
        if (!sending) this.#pendingUdp -= 1;
      });
  }

  /** Counts a query that got no answer; says so at most every 10 s, with the counts. */
  #dropped(reason: DropReason, client: string): void {
    this.#drops[reason] += 1;
    const now = this.#now();
    if (now - this.#dropsLoggedAt < DROP_LOG_INTERVAL_MS) return;
    this.#dropsLoggedAt = now;
    this.#logger.warn(
      { ...this.#drops, lastClient: client, limits: this.#limits },
      "DNS queries dropped over the resolver's limits (counts since the last such line)",
    );
    for (const key of Object.keys(this.#drops) as DropReason[]) this.#drops[key] = 0;
  }

  #createTcpServer(): Server {
    // Half-open: a client may shut down its sending side after its last query and still
    // expects the replies.
    const server = createServer({ allowHalfOpen: true }, (socket) => this.#onConnection(socket));
    // Node closes connections above the cap before they reach the handler.
    server.maxConnections = this.#limits.tcpMaxConnections;
    server.on("drop", (peer) => this.#dropped("tcpRefused", peer?.remoteAddress ?? ""));
    return server;
  }

  /**
   * Serves length-prefixed queries one at a time: the socket is paused while a query is
   * resolved and while a reply waits for the client to read, so a client that floods or
   * never reads holds at most one message and one read chunk in memory. Each message takes
   * a token from the same buckets as a UDP query.
   */
  #onConnection(socket: Socket): void {
    const client = { address: socket.remoteAddress ?? "" };
    const fromSource = (this.#connectionsBySource.get(client.address) ?? 0) + 1;
    if (fromSource > this.#limits.tcpMaxConnectionsPerSource) {
      this.#dropped("tcpRefused", client.address);
      socket.destroy();
      return;
    }
    this.#connectionsBySource.set(client.address, fromSource);
    this.#connections.add(socket);
    const lifetime = setTimeout(() => socket.destroy(), this.#limits.tcpMaxLifetimeMs);
    lifetime.unref();
    socket.on("close", () => {
      clearTimeout(lifetime);
      this.#connections.delete(socket);
      const left = (this.#connectionsBySource.get(client.address) ?? 1) - 1;
      if (left > 0) this.#connectionsBySource.set(client.address, left);
      else this.#connectionsBySource.delete(client.address);
    });
    socket.on("error", (error) =>
      this.#logger.debug({ err: error, client }, "DNS TCP client failed"),
    );
    socket.setTimeout(this.#limits.tcpIdleMs, () => socket.destroy());
    let buffered: Buffer = Buffer.alloc(0);
    let busy = false;
    let clientEnded = false;
    const next = (): void => {
      if (socket.destroyed) return;
      if (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (length > TCP_MAX_MESSAGE_BYTES) {
          this.#logger.debug({ client, length }, "DNS TCP message too long; closing");
          socket.destroy();
          return;
        }
        if (buffered.length >= 2 + length) {
          // Over its rate the connection goes: a client waiting on it moves on at once.
          if (!this.#limiter.allow(client.address, this.#now())) {
            this.#dropped("rateLimited", client.address);
            socket.destroy();
            return;
          }
          const packet = buffered.subarray(2, 2 + length);
          buffered = buffered.subarray(2 + length);
          busy = true;
          socket.pause();
          void this.#answer(packet, client, "tcp").then((reply) => {
            if (socket.destroyed) return;
            if (reply !== undefined && !socket.write(frame(reply))) {
              socket.once("drain", next);
              return;
            }
            next();
          });
          return;
        }
      }
      busy = false;
      if (clientEnded) socket.end();
      else socket.resume();
    };
    socket.on("data", (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      if (!busy) next();
    });
    socket.on("end", () => {
      clientEnded = true;
      if (!busy) socket.end();
    });
  }

  /** Parses, resolves and encodes one query; undefined means send nothing. */
  async #answer(
    packet: Uint8Array,
    client: DnsClient,
    transport: Transport,
  ): Promise<Uint8Array | undefined> {
    const parsed = parseQuery(packet);
    if (!parsed.ok) {
      this.#logger.debug(
        {
          client: client.address,
          transport,
          reason: parsed.reason,
          rcode: parsed.refusal === undefined ? "dropped" : "REFUSED",
        },
        "DNS query not served",
      );
      return parsed.refusal === undefined
        ? undefined
        : buildResponse(parsed.refusal, { rcode: "REFUSED" });
    }
    const { query } = parsed;
    const maxBytes =
      transport === "tcp"
        ? TCP_MAX_REPLY_BYTES
        : query.hasEdns
          ? Math.min(query.udpPayloadSize, EDNS_MAX_BYTES)
          : UDP_MAX_BYTES;
    const context = {
      client: client.address,
      transport,
      name: query.question.name,
      type: query.question.type,
    };
    let reply: Uint8Array;
    let rcode: DnsAnswer["rcode"];
    try {
      const answer = await this.#resolve(query.question, client);
      reply = buildResponse(query, answer, { maxBytes });
      rcode = answer.rcode;
    } catch (error) {
      this.#logger.warn({ ...context, err: error }, "DNS resolve failed; answering SERVFAIL");
      rcode = "SERVFAIL";
      reply = buildResponse(query, { rcode }, { maxBytes });
    }
    this.#logger.debug({ ...context, rcode }, "DNS query");
    return reply;
  }
}

/** A DNS message with the 2-byte length prefix TCP needs (RFC 1035 §4.2.2). */
function frame(message: Uint8Array): Buffer {
  const framed = Buffer.alloc(2 + message.length);
  framed.writeUInt16BE(message.length, 0);
  framed.set(message, 2);
  return framed;
}

const errorText = (error: unknown): string =>
  error instanceof Error ? error.message : String(error);

/** Closes a socket whose bind may have failed; closing an unbound socket may throw. */
function closeQuietly(socket: UdpSocket): void {
  try {
    socket.close();
  } catch {
    // nothing was bound, so nothing is left open
  }
}
