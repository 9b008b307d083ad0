import {
  AddThingToThingGroupCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  DeleteThingCommand,
  DescribeEndpointCommand,
  DescribeThingCommand,
  DescribeThingGroupCommand,
  type IoTClient,
  ListThingGroupsForThingCommand,
  ListThingsCommand,
  ListThingsInThingGroupCommand,
  paginateListThingsInThingGroup,
  RemoveThingFromThingGroupCommand,
  ResourceAlreadyExistsException,
  ResourceNotFoundException,
  UpdateThingCommand,
  VersionConflictException,
} from '@aws-sdk/client-iot';
import {
  GetThingShadowCommand,
  ResourceNotFoundException as ShadowNotFound,
} from '@aws-sdk/client-iot-data-plane';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { dataPlaneClient, registryClient } from './support.ts';

let iot: LocalIotCore;
let client: IoTClient;

beforeAll(async () => {
  iot = await startLocalIotCore({ accountId: '111122223333', region: 'eu-west-1' });
  client = registryClient(iot.endpoints.iot);
});

afterAll(async () => {
  client.destroy();
  await iot.stop();
});

describe('things', () => {
  it('creates, describes, updates attributes and deletes a thing', async () => {
    const created = await client.send(
      new CreateThingCommand({
        thingName: 'dev-1',
        attributePayload: { attributes: { model: 'm1', hw: 'rev2' } },
      }),
    );
    expect(created).toMatchObject({
      thingName: 'dev-1',
      thingArn: 'arn:aws:iot:eu-west-1:111122223333:thing/dev-1',
    });
    expect(created.thingId).toMatch(/^[0-9a-f-]{36}$/);

    await client.send(
      new UpdateThingCommand({
        thingName: 'dev-1',
        attributePayload: { attributes: { hw: '', fw: '1.0' }, merge: true },
      }),
    );
    const described = await client.send(new DescribeThingCommand({ thingName: 'dev-1' }));
    expect(described).toMatchObject({
      thingName: 'dev-1',
      defaultClientId: 'dev-1',
      attributes: { model: 'm1', fw: '1.0' },
      version: 2,
    });

    await expect(
      client.send(new DeleteThingCommand({ thingName: 'dev-1', expectedVersion: 1 })),
    ).rejects.toBeInstanceOf(VersionConflictException);
    await client.send(new DeleteThingCommand({ thingName: 'dev-1', expectedVersion: 2 }));
    await expect(client.send(new DescribeThingCommand({ thingName: 'dev-1' }))).rejects.toBeInstanceOf(
      ResourceNotFoundException,
    );
  });

  it('answers an identical CreateThing with the same thing and a different one with a conflict', async () => {
    const first = await client.send(
      new CreateThingCommand({ thingName: 'dup', attributePayload: { attributes: { a: '1' } } }),
    );
    const again = await client.send(
      new CreateThingCommand({ thingName: 'dup', attributePayload: { attributes: { a: '1' } } }),
    );
    expect(again.thingId).toBe(first.thingId);
    await expect(
      client.send(new CreateThingCommand({ thingName: 'dup', attributePayload: { attributes: { a: '2' } } })),
    ).rejects.toBeInstanceOf(ResourceAlreadyExistsException);
  });

  it('lists things by attribute, paginated', async () => {
    for (const name of ['list-a', 'list-b', 'list-c']) {
      await client.send(
        new CreateThingCommand({ thingName: name, attributePayload: { attributes: { fleet: 'blue' } } }),
      );
    }
    const page = await client.send(
      new ListThingsCommand({ attributeName: 'fleet', attributeValue: 'blue', maxResults: 2 }),
    );
    expect(page.things?.map((t) => t.thingName)).toEqual(['list-a', 'list-b']);
    const rest = await client.send(
      new ListThingsCommand({
        attributeName: 'fleet',
        attributeValue: 'blue',
        maxResults: 2,
        nextToken: page.nextToken,
      }),
    );
    expect(rest.things?.map((t) => t.thingName)).toEqual(['list-c']);
    expect(rest.nextToken).toBeUndefined();
  });

  it('describing an unknown thing is ResourceNotFoundException, and so is its shadow', async () => {
    await expect(client.send(new DescribeThingCommand({ thingName: 'ghost' }))).rejects.toBeInstanceOf(
      ResourceNotFoundException,
    );
    const data = dataPlaneClient(iot.endpoints.iotData);
    await expect(data.send(new GetThingShadowCommand({ thingName: 'ghost' }))).rejects.toBeInstanceOf(
      ShadowNotFound,
    );
    data.destroy();
  });
});

describe('thing groups', () => {
  it('creates groups, adds and removes members, and pages members (recursively)', async () => {
    await client.send(
      new CreateThingGroupCommand({
        thingGroupName: 'fleet',
        thingGroupProperties: { thingGroupDescription: 'all' },
      }),
    );
    await client.send(new CreateThingGroupCommand({ thingGroupName: 'canary', parentGroupName: 'fleet' }));
    const names = Array.from({ length: 5 }, (_, i) => `member-${i}`);
    for (const thingName of names) {
      await client.send(new CreateThingCommand({ thingName }));
      await client.send(
        new AddThingToThingGroupCommand({
          thingName,
          thingGroupName: thingName === 'member-4' ? 'canary' : 'fleet',
        }),
      );
    }
    const described = await client.send(new DescribeThingGroupCommand({ thingGroupName: 'canary' }));
    expect(described.thingGroupMetadata?.parentGroupName).toBe('fleet');

    const direct = await client.send(
      new ListThingsInThingGroupCommand({ thingGroupName: 'fleet', maxResults: 3 }),
    );
    expect(direct.things).toEqual(['member-0', 'member-1', 'member-2']);
    const all: string[] = [];
    for await (const page of paginateListThingsInThingGroup(
      { client, pageSize: 2 },
      { thingGroupName: 'fleet', recursive: true },
    )) {
      all.push(...(page.things ?? []));
    }
    expect(all).toEqual(names);

    await client.send(
      new RemoveThingFromThingGroupCommand({ thingName: 'member-0', thingGroupName: 'fleet' }),
    );
    const after = await client.send(new ListThingsInThingGroupCommand({ thingGroupName: 'fleet' }));
    expect(after.things).toEqual(['member-1', 'member-2', 'member-3']);
    const groups = await client.send(new ListThingGroupsForThingCommand({ thingName: 'member-4' }));
    expect(groups.thingGroups).toEqual([
      { groupName: 'canary', groupArn: 'arn:aws:iot:eu-west-1:111122223333:thinggroup/canary' },
    ]);
  });

  it('refuses unknown groups and things', async () => {
    await expect(
      client.send(new ListThingsInThingGroupCommand({ thingGroupName: 'nope' })),
    ).rejects.toBeInstanceOf(ResourceNotFoundException);
    await expect(
      client.send(new AddThingToThingGroupCommand({ thingName: 'ghost', thingGroupName: 'fleet' })),
    ).rejects.toBeInstanceOf(ResourceNotFoundException);
  });
});

describe('DescribeEndpoint', () => {
  it('answers the data endpoint address', async () => {
    const { endpointAddress } = await client.send(
      new DescribeEndpointCommand({ endpointType: 'iot:Data-ATS' }),
    );
    expect(`http://${endpointAddress}`).toBe(iot.endpoints.iotData);
  });
});
