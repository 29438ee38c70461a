import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { connect, createServer, type Server } from "node:net";
import type { Logger } from "pino";
import { conflict, internal } from "../errors.ts";
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
  /** Bindings currently open, for the status view and tests. */
  openCount(): number;
}

const UDP_IDLE_MS = 90_000;

function listenTcp(
  host: string,
  port: number,
  target: ProxyTarget,
  logger: Logger,
): Promise<Server> {
  // Half-open both ways: a client that shuts down its sending side (like `nc` after the
  // request) must still get the whole reply.
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ port: target.port, host: target.address, allowHalfOpen: true });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close);
    upstream.on("error", (error) => {
      logger.debug({ err: error, target }, "proxy upstream failed");
      close();
    });
    client.pipe(upstream).pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}

function listenUdp(host: string, port: number, target: ProxyTarget): Promise<UdpSocket> {
  const socket = createSocket({ type: "udp4" });
  const flows = new Map<string, { upstream: UdpSocket; timer: NodeJS.Timeout }>();
  socket.on("message", (message, client) => {
    const key = `${client.address}:${client.port}`;
    let flow = flows.get(key);
    if (flow === undefined) {
      const upstream = createSocket({ type: "udp4" });
      upstream.on("message", (reply) => socket.send(reply, client.port, client.address));
      upstream.on("error", () => upstream.close());
      flow = { upstream, timer: setTimeout(() => undefined, 0) };
      flows.set(key, flow);
    }
    clearTimeout(flow.timer);
    const current = flow;
    current.timer = setTimeout(() => {
      current.upstream.close();
      flows.delete(key);
    }, UDP_IDLE_MS);
    current.upstream.send(message, target.port, target.address);
  });
  socket.on("close", () => {
    for (const flow of flows.values()) {
      clearTimeout(flow.timer);
      flow.upstream.close();
    }
  });
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind({ address: host, port, exclusive: true }, () => {
      socket.off("error", reject);
      resolve(socket);
    });
  });
}

/** The real publisher: TCP and UDP listeners in this (host-network) process. */
export class ProxyPublisher implements PortPublisher {
  readonly #logger: Logger;
  readonly #open = new Map<string, (() => Promise<void>)[]>();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  async open(owner: string, binding: PortBinding, target: ProxyTarget): Promise<void> {
    if (binding.proto === "sctp") return; // the kernel's DNAT serves SCTP; no local relay
    const host = binding.hostIp === "" ? "0.0.0.0" : binding.hostIp;
    const where = `${host}:${binding.hostPort}/${binding.proto}`;
    let closer: () => Promise<void>;
    try {
      if (binding.proto === "tcp") {
        const server = await listenTcp(host, binding.hostPort, target, this.#logger);
        closer = () => new Promise((resolve) => server.close(() => resolve()));
      } else {
        const socket = await listenUdp(host, binding.hostPort, target);
        closer = () => new Promise((resolve) => socket.close(() => resolve()));
      }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") {
        throw conflict(
          `cannot publish ${where}: another program on the host already uses that port`,
        );
      }
      if (code === "EADDRNOTAVAIL") {
        throw conflict(`cannot publish ${where}: ${host} is not an address of this host`);
      }
      throw internal(`cannot publish ${where}: ${(error as Error).message}`, error);
    }
    const list = this.#open.get(owner) ?? [];
    list.push(closer);
    this.#open.set(owner, list);
    this.#logger.info({ endpoint: owner.slice(0, 12), published: where, target }, "port published");
  }

  async close(owner: string): Promise<void> {
    const list = this.#open.get(owner);
    if (list === undefined) return;
    this.#open.delete(owner);
    await Promise.all(list.map((closer) => closer()));
  }

  openCount(): number {
    let count = 0;
    for (const list of this.#open.values()) count += list.length;
    return count;
  }
}

/** A publisher that only records, for tests without sockets. */
export class RecordingPublisher implements PortPublisher {
  readonly opened = new Map<string, PortBinding[]>();
  /** Host ports that behave as if another program held them. */
  readonly busy = new Set<string>();

  async open(owner: string, binding: PortBinding): Promise<void> {
    if (this.busy.has(`${binding.hostPort}/${binding.proto}`)) {
      throw conflict(
        `cannot publish ${binding.hostPort}/${binding.proto}: another program on the host already uses that port`,
      );
    }
    this.opened.set(owner, [...(this.opened.get(owner) ?? []), binding]);
  }

  async close(owner: string): Promise<void> {
    this.opened.delete(owner);
  }

  openCount(): number {
    return [...this.opened.values()].reduce((sum, list) => sum + list.length, 0);
  }
}
