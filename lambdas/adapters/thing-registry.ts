import {
  DescribeThingCommand,
  type IoTClient,
  ListThingsInThingGroupCommand,
  ResourceNotFoundException,
} from '@aws-sdk/client-iot';

export interface ThingPage {
  readonly thingNames: readonly string[];
  /** Pass back for the next page; absent on the last. */
  readonly nextToken?: string;
}

export interface ThingRegistry {
  /**
   * One page of a thing group's members, its child groups' members included (as a deployment
   * to a group means the whole tree). An unknown group is an empty page with `groupFound: false`.
   */
  listThingsInGroup(
    groupName: string,
    nextToken?: string,
  ): Promise<ThingPage & { readonly groupFound: boolean }>;
  thingExists(thingName: string): Promise<boolean>;
}

export interface ThingRegistryOptions {
  readonly iot: Pick<IoTClient, 'send'>;
  /** ListThingsInThingGroup's page size (AWS allows 1-250). @default 250 */
  readonly pageSize?: number;
}

export function makeThingRegistry({ iot, pageSize = 250 }: ThingRegistryOptions): ThingRegistry {
  return {
    async listThingsInGroup(groupName, nextToken) {
      try {
        const out = await iot.send(
          new ListThingsInThingGroupCommand({
            thingGroupName: groupName,
            recursive: true,
            maxResults: pageSize,
            ...(nextToken ? { nextToken } : {}),
          }),
        );
        return {
          groupFound: true,
          thingNames: out.things ?? [],
          ...(out.nextToken ? { nextToken: out.nextToken } : {}),
        };
      } catch (error) {
        if (error instanceof ResourceNotFoundException) return { groupFound: false, thingNames: [] };
        throw error;
      }
    },
    async thingExists(thingName) {
      try {
        await iot.send(new DescribeThingCommand({ thingName }));
        return true;
      } catch (error) {
        if (error instanceof ResourceNotFoundException) return false;
        throw error;
      }
    },
  };
}
