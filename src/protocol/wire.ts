/**
 * Wire types of Docker's remote NetworkDriver and IpamDriver protocols, with the field names
 * exactly as dockerd sends and reads them (libnetwork drivers/remote/api, ipams/remote/api).
 */

/** Options as they arrive in CreateNetwork / CreateEndpoint / Join. */
export type WireOptions = Record<string, unknown>;

export interface IpamData {
  AddressSpace?: string;
  Pool?: string;
  Gateway?: string;
  AuxAddresses?: Record<string, string>;
}

export interface CreateNetworkRequest {
  NetworkID: string;
  Options?: WireOptions | null;
  IPv4Data?: IpamData[] | null;
  IPv6Data?: IpamData[] | null;
}

export interface NetworkRequest {
  NetworkID: string;
}

export interface EndpointInterface {
  Address?: string;
  AddressIPv6?: string;
  MacAddress?: string;
}

export interface CreateEndpointRequest {
  NetworkID: string;
  EndpointID: string;
  Interface?: EndpointInterface | null;
  Options?: WireOptions | null;
}

export interface CreateEndpointResponse {
  Interface: EndpointInterface | null;
}

export interface EndpointRequest {
  NetworkID: string;
  EndpointID: string;
}

export interface JoinRequest {
  NetworkID: string;
  EndpointID: string;
  SandboxKey?: string;
  Options?: WireOptions | null;
}

export interface StaticRoute {
  Destination: string;
  RouteType: number;
  NextHop?: string;
}

export interface JoinResponse {
  InterfaceName: { SrcName: string; DstPrefix: string };
  Gateway?: string;
  GatewayIPv6?: string;
  StaticRoutes?: StaticRoute[];
  DisableGatewayService: boolean;
}

export interface ExternalConnectivityRequest {
  NetworkID: string;
  EndpointID: string;
  Options?: WireOptions | null;
}

export interface RequestPoolRequest {
  AddressSpace?: string;
  Pool?: string;
  SubPool?: string;
  Options?: Record<string, string> | null;
  V6?: boolean;
}

export interface RequestPoolResponse {
  PoolID: string;
  Pool: string;
  Data: Record<string, string>;
}

export interface ReleasePoolRequest {
  PoolID: string;
}

export interface RequestAddressRequest {
  PoolID: string;
  Address?: string;
  Options?: Record<string, string> | null;
}

export interface RequestAddressResponse {
  Address: string;
  Data: Record<string, string>;
}

export interface ReleaseAddressRequest {
  PoolID: string;
  Address: string;
}

/** Well-known option keys dockerd puts in request Options. */
export const OptionKeys = {
  generic: "com.docker.network.generic",
  enableIpv6: "com.docker.network.enable_ipv6",
  internal: "com.docker.network.internal",
  portMap: "com.docker.network.portmap",
  exposedPorts: "com.docker.network.endpoint.exposedports",
  requestAddressType: "RequestAddressType",
  /** Docker 29 and later: the container's name, in a container's RequestAddress options. */
  endpointName: "com.docker.network.endpoint.name",
  /** `--ipam-opt sticky=true`: keep each container name's automatic address. */
  sticky: "sticky",
  gatewayAddressType: "com.docker.network.gateway",
} as const;
