import {
  AddThingToThingGroupCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  type IoTClient,
  ResourceAlreadyExistsException,
} from '@aws-sdk/client-iot';
import type { SampleUpdate } from './sample-update.ts';

/** What the main job does as an operator would: HTTP to the operator API, the IoT registry API. */

interface UploadTarget {
  readonly filename: string;
  readonly uploadUrl?: string;
}

interface UpdateView {
  readonly state: string;
  readonly files?: readonly UploadTarget[];
}

export interface DeploymentView {
  readonly deploymentId: string;
  readonly status: string;
  readonly devices: number;
  readonly counts: Readonly<Record<string, number>>;
  readonly abortReason?: string;
}

async function call<T>(url: string, init: RequestInit & { readonly expect: readonly number[] }): Promise<T> {
  const res = await fetch(url, init);
  const text = await res.text();
  if (!init.expect.includes(res.status)) {
    throw new Error(`${init.method ?? 'GET'} ${new URL(url).pathname} answered ${res.status}: ${text}`);
  }
  return (text === '' ? {} : JSON.parse(text)) as T;
}

const json = (body: unknown): RequestInit => ({
  body: JSON.stringify(body),
  headers: { 'content-type': 'application/json' },
});

/** Imports the parent and its child, uploads every file through its presigned URL, commits. */
export async function importSampleUpdate(api: string, sample: SampleUpdate): Promise<void> {
  const imported = await call<{ updates: UpdateView[] }>(`${api}/updates`, {
    method: 'POST',
    ...json(sample.request),
    expect: [200, 201],
  });
  for (const update of imported.updates) {
    for (const target of update.files ?? []) {
      const file = sample.files.get(target.filename);
      if (!target.uploadUrl || !file) continue;
      await call(target.uploadUrl, { method: 'PUT', body: file.content, expect: [200] });
    }
  }
  const { provider, name, version } = sample.parentId;
  await call(`${api}/updates/${provider}/${name}/${version}/commit`, { method: 'POST', expect: [200] });
}

/** The next free version of the demo update, so every run deploys something new to the fleet. */
export async function nextSampleVersion(api: string): Promise<string> {
  let highest = 0;
  let nextToken: string | undefined;
  do {
    const page = await call<{
      items: { updateId: { name: string; version: string } }[];
      nextToken?: string;
    }>(`${api}/updates?limit=100${nextToken ? `&nextToken=${encodeURIComponent(nextToken)}` : ''}`, {
      expect: [200],
    });
    for (const u of page.items) {
      const minor = /^1\.(\d+)$/.exec(u.updateId.version)?.[1];
      if (u.updateId.name.toLowerCase() === 'demo-gateway' && minor)
        highest = Math.max(highest, Number(minor));
    }
    nextToken = page.nextToken;
  } while (nextToken);
  return `1.${highest + 1}`;
}

/** Registers the things and puts them in one group (idempotent: a second start reuses them). */
export async function registerFleet(iot: IoTClient, group: string, things: readonly string[]): Promise<void> {
  await iot.send(new CreateThingGroupCommand({ thingGroupName: group })).catch(ignoreExisting);
  const concurrency = 20;
  for (let i = 0; i < things.length; i += concurrency) {
    await Promise.all(
      things.slice(i, i + concurrency).map(async (thingName) => {
        await iot.send(new CreateThingCommand({ thingName })).catch(ignoreExisting);
        await iot.send(new AddThingToThingGroupCommand({ thingName, thingGroupName: group }));
      }),
    );
  }
}

function ignoreExisting(error: unknown): void {
  if (!(error instanceof ResourceAlreadyExistsException)) throw error;
}

export async function createDeployment(api: string, request: unknown): Promise<DeploymentView> {
  return call<DeploymentView>(`${api}/deployments`, { method: 'POST', ...json(request), expect: [201] });
}

export async function getDeployment(api: string, deploymentId: string): Promise<DeploymentView> {
  return call<DeploymentView>(`${api}/deployments/${encodeURIComponent(deploymentId)}`, { expect: [200] });
}
