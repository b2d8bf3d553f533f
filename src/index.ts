/**
 * The package's library entry: the test-fixture API for users' own integration tests, and the
 * pieces it hands back.
 */
export type { DeviceDescription } from "./device/description.js";
export { type SpawnedDevice, spawnDevice } from "./fixture/spawn-device.js";
export {
  loadTopology,
  parseTopology,
  type RunningTopology,
  startTopology,
  type Topology,
  type TopologyDevice,
  type TopologyEntry,
  TopologyError,
  type TopologyOptions,
} from "./fixture/topology.js";
export type { TopologyView } from "./host/api.js";
export {
  type ApiResponse,
  apiRequest,
  type EventWatch,
  getTopology,
  type HostEventMessage,
  TopologyTimeout,
  topologyReaches,
  watchEvents,
} from "./host/api-client.js";
export { type Host, type HostOptions, startHost } from "./host/host.js";
export { type Endpoint, formatEndpoint, parseEndpoint } from "./net/framed.js";
