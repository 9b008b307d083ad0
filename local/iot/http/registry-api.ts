/**
 * The registry subset of the IoT control-plane API as `@aws-sdk/client-iot` calls it: things,
 * thing groups, membership, and DescribeEndpoint.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Result } from '../../../lambdas/domain/result.ts';
import {
  type AttributePayload,
  type MembershipRef,
  type Registry,
  type RegistryError,
  registryErrorStatus,
  type Thing,
  type ThingGroup,
} from '../registry.ts';
import {
  BodyTooLargeError,
  parseRequestTarget,
  type RequestHandler,
  readBody,
  sendError,
  sendJson,
} from './common.ts';

export interface RegistryApiOptions {
  readonly registry: Registry;
  /** `host:port` answered by DescribeEndpoint for data endpoints (`iot:Data-ATS`, `iot:Data`). */
  readonly dataEndpointAddress: string;
}

type Body = Record<string, unknown>;

function asString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function asAttributePayload(value: unknown): AttributePayload | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { attributes, merge } = value as { attributes?: unknown; merge?: unknown };
  const clean: Record<string, string> = {};
  if (typeof attributes === 'object' && attributes !== null) {
    for (const [key, item] of Object.entries(attributes)) if (typeof item === 'string') clean[key] = item;
  }
  return { attributes: clean, merge: merge === true };
}

function optionalNumber(query: URLSearchParams, name: string): number | undefined {
  const text = query.get(name);
  return text === null ? undefined : Number(text);
}

function describeThing(thing: Thing): Body {
  return {
    defaultClientId: thing.thingName,
    thingName: thing.thingName,
    thingId: thing.thingId,
    thingArn: thing.thingArn,
    ...(thing.thingTypeName ? { thingTypeName: thing.thingTypeName } : {}),
    attributes: thing.attributes,
    version: thing.version,
  };
}

function describeThingGroup(group: ThingGroup): Body {
  return {
    thingGroupName: group.thingGroupName,
    thingGroupId: group.thingGroupId,
    thingGroupArn: group.thingGroupArn,
    version: group.version,
    thingGroupProperties: {
      ...(group.description ? { thingGroupDescription: group.description } : {}),
      attributePayload: { attributes: group.attributes },
    },
    thingGroupMetadata: {
      ...(group.parentGroupName ? { parentGroupName: group.parentGroupName } : {}),
      creationDate: group.creationDate,
    },
  };
}

function groupNameAndArn(group: ThingGroup): Body {
  return { groupName: group.thingGroupName, groupArn: group.thingGroupArn };
}

async function readJson(request: IncomingMessage): Promise<Body | undefined> {
  const raw = await readBody(request, 64 * 1024);
  if (raw.length === 0) return {};
  try {
    const parsed: unknown = JSON.parse(raw.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Body)
      : undefined;
  } catch {
    return undefined;
  }
}

function reply<T>(
  response: ServerResponse,
  result: Result<T, RegistryError>,
  render: (value: T) => Body,
): void {
  if (result.ok) sendJson(response, 200, render(result.value));
  else
    sendError(response, registryErrorStatus(result.error), result.error.type, {
      message: result.error.message,
    });
}

