import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { thingNamePattern } from '../lambdas/domain/deployment/request.ts';
import { err, type Fault, ok, pointer, type Result } from '../lambdas/domain/result.ts';
import type { TrustedKey } from '../lambdas/domain/signing/index.ts';
import type { Component } from './handlers/types.ts';
import type { LogLevel } from './log.ts';
import type { MqttEndpoint } from './mqtt.ts';

/**
 * The agent's configuration: a JSON file, with environment variables over it (for the secrets'
 * paths and per-device values a fleet image cannot hold). Every fault is reported with its JSON
 * pointer into the file.
 */
const trustedKeyShape = z.looseObject({
  kty: z.literal('EC'),
  crv: z.literal('P-256'),
  x: z.string().min(1),
  y: z.string().min(1),
  kid: z.string().min(1),
});

const componentShape = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  group: z.string().optional(),
  manufacturer: z.string().optional(),
  model: z.string().optional(),
  version: z.string().optional(),
  properties: z.record(z.string(), z.string()).optional(),
});

export const configFileSchema = z.strictObject({
  thingName: z.string().regex(thingNamePattern, 'an AWS IoT thing name: 1-128 of [a-zA-Z0-9:_-]'),
  /** `mqtts://host:port` (mutual TLS) or `mqtt://host:port` (plain, development only). */
  endpoint: z.string().regex(/^mqtts?:\/\/[^/:]+(:\d+)?$/, 'mqtts://host:port or mqtt://host:port'),
  certificateFile: z.string().optional(),
  privateKeyFile: z.string().optional(),
  caFile: z.string().optional(),
  workDir: z.string().min(1),
  stateDir: z.string().min(1),
  trustedKeys: z.array(trustedKeyShape).optional(),
  trustedKeysFile: z.string().optional(),
  compatibility: z
    .record(z.string().min(1).max(32), z.string().min(1).max(64))
    .refine((c) => Object.keys(c).length <= 10, 'at most 10 properties')
    .default({}),
  components: z.array(componentShape).default([]),
  handlers: z
    .strictObject({
      script: z.strictObject({ timeoutMs: z.number().int().positive().optional() }).optional(),
      apt: z
        .strictObject({
          updateLists: z.boolean().optional(),
          timeoutMs: z.number().int().positive().optional(),
        })
        .optional(),
      file: z.strictObject({ destinations: z.record(z.string(), z.string()) }).optional(),
    })
    .default({}),
  /** argv of the reboot command, e.g. ["systemctl", "reboot"]; absent: log and wait for someone to reboot. */
  rebootCommand: z.array(z.string().min(1)).min(1).optional(),
  s3Endpoint: z.string().url().optional(),
  progressIntervalMs: z.number().int().min(0).default(0),
  logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
});

export type ConfigFile = z.infer<typeof configFileSchema>;

export interface AgentConfig {
  readonly thingName: string;
  readonly mqtt: MqttEndpoint;
  readonly workDir: string;
  readonly stateDir: string;
  readonly trustedKeys: readonly TrustedKey[];
  readonly compatibility: Readonly<Record<string, string>>;
  readonly components: readonly Component[];
  readonly handlers: ConfigFile['handlers'];
  readonly rebootCommand?: readonly string[];
  readonly s3Endpoint?: string;
  readonly progressIntervalMs: number;
  readonly logLevel: LogLevel;
}

/** Environment variables that override the file (`SHADOW_OTA_AGENT_THING_NAME`, ...). */
export const configEnvironment = {
  thingName: 'SHADOW_OTA_AGENT_THING_NAME',
  endpoint: 'SHADOW_OTA_AGENT_ENDPOINT',
  certificateFile: 'SHADOW_OTA_AGENT_CERTIFICATE_FILE',
  privateKeyFile: 'SHADOW_OTA_AGENT_PRIVATE_KEY_FILE',
  caFile: 'SHADOW_OTA_AGENT_CA_FILE',
  workDir: 'SHADOW_OTA_AGENT_WORK_DIR',
  stateDir: 'SHADOW_OTA_AGENT_STATE_DIR',
  trustedKeysFile: 'SHADOW_OTA_AGENT_TRUSTED_KEYS_FILE',
  s3Endpoint: 'SHADOW_OTA_AGENT_S3_ENDPOINT',
  logLevel: 'SHADOW_OTA_AGENT_LOG_LEVEL',
} as const;

function faultsOf(error: z.ZodError): Fault[] {
  return error.issues.map((i) => ({
    path: pointer(i.path.map((p) => (typeof p === 'symbol' ? String(p) : p))),
    message: i.message,
  }));
}

