/**
 * DynamoDB's write metering, worked out from a change's old and new images (a stream record), for
 * the writes whose answer carries no consumed capacity: DynamoDB Local reports none for a PartiQL
 * `BatchExecuteStatement`, which AWS bills statement by statement as the same single-item write.
 * The rules are AWS's, as documented:
 * - item size: each attribute's name (UTF-8 bytes) plus its value: a string its UTF-8 bytes, a
 *   number about one byte per two significant digits plus one, binary its bytes, a boolean or
 *   null one byte, a list or map 3 bytes plus one byte and the size of each element (a map's
 *   element also its name), a set the sum of its elements;
 * - the table: one unit per started KB of the larger of the item before and after;
 * - each global secondary index: an item entering it (its key attributes all defined) is one write
 *   and one leaving it is one; one that stays costs one write when its projection changes, two when
 *   its index key changes (the old entry deleted, the new put); an entry's size is the index and
 *   table keys plus the projected attributes.
 * bench/write-units.test checks these against what DynamoDB Local reports for single writes.
 */
import type { TableDefinition } from '../lambdas/definitions/tables.ts';

/** A stream image: attribute values in DynamoDB's JSON. */
export type Image = Readonly<Record<string, AttributeValueJson>>;

export type AttributeValueJson = Readonly<{
  S?: string;
  N?: string;
  B?: string | Uint8Array;
  BOOL?: boolean;
  NULL?: boolean;
  L?: readonly AttributeValueJson[];
  M?: Image;
  SS?: readonly string[];
  NS?: readonly string[];
  BS?: readonly (string | Uint8Array)[];
}>;

const UNIT_BYTES = 1024;

const utf8 = (text: string): number => Buffer.byteLength(text, 'utf8');

function binaryBytes(value: string | Uint8Array): number {
  return typeof value === 'string' ? Buffer.from(value, 'base64').length : value.length;
}

/** A number's size: its significant digits, two to a byte, plus one. */
function numberBytes(text: string): number {
  const digits = text
    .replace(/^[-+]/, '')
    .replace(/[eE].*$/, '')
    .replace('.', '');
  const significant = digits.replace(/^0+/, '').replace(/0+$/, '');
  return Math.ceil(Math.max(1, significant.length) / 2) + 1;
}

export function valueBytes(value: AttributeValueJson): number {
  if (value.S !== undefined) return utf8(value.S);
  if (value.N !== undefined) return numberBytes(value.N);
  if (value.B !== undefined) return binaryBytes(value.B);
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.L !== undefined) return 3 + value.L.reduce((sum, element) => sum + 1 + valueBytes(element), 0);
  if (value.M !== undefined)
    return (
      3 +
      Object.entries(value.M).reduce((sum, [name, element]) => sum + 1 + utf8(name) + valueBytes(element), 0)
    );
  if (value.SS !== undefined) return value.SS.reduce((sum, element) => sum + utf8(element), 0);
  if (value.NS !== undefined) return value.NS.reduce((sum, element) => sum + numberBytes(element), 0);
  if (value.BS !== undefined) return value.BS.reduce((sum, element) => sum + binaryBytes(element), 0);
  return 0;
}

export function itemBytes(item: Image): number {
  return Object.entries(item).reduce((sum, [name, value]) => sum + utf8(name) + valueBytes(value), 0);
}

const unitsOf = (bytes: number): number => Math.max(1, Math.ceil(bytes / UNIT_BYTES));

type IndexDefinition = TableDefinition['globalIndexes'][number];

function indexKeysOf(table: TableDefinition, index: IndexDefinition): string[] {
  return [
    index.partitionKey.name,
    ...(index.sortKey ? [index.sortKey.name] : []),
    table.partitionKey.name,
    ...(table.sortKey ? [table.sortKey.name] : []),
  ];
}

/** The item's entry in the index (undefined when its index key is not all there). */
function indexEntry(
  table: TableDefinition,
  index: IndexDefinition,
  item: Image | undefined,
): Image | undefined {
  if (!item) return undefined;
  const indexKey = [index.partitionKey.name, ...(index.sortKey ? [index.sortKey.name] : [])];
  if (indexKey.some((name) => item[name] === undefined)) return undefined;
  const projection = index.projection ?? 'ALL';
  if (projection === 'ALL') return item;
  const names = [...indexKeysOf(table, index), ...(projection === 'KEYS_ONLY' ? [] : projection)];
  const entry: Record<string, AttributeValueJson> = {};
  for (const name of names) {
    const value = item[name];
    if (value !== undefined) entry[name] = value;
  }
  return entry;
}

const sameValue = (a: AttributeValueJson | undefined, b: AttributeValueJson | undefined): boolean =>
  JSON.stringify(a) === JSON.stringify(b);

function indexWriteUnits(
  table: TableDefinition,
  index: IndexDefinition,
  before: Image | undefined,
  after: Image | undefined,
): number {
  const was = indexEntry(table, index, before);
  const is = indexEntry(table, index, after);
  if (!was && !is) return 0;
  if (!was && is) return unitsOf(itemBytes(is));
  if (was && !is) return unitsOf(itemBytes(was));
  if (!was || !is) return 0;
  const keyNames = [index.partitionKey.name, ...(index.sortKey ? [index.sortKey.name] : [])];
  if (keyNames.some((name) => !sameValue(was[name], is[name])))
    return unitsOf(itemBytes(was)) + unitsOf(itemBytes(is));
  return JSON.stringify(was) === JSON.stringify(is) ? 0 : unitsOf(Math.max(itemBytes(was), itemBytes(is)));
}

/** The write units of one item's change, table and indexes, as DynamoDB bills the write that made it. */
export function writeUnitsOfChange(
  table: TableDefinition,
  before: Image | undefined,
  after: Image | undefined,
): number {
  const tableUnits = unitsOf(Math.max(before ? itemBytes(before) : 0, after ? itemBytes(after) : 0));
  return table.globalIndexes.reduce(
    (sum, index) => sum + indexWriteUnits(table, index, before, after),
    tableUnits,
  );
}