export function makeRegistryHandler({ registry, dataEndpointAddress }: RegistryApiOptions): RequestHandler {
  const routes = async (request: IncomingMessage, response: ServerResponse): Promise<boolean> => {
    const target = parseRequestTarget(request.url);
    if (!target) return false;
    const { segments, query } = target;
    const [first, second, third] = segments;
    const method = request.method;
    const body = method === 'GET' || method === 'DELETE' ? {} : await readJson(request);
    if (!body) {
      sendError(response, 400, 'InvalidRequestException', { message: 'Request body is not a JSON object' });
      return true;
    }

    if (first === 'endpoint' && segments.length === 1 && method === 'GET') {
      sendJson(response, 200, { endpointAddress: dataEndpointAddress });
      return true;
    }
    if (first === 'things' && segments.length === 1 && method === 'GET') {
      const result = registry.listThings({
        maxResults: optionalNumber(query, 'maxResults'),
        nextToken: query.get('nextToken') ?? undefined,
        attributeName: query.get('attributeName') ?? undefined,
        attributeValue: query.get('attributeValue') ?? undefined,
        thingTypeName: query.get('thingTypeName') ?? undefined,
        usePrefixAttributeValue: query.get('usePrefixAttributeValue') === 'true',
      });
      reply(response, result, (page) => ({
        things: page.items.map(({ thingName, thingTypeName, thingArn, attributes, version }) => ({
          thingName,
          ...(thingTypeName ? { thingTypeName } : {}),
          thingArn,
          attributes,
          version,
        })),
        ...(page.nextToken ? { nextToken: page.nextToken } : {}),
      }));
      return true;
    }
    if (first === 'things' && second && segments.length === 2) {
      if (method === 'POST') {
        const thingTypeName = asString(body.thingTypeName);
        const result = registry.createThing(second, thingTypeName, asAttributePayload(body.attributePayload));
        reply(response, result, ({ thingName, thingArn, thingId }) => ({ thingName, thingArn, thingId }));
      } else if (method === 'GET') {
        reply(response, registry.describeThing(second), describeThing);
      } else if (method === 'PATCH') {
        const result = registry.updateThing(second, {
          attributePayload: asAttributePayload(body.attributePayload),
          thingTypeName: asString(body.thingTypeName),
          removeThingType: body.removeThingType === true,
          expectedVersion: typeof body.expectedVersion === 'number' ? body.expectedVersion : undefined,
        });
        reply(response, result, () => ({}));
      } else if (method === 'DELETE') {
        reply(response, registry.deleteThing(second, optionalNumber(query, 'expectedVersion')), () => ({}));
      } else {
        return false;
      }
      return true;
    }
    if (
      first === 'things' &&
      second &&
      third === 'thing-groups' &&
      segments.length === 3 &&
      method === 'GET'
    ) {
      const thing = registry.describeThing(second);
      reply(response, thing, () => ({ thingGroups: registry.groupsOfThing(second).map(groupNameAndArn) }));
      return true;
    }
    if (first === 'thing-groups' && segments.length === 1 && method === 'GET') {
      const result = registry.listThingGroups({
        maxResults: optionalNumber(query, 'maxResults'),
        nextToken: query.get('nextToken') ?? undefined,
        parentGroup: query.get('parentGroup') ?? undefined,
      });
      reply(response, result, (page) => ({
        thingGroups: page.items.map(groupNameAndArn),
        ...(page.nextToken ? { nextToken: page.nextToken } : {}),
      }));
      return true;
    }
    if (first === 'thing-groups' && segments.length === 2 && method === 'PUT') {
      const ref: MembershipRef = {
        thingName: asString(body.thingName),
        thingArn: asString(body.thingArn),
        thingGroupName: asString(body.thingGroupName),
        thingGroupArn: asString(body.thingGroupArn),
      };
      if (second === 'addThingToThingGroup') reply(response, registry.addThingToThingGroup(ref), () => ({}));
      else if (second === 'removeThingFromThingGroup')
        reply(response, registry.removeThingFromThingGroup(ref), () => ({}));
      else return false;
      return true;
    }
    if (first === 'thing-groups' && second && segments.length === 2) {
      if (method === 'POST') {
        const properties = (
          typeof body.thingGroupProperties === 'object' ? body.thingGroupProperties : {}
        ) as Body;
        const result = registry.createThingGroup(second, {
          parentGroupName: asString(body.parentGroupName),
          description: asString(properties.thingGroupDescription),
          attributePayload: asAttributePayload(properties.attributePayload),
        });
        reply(response, result, ({ thingGroupName, thingGroupArn, thingGroupId }) => ({
          thingGroupName,
          thingGroupArn,
          thingGroupId,
        }));
      } else if (method === 'GET') {
        reply(response, registry.describeThingGroup(second), describeThingGroup);
      } else if (method === 'DELETE') {
        reply(response, registry.deleteThingGroup(second), () => ({}));
      } else {
        return false;
      }
      return true;
    }
    if (
      first === 'thing-groups' &&
      second &&
      third === 'things' &&
      segments.length === 3 &&
      method === 'GET'
    ) {
      const result = registry.listThingsInThingGroup(second, {
        recursive: query.get('recursive') === 'true',
        maxResults: optionalNumber(query, 'maxResults'),
        nextToken: query.get('nextToken') ?? undefined,
      });
      reply(response, result, (page) => ({
        things: page.items,
        ...(page.nextToken ? { nextToken: page.nextToken } : {}),
      }));
      return true;
    }
    return false;
  };

  return async (request, response) => {
    try {
      if (await routes(request, response)) return;
    } catch (error) {
      if (!(error instanceof BodyTooLargeError)) throw error;
      sendError(response, 400, 'InvalidRequestException', { message: error.message });
      return;
    }
    sendError(response, 404, 'ResourceNotFoundException', {
      message: `No route for ${request.method} ${request.url}`,
    });
  };
}
