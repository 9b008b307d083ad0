/** The read side of the deployments API: listings and status pages. */
import { type DeploymentStatus, deploymentStatuses } from '../../adapters/deployment-store.ts';
import { type ExecutionState, isExecutionState, thingNameSchema } from '../../domain/deployment/index.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { type Problem, problem } from '../../http/problem.ts';
import type { DeploymentsDeps } from './deps.ts';
import { listDevices } from './device-listing.ts';
import { deploymentView, deviceView, executionView } from './views.ts';

export type Query = Readonly<Record<string, string | undefined>>;

const PAGE = { default: 25, max: 100 } as const;

function pageLimit(query: Query): Result<number, Problem> {
  if (query.limit === undefined) return ok(PAGE.default);
  const limit = Number(query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > PAGE.max) {
    return err(
      problem('BAD_REQUEST', 'Invalid query.', [
        { path: '/limit', message: `must be an integer from 1 to ${PAGE.max}` },
      ]),
    );
  }
  return ok(limit);
}

const badToken = (): Problem => problem('INVALID_NEXT_TOKEN', 'nextToken is not one this listing issued.');

/** `GET /deployments?status=&limit=&nextToken=`. */
export async function listDeployments(
  deps: Pick<DeploymentsDeps, 'deployments'>,
  query: Query,
): Promise<Result<Record<string, unknown>, Problem>> {
  const limit = pageLimit(query);
  if (!limit.ok) return limit;
  const status = query.status;
  if (status !== undefined && !(deploymentStatuses as readonly string[]).includes(status)) {
    return err(
      problem('BAD_REQUEST', 'Invalid query.', [
        { path: '/status', message: `must be one of ${deploymentStatuses.join(', ')}` },
      ]),
    );
  }
  const page = await deps.deployments.list({
    limit: limit.value,
    ...(status !== undefined ? { status: status as DeploymentStatus } : {}),
    ...(query.nextToken !== undefined ? { nextToken: query.nextToken } : {}),
  });
  if (!page.ok) return err(badToken());
  return ok({
    deployments: page.value.items.map(deploymentView),
    ...(page.value.nextToken ? { nextToken: page.value.nextToken } : {}),
  });
}

/** `GET /deployments/{id}`: counts per state, rates, abort reason, start and end times. */
export async function getDeployment(
  deps: Pick<DeploymentsDeps, 'deployments'>,
  deploymentId: string,
): Promise<Result<Record<string, unknown>, Problem>> {
  const deployment = await deps.deployments.get(deploymentId);
  if (!deployment) return err(problem('DEPLOYMENT_NOT_FOUND', `Deployment ${deploymentId} does not exist.`));
  return ok(deploymentView(deployment));
}

/** `GET /deployments/{id}/devices?state=&limit=&nextToken=`: executions with result codes and step results. */
export async function listDeploymentDevices(
  deps: Pick<DeploymentsDeps, 'deployments' | 'executions' | 'targets'>,
  deploymentId: string,
  query: Query,
): Promise<Result<Record<string, unknown>, Problem>> {
  const limit = pageLimit(query);
  if (!limit.ok) return limit;
  const state = query.state;
  if (state !== undefined && !isExecutionState(state)) {
    return err(
      problem('BAD_REQUEST', 'Invalid query.', [{ path: '/state', message: 'is not an execution state' }]),
    );
  }
  const deployment = await deps.deployments.get(deploymentId);
  if (!deployment) {
    return err(problem('DEPLOYMENT_NOT_FOUND', `Deployment ${deploymentId} does not exist.`));
  }
  const page = await listDevices(deps, deployment, {
    limit: limit.value,
    ...(state !== undefined ? { state: state as ExecutionState } : {}),
    ...(query.nextToken !== undefined ? { nextToken: query.nextToken } : {}),
  });
  if (!page.ok) return err(badToken());
  return ok({
    devices: page.value.items.map(executionView),
    ...(page.value.nextToken ? { nextToken: page.value.nextToken } : {}),
  });
}

/** `GET /devices/{thing}`: installed update, compatibility, current and past executions (newest first). */
/** Executions read for a device's current state: a device runs one deployment at a time, so its newest few hold it. */
const RECENT_EXECUTIONS = 10;

export async function getDevice(
  deps: Pick<DeploymentsDeps, 'fleet' | 'executions'>,
  thingName: string,
  query: Query,
): Promise<Result<Record<string, unknown>, Problem>> {
  if (!thingNameSchema.safeParse(thingName).success) {
    return err(
      problem('BAD_REQUEST', 'Invalid thing name.', [{ path: '/thingName', message: 'is not a thing name' }]),
    );
  }
  const limit = pageLimit(query);
  if (!limit.ok) return limit;
  // The device's current state comes from its newest executions, whichever page is asked for.
  const firstPageServes = query.nextToken === undefined && limit.value >= RECENT_EXECUTIONS;
  const [fleet, history, recent] = await Promise.all([
    deps.fleet.get(thingName),
    deps.executions.listForThing(thingName, {
      limit: limit.value,
      ...(query.nextToken !== undefined ? { nextToken: query.nextToken } : {}),
    }),
    firstPageServes ? undefined : deps.executions.listForThing(thingName, { limit: RECENT_EXECUTIONS }),
  ]);
  if (!history.ok) return err(badToken());
  const newest = recent?.ok ? recent.value.items : history.value.items;
  if (!fleet && history.value.items.length === 0 && query.nextToken === undefined) {
    return err(problem('DEVICE_NOT_FOUND', `No deployment or report is known for ${thingName}.`));
  }
  return ok({
    ...deviceView(thingName, fleet, history.value.items, newest),
    ...(history.value.nextToken ? { nextToken: history.value.nextToken } : {}),
  });
}
