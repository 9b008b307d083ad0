/**
 * Where the local cloud keeps what under its data directory: one place for the cloud and for the
 * tools that read what it left there (the CLI). Light on purpose: no service is imported.
 */
import { join } from 'node:path';

/** The endpoints the running cloud publishes (ADR 0030). */
export const endpointsFileOf = (dataDir: string): string => join(dataDir, 'endpoints.json');

/** The local IoT Core's state: shadows, registry, TLS material. */
export const iotDirOf = (stateDir: string): string => join(stateDir, 'iot');

/** The local IoT Core's CA and server certificate, inside its state directory. */
export const tlsDirOf = (iotDir: string): string => join(iotDir, 'tls');