/** Merges the file with the environment and validates the result; relative paths are taken from `baseDir`. */
export function parseAgentConfig(
  file: unknown,
  environment: Readonly<Record<string, string | undefined>>,
): Result<ConfigFile, Fault[]> {
  const fromEnv = Object.fromEntries(
    Object.entries(configEnvironment)
      .map(([key, name]) => [key, environment[name]] as const)
      .filter((e): e is readonly [string, string] => typeof e[1] === 'string' && e[1] !== ''),
  );
  const base = typeof file === 'object' && file !== null && !Array.isArray(file) ? file : {};
  const parsed = configFileSchema.safeParse({ ...base, ...fromEnv });
  if (!parsed.success) return err(faultsOf(parsed.error));
  const c = parsed.data;
  const faults: Fault[] = [];
  if (c.endpoint.startsWith('mqtts://') && (!c.certificateFile || !c.privateKeyFile)) {
    faults.push({
      path: '/certificateFile',
      message: 'an mqtts endpoint needs certificateFile and privateKeyFile',
    });
  }
  if (!c.trustedKeys?.length && !c.trustedKeysFile) {
    faults.push({
      path: '/trustedKeys',
      message: 'give at least one trusted key (trustedKeys or trustedKeysFile)',
    });
  }
  return faults.length > 0 ? err(faults) : ok(c);
}

/**
 * What a trusted-keys file may hold: one public JWK (what the local cloud writes beside its signing
 * key), an array of them, or a JWK Set (`{"keys": [...]}`, RFC 7517), as an operator publishes one.
 */
const trustedKeysFileShape = z.union([
  trustedKeyShape.transform((key) => [key]),
  z.array(trustedKeyShape),
  z.object({ keys: z.array(trustedKeyShape) }).transform((set) => set.keys),
]);

async function readTrustedKeys(path: string): Promise<Result<readonly TrustedKey[], Fault[]>> {
  const fault = (message: string): Fault[] => [{ path: '/trustedKeysFile', message: `${path}: ${message}` }];
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    return err(fault(`cannot read it: ${(e as Error).message}`));
  }
  const keys = trustedKeysFileShape.safeParse(json);
  if (!keys.success) {
    return err(fault('must hold an EC P-256 public JWK, an array of them, or a JWK Set {"keys": [...]}'));
  }
  return ok(keys.data as TrustedKey[]);
}

/** Reads the files a configuration names (certificates, keys) and builds the runtime configuration. */
export async function loadAgentConfig(
  configPath: string | undefined,
  environment: Readonly<Record<string, string | undefined>>,
): Promise<Result<AgentConfig, Fault[]>> {
  let file: unknown = {};
  const baseDir = configPath ? resolve(configPath, '..') : process.cwd();
  if (configPath) {
    try {
      file = JSON.parse(await readFile(configPath, 'utf8'));
    } catch (e) {
      return err([{ path: '', message: `cannot read ${configPath}: ${(e as Error).message}` }]);
    }
  }
  const parsed = parseAgentConfig(file, environment);
  if (!parsed.ok) return parsed;
  const c = parsed.value;
  const at = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  const keysFromFile = c.trustedKeysFile ? await readTrustedKeys(at(c.trustedKeysFile)) : ok([]);
  if (!keysFromFile.ok) return keysFromFile;
  try {
    const url = new URL(c.endpoint);
    const tls = url.protocol === 'mqtts:';
    const mqtt: MqttEndpoint = {
      host: url.hostname,
      port: Number(url.port || (tls ? 8883 : 1883)),
      ...(tls && c.certificateFile && c.privateKeyFile
        ? {
            tls: {
              cert: await readFile(at(c.certificateFile), 'utf8'),
              key: await readFile(at(c.privateKeyFile), 'utf8'),
              ...(c.caFile ? { ca: await readFile(at(c.caFile), 'utf8') } : {}),
            },
          }
        : {}),
    };
    return ok({
      thingName: c.thingName,
      mqtt,
      workDir: at(c.workDir),
      stateDir: at(c.stateDir),
      trustedKeys: [...((c.trustedKeys ?? []) as TrustedKey[]), ...keysFromFile.value],
      compatibility: c.compatibility,
      components: c.components,
      handlers: c.handlers,
      ...(c.rebootCommand ? { rebootCommand: c.rebootCommand } : {}),
      ...(c.s3Endpoint ? { s3Endpoint: c.s3Endpoint } : {}),
      progressIntervalMs: c.progressIntervalMs,
      logLevel: c.logLevel,
    });
  } catch (e) {
    return err([
      { path: '', message: `cannot load the files the configuration names: ${(e as Error).message}` },
    ]);
  }
}
