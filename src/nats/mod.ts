/** NATS plumbing: server binary, the embedded server, streams, buckets and consumers, the engine's credential. */
export { Buckets, consumerName, isProbe, parseConsumerName, PROBE_HEADER, PROBE_TENANT, Streams, WEBHOOK_DLQ_PREFIX, WEBHOOK_LOG_PER_WEBHOOK, WEBHOOK_LOG_PREFIX } from "./names.ts";
export { isCasFailure, isNotFound, isTooLarge, isTransient, TransientError } from "./errors.ts";
export { atLeast, binaryVersion, natsBinary, natsBinaryIfPresent, natsServerBinary, NatsServerMissingError, parseVersion, type NatsTool } from "./server-binary.ts";
export { EmbeddedServerError, serverConfigFile, startNatsServer, writeServerConfig, type EmbeddedServer } from "./embedded.ts";
export { ensureTopology, openBucket, partitionBacklog, partitionConsumer, partitionConsumerConfig, partitionConsumers, partitionsDrained, TopologyError, type MappingSite } from "./topology.ts";
export { FastKv, JsRequests, type KvStore } from "./requests.ts";
export { authDir, configuredCredential, CredentialsError, ensureEngineSeed, natsAuthOptions, readCredential, type NatsAuthOptions } from "./credentials.ts";
export { checkPartitionMapping } from "./mapping-probe.ts";
export { StartupTimeoutError, whenAnswered } from "./startup.ts";
export { isAlive, processStartTime } from "./process.ts";
export { acquireStoreLock, lockFile, StoreLockedError, type LockHolder } from "./store-lock.ts";
export { claimStore } from "./ownership.ts";
export { currentEntries, watchChanges } from "./kv.ts";
export { readOrdered } from "./read.ts";
