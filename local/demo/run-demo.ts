import { join } from 'node:path';
import { IoTClient } from '@aws-sdk/client-iot';
import { makeLogger } from '../../agent/log.ts';
import { simulatedThingName, startFleet } from '../../agent/simulate.ts';
import type { LocalCloud } from '../cloud.ts';
import {
  createDeployment,
  type DeploymentView,
  getDeployment,
  importSampleUpdate,
  nextSampleVersion,
  registerFleet,
} from './operator.ts';
import { startProgress } from './progress.ts';
import { sampleUpdate } from './sample-update.ts';

/**
 * One group per fleet size: the registry persists in the data directory, so a later run with
 * another `--devices` must not target devices that no simulated agent answers for.
 */
export function demoGroup(devices: number): string {
  return `demo-fleet-${devices}`;
}
export const demoThingPrefix = 'demo-device-';

export interface DemoOptions {
  readonly devices: number;
  /** Where the simulated devices keep their journals and work files. */
  readonly deviceRoot: string;
  readonly log: (line: string) => void;
  /** Told of the simulated fleet as soon as it runs, so a Ctrl-C can stop it. */
  readonly onFleet?: (fleet: { stop(): Promise<void> }) => void;
}

export interface DemoResult {
  readonly deploymentId: string;
  readonly status: string;
  readonly devices: number;
  readonly counts: Readonly<Record<string, number>>;
  readonly durationSeconds: number;
}

const endedStatuses = new Set(['completed', 'aborted', 'canceled']);

/** The names the simulated fleet uses, so the registry and the devices agree. */
export function demoThingNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => simulatedThingName(demoThingPrefix, i + 1, count));
}

function mqttHostPort(url: string): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port) };
}

/**
 * The main job: a fleet of simulated devices in a thing group, the seed-shaped sample update
 * imported, deployed with a phased rollout, and followed until every device has answered.
 */
export async function runDemo(cloud: LocalCloud, options: DemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const { endpoints } = cloud;
  const iot = new IoTClient({
    endpoint: endpoints.iot,
    region: cloud.region,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const things = demoThingNames(options.devices);
  const group = demoGroup(options.devices);
  options.log(`registering ${things.length} devices in thing group ${group}...`);
  await registerFleet(iot, group, things);
  iot.destroy();

  const version = await nextSampleVersion(endpoints.api);
  const sample = sampleUpdate(version, new Date());
  options.log(
    `importing update Contoso/Demo-Gateway/${version} with its child Contoso/Demo-Camera/${version}...`,
  );
  await importSampleUpdate(endpoints.api, sample);

  const fleet = await startFleet({
    count: options.devices,
    prefix: demoThingPrefix,
    ...mqttHostPort(endpoints.mqtt),
    trustedKeys: [cloud.resources.signingPublicKey],
    root: options.deviceRoot,
    compatibility: sample.deviceCompatibility,
    components: [{ id: 'camera-0', name: 'front-camera', ...sample.componentCompatibility }],
    handler: { downloadMs: 100, installMs: 300, applyMs: 100, failureRate: 0 },
    s3Endpoint: endpoints.s3,
    // Devices speak up only when something goes wrong (SHADOW_OTA_DEMO_LOG=debug for everything).
    log: makeLogger({ level: process.env.SHADOW_OTA_DEMO_LOG === 'debug' ? 'debug' : 'warn' }),
  });
  options.onFleet?.(fleet);

  options.log('deploying with a phased rollout (ramping from 20 to 600 devices per minute)...');
  const created = await createDeployment(endpoints.api, {
    update: sample.parentId,
    target: { thingGroups: [demoGroup(options.devices)] },
    policy: {
      rollout: {
        ratePerMinute: 600,
        ramp: { startRatePerMinute: 20, factor: 2, increaseAfterSucceeded: 5 },
      },
      abort: [{ failureType: 'ANY_FAILURE', thresholdPercent: 20, minFinishedDevices: 10 }],
      deviceTimeoutSeconds: 300,
    },
  });

  const view = await follow(endpoints.api, created, options.devices);
  return {
    deploymentId: view.deploymentId,
    status: view.status,
    devices: view.devices,
    counts: view.counts,
    durationSeconds: Math.round((Date.now() - started) / 100) / 10,
  };
}

async function follow(api: string, created: DeploymentView, expected: number): Promise<DeploymentView> {
  const progress = startProgress(expected);
  let view = created;
  try {
    while (!endedStatuses.has(view.status)) {
      await new Promise((r) => setTimeout(r, 500));
      view = await getDeployment(api, created.deploymentId);
      progress.update(view);
    }
  } finally {
    progress.stop();
  }
  return view;
}

export function demoDeviceRoot(stateDir: string): string {
  return join(stateDir, 'demo-devices');
}
