/**
 * The registry subset: things with attributes, thing groups (with parents) and membership, with
 * AWS's error types. In memory; with a data directory, written behind to `registry.json` (a change
 * schedules one write; `close()` writes what is pending).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { thingNamePattern as namePattern } from '../../lambdas/domain/deployment/request.ts';
import { err, ok, type Result } from '../../lambdas/domain/result.ts';

export type RegistryErrorType =
  | 'ResourceNotFoundException'
  | 'ResourceAlreadyExistsException'
  | 'InvalidRequestException'
  | 'VersionConflictException';

export interface RegistryError {
  readonly type: RegistryErrorType;
  readonly message: string;
}

const statusOf: Record<RegistryErrorType, number> = {
  ResourceNotFoundException: 404,
  ResourceAlreadyExistsException: 409,
  InvalidRequestException: 400,
  VersionConflictException: 409,
};

export function registryErrorStatus(error: RegistryError): number {
  return statusOf[error.type];
}

export interface Thing {
  readonly thingName: string;
  readonly thingId: string;
  readonly thingArn: string;
  readonly thingTypeName?: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly version: number;
}

export interface ThingGroup {
  readonly thingGroupName: string;
  readonly thingGroupId: string;
  readonly thingGroupArn: string;
  readonly parentGroupName?: string;
  readonly description?: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly version: number;
  /** Epoch seconds. */
  readonly creationDate: number;
  readonly members: readonly string[];
}

export interface AttributePayload {
  readonly attributes?: Record<string, string>;
  readonly merge?: boolean;
}

export interface Page<T> {
  readonly items: T[];
  readonly nextToken?: string;
}

interface RegistryFile {
  readonly things: Thing[];
  readonly groups: ThingGroup[];
}

/** AWS: a thing belongs to at most 10 thing groups. */
const maxGroupsPerThing = 10;

function notFound(message: string): { ok: false; error: RegistryError } {
  return err({ type: 'ResourceNotFoundException', message });
}

function invalid(message: string): { ok: false; error: RegistryError } {
  return err({ type: 'InvalidRequestException', message });
}

