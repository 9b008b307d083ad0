/**
 * Real device agents for end-to-end tests: in process (agent/run.ts startAgent) or as their own
 * process (agent/bin.js, so a test can SIGKILL one), with the real script and file handlers, each
 * device with its own folders, and the test script whose side effects on disk the tests read.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfig } from '../../../agent/config.ts';
import type { Component } from '../../../agent/handlers/types.ts';
import { silentLogger } from '../../../agent/log.ts';
import { type RunningAgent, startAgent } from '../../../agent/run.ts';
import type { TrustedKey } from '../../../lambdas/domain/signing/index.ts';
import type { LocalCloud } from '../../../local/cloud.ts';
import { aduTestScript } from '../../support/adu-script.ts';
import { readLines } from '../../support/files.ts';

/** The install script the test devices run (test/support/adu-script.ts). */
export const deviceScript = aduTestScript;

export interface DeviceFolders {
  readonly root: string;
  /** Where the test script leaves its side effects. */
  readonly scriptState: string;
  readonly workDir: string;
  readonly stateDir: string;
  /** Where the file handler installs the `config` destination. */
  readonly configFile: string;
  /** Where the file handler installs the `blob` destination. */
  readonly blobFile: string;
}

export async function deviceFolders(root: string, thingName: string): Promise<DeviceFolders> {
  const dir = join(root, thingName);
  const folders = {
    root: dir,
    scriptState: join(dir, 'script-state'),
    workDir: join(dir, 'work'),
    stateDir: join(dir, 'state'),
    configFile: join(dir, 'installed', 'app.conf'),
    blobFile: join(dir, 'installed', 'blob.bin'),
  };
  await mkdir(folders.scriptState, { recursive: true });
  return folders;
}

export interface DeviceOptions {
  readonly compatibility?: Readonly<Record<string, string>>;
  readonly components?: readonly Component[];
  readonly trustedKeys?: readonly TrustedKey[];
  /** Used for the STS download mode: the agent presigns its GETs for this endpoint. */
  readonly s3Endpoint?: string;
}

export const gatewayCompatibility = { manufacturer: 'contoso', model: 'e2e-gateway' } as const;
export const frontCamera: Component = { id: 'cam-1', name: 'front-camera', group: 'cameras' };

/** A device on the cloud's plain MQTT endpoint, trusting the cloud's signing key. */
export function deviceConfig(
  cloud: LocalCloud,
  thingName: string,
  folders: DeviceFolders,
  options: DeviceOptions = {},
): AgentConfig {
  const url = new URL(cloud.endpoints.mqtt);
  return {
    thingName,
    mqtt: { host: url.hostname, port: Number(url.port) },
    workDir: folders.workDir,
    stateDir: folders.stateDir,
    trustedKeys: options.trustedKeys ?? [cloud.resources.signingPublicKey],
    compatibility: options.compatibility ?? gatewayCompatibility,
    components: options.components ?? [frontCamera],
    handlers: { file: { destinations: { config: folders.configFile, blob: folders.blobFile } } },
    ...(options.s3Endpoint ? { s3Endpoint: options.s3Endpoint } : {}),
    progressIntervalMs: 0,
    logLevel: 'warn',
  };
}

export async function startDevice(config: AgentConfig): Promise<RunningAgent> {
  return startAgent(config, { log: silentLogger });
}

/**
 * The agent as a device runs it: its own process (`agent/bin.js run -c <file>`) over mutual TLS
 * with a certificate the local IoT Core issued, so a test can kill it outright.
 */
export async function spawnDeviceProcess(
  cloud: LocalCloud,
  thingName: string,
  folders: DeviceFolders,
): Promise<ChildProcess> {
  const certificate = await cloud.iot.issueClientCertificate(thingName);
  const certificateFile = join(folders.root, 'device.crt');
  const privateKeyFile = join(folders.root, 'device.key');
  await writeFile(certificateFile, certificate.cert);
  await writeFile(privateKeyFile, certificate.key, { mode: 0o600 });
  const configFile = join(folders.root, 'agent.json');
  const mqtts = new URL(cloud.endpoints.mqtts);
  await writeFile(
    configFile,
    JSON.stringify({
      thingName,
      endpoint: `mqtts://localhost:${mqtts.port}`,
      certificateFile,
      privateKeyFile,
      caFile: cloud.resources.iotCaFile,
      workDir: folders.workDir,
      stateDir: folders.stateDir,
      trustedKeys: [cloud.resources.signingPublicKey],
      compatibility: gatewayCompatibility,
      components: [frontCamera],
      handlers: { file: { destinations: { config: folders.configFile, blob: folders.blobFile } } },
      logLevel: 'error',
    }),
  );
  const child = spawn(
    process.execPath,
    [join(import.meta.dirname, '../../../agent/bin.js'), 'run', '-c', configFile],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.once('exit', (code, signal) => {
    if (code !== 0 && signal === null) console.error(`agent ${thingName} exited ${code}: ${stderr}`);
  });
  return child;
}

/** Kills a process and waits for it to be gone. */
export async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await gone;
}

export async function callsOf(folders: DeviceFolders): Promise<string[]> {
  return readLines(join(folders.scriptState, 'calls.log'));
}

/** Waits until the test script logged `line` (e.g. `--action-install slow-1`). */
export async function waitForCall(folders: DeviceFolders, line: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await callsOf(folders)).includes(line)) {
    if (Date.now() > end)
      throw new Error(`the script never logged "${line}": ${(await callsOf(folders)).join(' | ')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export { readLines };
