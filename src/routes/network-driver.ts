import type { FastifyInstance } from "fastify";
import type { NetworkDriver } from "../driver/network-driver.ts";
import {
  createEndpointBody,
  createNetworkBody,
  discoveryBody,
  emptyBody,
  endpointBody,
  externalConnectivityBody,
  joinBody,
  networkBody,
} from "../protocol/schemas.ts";
import type {
  CreateEndpointRequest,
  CreateEndpointResponse,
  CreateNetworkRequest,
  EndpointRequest,
  ExternalConnectivityRequest,
  JoinRequest,
  JoinResponse,
  NetworkRequest,
} from "../protocol/wire.ts";
import {
  decodeCreateEndpoint,
  decodeCreateNetwork,
  decodePortBindings,
  decodeSandboxKey,
} from "./decode.ts";

/** `/NetworkDriver.*`: decode, call the driver, encode. */
export function registerNetworkRoutes(app: FastifyInstance, driver: NetworkDriver): void {
  app.post("/NetworkDriver.GetCapabilities", { schema: { body: emptyBody } }, async () => ({
    Scope: "local",
    ConnectivityScope: "local",
  }));

  app.post<{ Body: CreateNetworkRequest }>(
    "/NetworkDriver.CreateNetwork",
    { schema: { body: createNetworkBody } },
    async (request) => {
      await driver.createNetwork(decodeCreateNetwork(request.body));
      return {};
    },
  );

  // Swarm-only calls (Scope "global"); Switchyard is local-scoped, so there is nothing to do.
  app.post("/NetworkDriver.AllocateNetwork", { schema: { body: networkBody } }, async () => ({
    Options: {},
  }));
  app.post("/NetworkDriver.FreeNetwork", { schema: { body: networkBody } }, async () => ({}));

  app.post<{ Body: NetworkRequest }>(
    "/NetworkDriver.DeleteNetwork",
    { schema: { body: networkBody } },
    async (request) => {
      await driver.deleteNetwork(request.body.NetworkID);
      return {};
    },
  );

  app.post<{ Body: CreateEndpointRequest }>(
    "/NetworkDriver.CreateEndpoint",
    { schema: { body: createEndpointBody } },
    async (request): Promise<CreateEndpointResponse> => {
      const result = await driver.createEndpoint(decodeCreateEndpoint(request.body));
      // Only fields Docker left empty: echoing one it set fails with "driver modified interface".
      return { Interface: result.mac === undefined ? {} : { MacAddress: result.mac } };
    },
  );

  app.post<{ Body: EndpointRequest }>(
    "/NetworkDriver.EndpointOperInfo",
    { schema: { body: endpointBody } },
    async (request) => ({
      Value: driver.endpointInfo(request.body.NetworkID, request.body.EndpointID),
    }),
  );

  app.post<{ Body: EndpointRequest }>(
    "/NetworkDriver.DeleteEndpoint",
    { schema: { body: endpointBody } },
    async (request) => {
      await driver.deleteEndpoint(request.body.NetworkID, request.body.EndpointID);
      return {};
    },
  );

  app.post<{ Body: JoinRequest }>(
    "/NetworkDriver.Join",
    { schema: { body: joinBody } },
    async (request): Promise<JoinResponse> => {
      const result = await driver.join(
        request.body.NetworkID,
        request.body.EndpointID,
        decodeSandboxKey(request.body.SandboxKey),
      );
      const response: JoinResponse = {
        InterfaceName: { SrcName: result.srcName, DstPrefix: "eth" },
        // RouteType 0: through NextHop (libnetwork's types.NEXTHOP).
        StaticRoutes: (result.routes ?? []).map((route) => ({
          Destination: route.destination,
          RouteType: 0,
          NextHop: route.nextHop,
        })),
        DisableGatewayService: result.disableGatewayService,
      };
      if (result.gateway !== undefined) response.Gateway = result.gateway;
      if (result.gatewayV6 !== undefined) response.GatewayIPv6 = result.gatewayV6;
      return response;
    },
  );

  app.post<{ Body: EndpointRequest }>(
    "/NetworkDriver.Leave",
    { schema: { body: endpointBody } },
    async (request) => {
      await driver.leave(request.body.NetworkID, request.body.EndpointID);
      return {};
    },
  );

  app.post<{ Body: ExternalConnectivityRequest }>(
    "/NetworkDriver.ProgramExternalConnectivity",
    { schema: { body: externalConnectivityBody } },
    async (request) => {
      const body = request.body;
      await driver.programExternalConnectivity(
        body.NetworkID,
        body.EndpointID,
        decodePortBindings(body.Options),
      );
      return {};
    },
  );

  app.post<{ Body: EndpointRequest }>(
    "/NetworkDriver.RevokeExternalConnectivity",
    { schema: { body: endpointBody } },
    async (request) => {
      await driver.revokeExternalConnectivity(request.body.NetworkID, request.body.EndpointID);
      return {};
    },
  );

  // Node discovery is for multi-host drivers; a local driver acknowledges and ignores it.
  app.post("/NetworkDriver.DiscoverNew", { schema: { body: discoveryBody } }, async () => ({}));
  app.post("/NetworkDriver.DiscoverDelete", { schema: { body: discoveryBody } }, async () => ({}));
}