function sameAttributes(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

/** Applies an attribute payload: merge keeps others and drops keys set to "", replace starts over. */
function applyAttributes(
  current: Readonly<Record<string, string>>,
  payload: AttributePayload | undefined,
): Record<string, string> {
  if (!payload?.attributes) return { ...current };
  const next: Record<string, string> = payload.merge ? { ...current } : {};
  for (const [key, value] of Object.entries(payload.attributes)) {
    if (value === '') delete next[key];
    else next[key] = value;
  }
  return next;
}

/** Opaque page tokens: the last name of the previous page. */
function encodeToken(name: string): string {
  return Buffer.from(name, 'utf8').toString('base64url');
}

function decodeToken(token: string | undefined): Result<string | undefined, RegistryError> {
  if (token === undefined || token === '') return ok(undefined);
  const name = Buffer.from(token, 'base64url').toString('utf8');
  return namePattern.test(name) ? ok(name) : invalid('Invalid nextToken');
}

function paginate<T>(
  sorted: T[],
  nameOf: (item: T) => string,
  maxResults: number | undefined,
  nextToken: string | undefined,
): Result<Page<T>, RegistryError> {
  const size = maxResults ?? 50;
  if (!Number.isInteger(size) || size < 1 || size > 250)
    return invalid('maxResults must be between 1 and 250');
  const after = decodeToken(nextToken);
  if (!after.ok) return after;
  const start =
    after.value === undefined ? 0 : sorted.findIndex((item) => nameOf(item) > (after.value ?? ''));
  const from = start === -1 ? sorted.length : start;
  const items = sorted.slice(from, from + size);
  const last = items.at(-1);
  return ok({
    items,
    ...(from + size < sorted.length && last ? { nextToken: encodeToken(nameOf(last)) } : {}),
  });
}

export interface RegistryOptions {
  readonly dataDir?: string;
  readonly region: string;
  readonly accountId: string;
  /** Epoch milliseconds. */
  readonly now: () => number;
}

export class Registry {
  readonly #things = new Map<string, Thing>();
  readonly #groups = new Map<string, ThingGroup>();
  readonly #options: RegistryOptions;
  readonly #file: string | undefined;
  #writeTimer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();

  private constructor(options: RegistryOptions) {
    this.#options = options;
    this.#file = options.dataDir ? join(options.dataDir, 'registry.json') : undefined;
  }

  static async open(options: RegistryOptions): Promise<Registry> {
    const registry = new Registry(options);
    if (registry.#file && options.dataDir) {
      await mkdir(options.dataDir, { recursive: true });
      await registry.#load(registry.#file);
    }
    return registry;
  }

  hasThing(thingName: string): boolean {
    return this.#things.has(thingName);
  }

  createThing(
    thingName: string,
    thingTypeName?: string,
    attributePayload?: AttributePayload,
  ): Result<Thing, RegistryError> {
    if (!namePattern.test(thingName)) return invalid(`Invalid thing name: ${thingName}`);
    const attributes = applyAttributes({}, attributePayload);
    const existing = this.#things.get(thingName);
    if (existing) {
      // AWS answers an identical CreateThing with the existing thing; a different one is a conflict.
      if (existing.thingTypeName === thingTypeName && sameAttributes(existing.attributes, attributes))
        return ok(existing);
      return err({
        type: 'ResourceAlreadyExistsException',
        message: `Thing ${thingName} already exists with different tags`,
      });
    }
    const thing: Thing = {
      thingName,
      thingId: randomUUID(),
      thingArn: this.#arn('thing', thingName),
      ...(thingTypeName ? { thingTypeName } : {}),
      attributes,
      version: 1,
    };
    this.#things.set(thingName, thing);
    this.#changed();
    return ok(thing);
  }

  describeThing(thingName: string): Result<Thing, RegistryError> {
    const thing = this.#things.get(thingName);
    return thing ? ok(thing) : notFound(`Thing ${thingName} cannot be found.`);
  }

  updateThing(
    thingName: string,
    change: {
      attributePayload?: AttributePayload;
      thingTypeName?: string;
      removeThingType?: boolean;
      expectedVersion?: number;
    },
  ): Result<Thing, RegistryError> {
    const thing = this.#things.get(thingName);
    if (!thing) return notFound(`Thing ${thingName} cannot be found.`);
    if (change.expectedVersion !== undefined && change.expectedVersion !== thing.version) {
      return err({
        type: 'VersionConflictException',
        message: `The version for thing ${thingName} does not match the expected version.`,
      });
    }
    const { thingTypeName: _dropped, ...rest } = thing;
    const thingTypeName = change.removeThingType ? undefined : (change.thingTypeName ?? thing.thingTypeName);
    const next: Thing = {
      ...rest,
      ...(thingTypeName ? { thingTypeName } : {}),
      attributes: applyAttributes(thing.attributes, change.attributePayload),
      version: thing.version + 1,
    };
    this.#things.set(thingName, next);
    this.#changed();
    return ok(next);
  }

  /** AWS: deleting a thing that does not exist succeeds. */
  deleteThing(thingName: string, expectedVersion?: number): Result<void, RegistryError> {
    const thing = this.#things.get(thingName);
    if (!thing) return ok(undefined);
    if (expectedVersion !== undefined && expectedVersion !== thing.version) {
      return err({
        type: 'VersionConflictException',
        message: `The version for thing ${thingName} does not match the expected version.`,
      });
    }
    this.#things.delete(thingName);
    for (const group of this.#groups.values()) {
      if (group.members.includes(thingName))
        this.#setMembers(
          group,
          group.members.filter((m) => m !== thingName),
        );
    }
    this.#changed();
    return ok(undefined);
  }

  listThings(query: {
    maxResults?: number;
    nextToken?: string;
    attributeName?: string;
    attributeValue?: string;
    thingTypeName?: string;
    usePrefixAttributeValue?: boolean;
  }): Result<Page<Thing>, RegistryError> {
    const matches = [...this.#things.values()].filter((thing) => {
      if (query.thingTypeName !== undefined && thing.thingTypeName !== query.thingTypeName) return false;
      if (query.attributeName === undefined) return true;
      const value = thing.attributes[query.attributeName];
      if (value === undefined) return false;
      if (query.attributeValue === undefined) return true;
      return query.usePrefixAttributeValue
        ? value.startsWith(query.attributeValue)
        : value === query.attributeValue;
    });
    matches.sort((a, b) => (a.thingName < b.thingName ? -1 : 1));
    return paginate(matches, (thing) => thing.thingName, query.maxResults, query.nextToken);
  }

  createThingGroup(
    thingGroupName: string,
    props: { parentGroupName?: string; description?: string; attributePayload?: AttributePayload },
  ): Result<ThingGroup, RegistryError> {
    if (!namePattern.test(thingGroupName)) return invalid(`Invalid thing group name: ${thingGroupName}`);
    const existing = this.#groups.get(thingGroupName);
    if (existing) {
      if (existing.parentGroupName === props.parentGroupName && existing.description === props.description)
        return ok(existing);
      return err({
        type: 'ResourceAlreadyExistsException',
        message: `Thing Group ${thingGroupName} already exists`,
      });
    }
    if (props.parentGroupName !== undefined && !this.#groups.has(props.parentGroupName)) {
      return notFound(`Thing Group ${props.parentGroupName} cannot be found.`);
    }
    const group: ThingGroup = {
      thingGroupName,
      thingGroupId: randomUUID(),
      thingGroupArn: this.#arn('thinggroup', thingGroupName),
      ...(props.parentGroupName ? { parentGroupName: props.parentGroupName } : {}),
      ...(props.description ? { description: props.description } : {}),
      attributes: applyAttributes({}, props.attributePayload),
      version: 1,
      creationDate: Math.floor(this.#options.now() / 1000),
      members: [],
    };
    this.#groups.set(thingGroupName, group);
    this.#changed();
    return ok(group);
  }

  describeThingGroup(thingGroupName: string): Result<ThingGroup, RegistryError> {
    const group = this.#groups.get(thingGroupName);
    return group ? ok(group) : notFound(`Thing Group ${thingGroupName} cannot be found.`);
  }

  /** Deletes a group without child groups; deleting one that does not exist succeeds, as in AWS. */
  deleteThingGroup(thingGroupName: string): Result<void, RegistryError> {
    if (!this.#groups.has(thingGroupName)) return ok(undefined);
    for (const group of this.#groups.values()) {
      if (group.parentGroupName === thingGroupName) {
        return invalid(`Cannot delete thing group ${thingGroupName}: it has child groups`);
      }
    }
    this.#groups.delete(thingGroupName);
    this.#changed();
    return ok(undefined);
  }

  /** Thing and group by name or ARN, as AddThingToThingGroup accepts either. */
  addThingToThingGroup(ref: MembershipRef): Result<void, RegistryError> {
    const resolved = this.#resolveMembership(ref);
    if (!resolved.ok) return resolved;
    const { thing, group } = resolved.value;
    if (group.members.includes(thing.thingName)) return ok(undefined);
    if (this.groupsOfThing(thing.thingName).length >= maxGroupsPerThing) {
      return invalid(`Thing ${thing.thingName} already belongs to ${maxGroupsPerThing} thing groups`);
    }
    this.#setMembers(group, [...group.members, thing.thingName].sort());
    this.#changed();
    return ok(undefined);
  }

  removeThingFromThingGroup(ref: MembershipRef): Result<void, RegistryError> {
    const resolved = this.#resolveMembership(ref);
    if (!resolved.ok) return resolved;
    const { thing, group } = resolved.value;
    this.#setMembers(
      group,
      group.members.filter((member) => member !== thing.thingName),
    );
    this.#changed();
    return ok(undefined);
  }

  /** Members in name order; with `recursive`, the members of every descendant group too. */
  listThingsInThingGroup(
    thingGroupName: string,
    query: { recursive?: boolean; maxResults?: number; nextToken?: string },
  ): Result<Page<string>, RegistryError> {
    const group = this.#groups.get(thingGroupName);
    if (!group) return notFound(`Thing Group ${thingGroupName} cannot be found.`);
    const names = new Set(group.members);
    if (query.recursive) {
      for (const descendant of this.#descendants(thingGroupName))
        for (const member of descendant.members) names.add(member);
    }
    return paginate([...names].sort(), (name) => name, query.maxResults, query.nextToken);
  }

  groupsOfThing(thingName: string): ThingGroup[] {
    return [...this.#groups.values()].filter((group) => group.members.includes(thingName));
  }

  listThingGroups(query: {
    maxResults?: number;
    nextToken?: string;
    parentGroup?: string;
  }): Result<Page<ThingGroup>, RegistryError> {
    const groups = [...this.#groups.values()]
      .filter((group) => query.parentGroup === undefined || group.parentGroupName === query.parentGroup)
      .sort((a, b) => (a.thingGroupName < b.thingGroupName ? -1 : 1));
    return paginate(groups, (group) => group.thingGroupName, query.maxResults, query.nextToken);
  }

  /** Writes pending changes now. */
  async close(): Promise<void> {
    if (this.#writeTimer) {
      clearTimeout(this.#writeTimer);
      this.#writeTimer = undefined;
      await this.#write();
    }
    await this.#writing;
  }

  #descendants(thingGroupName: string): ThingGroup[] {
    const children = [...this.#groups.values()].filter((group) => group.parentGroupName === thingGroupName);
    return children.flatMap((child) => [child, ...this.#descendants(child.thingGroupName)]);
  }

  #resolveMembership(ref: MembershipRef): Result<{ thing: Thing; group: ThingGroup }, RegistryError> {
    const thingName = ref.thingName ?? ref.thingArn?.split('/').at(-1);
    const groupName = ref.thingGroupName ?? ref.thingGroupArn?.split('/').at(-1);
    if (!thingName || !groupName) return invalid('A thing and a thing group must be named');
    const thing = this.#things.get(thingName);
    if (!thing) return notFound(`Thing ${thingName} cannot be found.`);
    const group = this.#groups.get(groupName);
    if (!group) return notFound(`Thing Group ${groupName} cannot be found.`);
    return ok({ thing, group });
  }

  #setMembers(group: ThingGroup, members: string[]): void {
    this.#groups.set(group.thingGroupName, { ...group, members });
  }

  #arn(kind: 'thing' | 'thinggroup', name: string): string {
    return `arn:aws:iot:${this.#options.region}:${this.#options.accountId}:${kind}/${name}`;
  }

  /** Schedules one write for a burst of changes (write-behind). */
  #changed(): void {
    if (!this.#file || this.#writeTimer) return;
    this.#writeTimer = setTimeout(() => {
      this.#writeTimer = undefined;
      void this.#write();
    }, 200);
    this.#writeTimer.unref();
  }

  #write(): Promise<void> {
    const file = this.#file;
    if (!file) return Promise.resolve();
    const content: RegistryFile = { things: [...this.#things.values()], groups: [...this.#groups.values()] };
    this.#writing = this.#writing.then(async () => {
      await writeFile(`${file}.tmp`, JSON.stringify(content));
      await rename(`${file}.tmp`, file);
    });
    return this.#writing;
  }

  async #load(file: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    const content = JSON.parse(text) as RegistryFile;
    for (const thing of content.things) this.#things.set(thing.thingName, thing);
    for (const group of content.groups) this.#groups.set(group.thingGroupName, group);
  }
}

export interface MembershipRef {
  readonly thingName?: string;
  readonly thingArn?: string;
  readonly thingGroupName?: string;
  readonly thingGroupArn?: string;
}
