import { createSocket, type RemoteInfo, type Socket as UdpSocket } from "node:dgram";
import { connect, createServer, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import { conflict, internal } from "../errors.ts";
import { bound } from "../sockets.ts";
import type { PortBinding } from "../state/model.ts";

/** Where a published port leads. */
export interface ProxyTarget {
  address: string;
  port: number;
}

/**
 * Holds published host ports open and relays what reaches them locally. Traffic from other
 * hosts and other containers is DNAT'ed in the kernel and never gets here; traffic from the
 * host itself (its own address, 127.0.0.1) does, as with Docker's userland proxy. Listening
 * also reserves the port, so a port another program holds is refused up front.
 */
export interface PortPublisher {
  /** Opens the host side of one binding; Conflict when the port is taken on the host. */
  open(owner: string, binding: PortBinding, target: ProxyTarget): Promise<void>;
  /** Closes every binding of an owner (an endpoint ID); nothing open is success. */
  close(owner: string): Promise<void>;
  /** True when that binding of that owner is open (same protocol, host address and port). */
  isOpen(owner: string, binding: PortBinding): boolean;
  /** Bindings currently open, for the status view and tests. */
  openCount(): number;
}

/** The key of a binding's host side: what two opens of the same binding share. */
export const hostSide = (binding: PortBinding): string =>
  `${binding.proto} ${binding.hostIp} ${binding.hostPort}`;

/** Caps on one binding's relay, so a flood of clients cannot exhaust the plugin's sockets. */
export interface RelayLimits {
  /** Concurrent TCP connections per binding; more are closed at once. */
  maxConnections: number;
  /** Concurrent UDP flows (client address and port) per binding; new clients beyond are dropped. */
  maxUdpFlows: number;
}

/** The caps a ProxyPublisher uses unless told otherwise. */
export const DEFAULT_RELAY_LIMITS: RelayLimits = { maxConnections: 1024, maxUdpFlows: 1024 };

/** Where a relay listens on the host. */
export interface HostAddress {
  host: string;
  port: number;
}

/** One published port being relayed: its listening socket and how to tear it all down. */
export interface Relay<Listener> {
  /** The TCP server or UDP socket that holds the host port. */
  readonly listener: Listener;
  /** Stops listening and drops every connection or flow at once, without waiting for clients. */
  close(): Promise<void>;
}

const UDP_IDLE_MS = 90_000;
/** Datagrams a new flow holds while its socket connects (a tick); more are dropped. */
const UDP_CONNECT_QUEUE = 64;
/** A flood above a cap would otherwise log one line per refused packet. */
const CAP_WARNING_INTERVAL_MS = 5_000;

/**
 * Returns a function that warns about one refused connection or datagram, at most once per
 * interval; the next warning says how many were refused in between.
 */
function capWarning(logger: Logger, context: object, message: string): () => void {
  let lastWarned = Number.NEGATIVE_INFINITY;
  let refused = 0;
  return () => {
    refused += 1;
    const now = performance.now();
    if (now - lastWarned < CAP_WARNING_INTERVAL_MS) return;
    lastWarned = now;
    logger.warn({ ...context, refused }, message);
    refused = 0;
  };
}

/** Listens on `at` and relays each TCP connection to `target`, up to `limits.maxConnections`. */
export async function openTcpRelay(
  at: HostAddress,
  target: ProxyTarget,
  limits: RelayLimits,
  logger: Logger,
): Promise<Relay<Server>> {
  const context = { published: `${at.host}:${at.port}/tcp`, target };
  const relayed = new Set<Socket>();
  // Half-open both ways: a client that shuts down its sending side (like `nc` after the
  // request) must still get the whole reply.
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ port: target.port, host: target.address, allowHalfOpen: true });
    // A clean end travels through the pipes, so a closed side never cuts off the other's
    // unflushed reply; only a failed side takes its peer down.
    const destroyBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const [socket, side] of [
      [client, "client"],
      [upstream, "upstream"],
    ] as const) {
      relayed.add(socket);
      socket.on("close", () => relayed.delete(socket));
      socket.on("error", (error) => {
        logger.debug({ ...context, err: error }, `proxy ${side} failed`);
        destroyBoth();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  // Node closes connections above maxConnections before they reach the handler and says 'drop'.
  server.maxConnections = limits.maxConnections;
  server.on(
    "drop",
    capWarning(
      logger,
      { ...context, maxConnections: limits.maxConnections },
      "proxy refused connections above its cap",
    ),
  );
  await bound(server, (done) =>
    server.listen({ host: at.host, port: at.port, exclusive: true }, done),
  );
  // A later error (EMFILE on accept, say) must not become an uncaught exception.
  server.on("error", (error) => logger.warn({ ...context, err: error }, "proxy listener failed"));
  return {
    listener: server,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // server.close() waits for every connection to end; an idle client would hold it forever.
      for (const socket of relayed) socket.destroy();
      relayed.clear();
      return closed;
    },
  };
}

/** Binds `at` and relays each UDP client's datagrams to `target`, up to `limits.maxUdpFlows` clients. */
export async function openUdpRelay(
  at: HostAddress,
  target: ProxyTarget,
  limits: RelayLimits,
  logger: Logger,
): Promise<Relay<UdpSocket>> {
  const context = { published: `${at.host}:${at.port}/udp`, target };
  const socket = createSocket({ type: "udp4" });
  // One upstream socket per client, so replies find their way back to the right client.
  // `queued` holds what the client sent before its socket was connected; undefined once it is.
  const flows = new Map<
    string,
    { upstream: UdpSocket; idle: NodeJS.Timeout; queued: Buffer[] | undefined }
  >();
  const warnRefused = capWarning(
    logger,
    { ...context, maxUdpFlows: limits.maxUdpFlows },
    "proxy dropped datagrams from new clients above its flow cap",
  );
  const endFlow = (key: string) => {
    const flow = flows.get(key);
    if (flow === undefined) return;
    flows.delete(key);
    clearTimeout(flow.idle);
    flow.upstream.close();
  };
  const startFlow = (key: string, client: RemoteInfo) => {
    const upstream = createSocket({ type: "udp4" });
    const flow = {
      upstream,
      idle: setTimeout(() => endFlow(key), UDP_IDLE_MS),
      queued: [] as Buffer[] | undefined,
    };
    upstream.on("message", (reply) => socket.send(reply, client.port, client.address));
    // Without this listener a failed send would be thrown; the flow is rebuilt on the next
    // datagram. A connected socket also hears the target's ICMP errors (ECONNREFUSED) here.
    upstream.on("error", (error) => {
      logger.debug({ ...context, err: error }, "proxy upstream failed");
      endFlow(key);
    });
    // Connected, the kernel delivers to this socket only what the target sends: anyone else
    // who can reach its ephemeral port cannot inject datagrams into the client's flow.
    upstream.connect(target.port, target.address, () => {
      const queued = flow.queued ?? [];
      flow.queued = undefined;
      for (const message of queued) upstream.send(message);
    });
    flows.set(key, flow);
    return flow;
  };
  socket.on("message", (message, client) => {
    const key = `${client.address}:${client.port}`;
    let flow = flows.get(key);
    if (flow === undefined) {
      if (flows.size >= limits.maxUdpFlows) {
        warnRefused();
        return;
      }
      flow = startFlow(key, client);
    } else {
      flow.idle.refresh();
    }
    if (flow.queued === undefined) flow.upstream.send(message);
    else if (flow.queued.length < UDP_CONNECT_QUEUE) flow.queued.push(message);
  });
  await bound(socket, (done) =>
    socket.bind({ address: at.host, port: at.port, exclusive: true }, done),
  );
  // A later error (a failed send back to a client, say) must not become an uncaught exception.
  socket.on("error", (error) => logger.warn({ ...context, err: error }, "proxy listener failed"));
  return {
    listener: socket,
    close: () => {
      for (const key of [...flows.keys()]) endFlow(key);
      return new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
}

/** The real publisher: TCP and UDP listeners in this (host-network) process. */
export class ProxyPublisher implements PortPublisher {
  readonly #logger: Logger;
  readonly #limits: RelayLimits;
  readonly #open = new Map<string, { binding: string; relay: Relay<unknown> }[]>();

  constructor(logger: Logger, limits: Partial<RelayLimits> = {}) {
    this.#logger = logger;
    this.#limits = { ...DEFAULT_RELAY_LIMITS, ...limits };
  }

  async open(owner: string, binding: PortBinding, target: ProxyTarget): Promise<void> {
    if (binding.proto === "sctp") return; // the kernel's DNAT serves SCTP; no local relay
    const at = { host: binding.hostIp === "" ? "0.0.0.0" : binding.hostIp, port: binding.hostPort };
    const where = `${at.host}:${at.port}/${binding.proto}`;
    let relay: Relay<unknown>;
    try {
      relay =
        binding.proto === "tcp"
          ? await openTcpRelay(at, target, this.#limits, this.#logger)
          : await openUdpRelay(at, target, this.#limits, this.#logger);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") {
        throw conflict(
          `cannot publish ${where}: another program on the host already uses that port`,
        );
      }
      if (code === "EADDRNOTAVAIL") {
        throw conflict(`cannot publish ${where}: ${at.host} is not an address of this host`);
      }
      throw internal(`cannot publish ${where}: ${(error as Error).message}`, error);
    }
    const list = this.#open.get(owner) ?? [];
    list.push({ binding: hostSide(binding), relay });
    this.#open.set(owner, list);
    this.#logger.info({ endpoint: owner.slice(0, 12), published: where, target }, "port published");
  }

  async close(owner: string): Promise<void> {
    const list = this.#open.get(owner);
    if (list === undefined) return;
    this.#open.delete(owner);
    await Promise.all(list.map(({ relay }) => relay.close()));
  }

  isOpen(owner: string, binding: PortBinding): boolean {
    const key = hostSide(binding);
    return this.#open.get(owner)?.some((open) => open.binding === key) ?? false;
  }

  openCount(): number {
    let count = 0;
    for (const list of this.#open.values()) count += list.length;
    return count;
  }
}
