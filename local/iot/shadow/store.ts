/**
 * In-memory shadows with write-behind persistence. The hot path only touches maps and marks the
 * shadow dirty; a timer appends the dirty shadows' latest state to `shadows.jsonl` (one line per
 * shadow per flush, however often it changed), and `close()` flushes and compacts the log into one
 * line per shadow. Loading replays the log, the last line of a shadow winning.
 */
import { createReadStream } from 'node:fs';
import { appendFile, mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ShadowSlot, ShadowTombstone, StoredShadow } from './document.ts';

/** The classic shadow's key among a thing's shadows (named shadows cannot be empty). */
export const classicShadow = '';

interface LogLine {
  readonly t: string;
  readonly n: string;
  readonly s?: StoredShadow;
  readonly d?: ShadowTombstone;
}

export interface ShadowStoreOptions {
  /** Directory of `shadows.jsonl`; nothing is persisted when absent. */
  readonly dataDir?: string;
  readonly flushIntervalMs?: number;
}

export class ShadowStore {
  readonly #things = new Map<string, Map<string, ShadowSlot>>();
  readonly #dirty = new Map<string, Map<string, true>>();
  readonly #file: string | undefined;
  readonly #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  private constructor(options: ShadowStoreOptions) {
    this.#file = options.dataDir ? join(options.dataDir, 'shadows.jsonl') : undefined;
    if (this.#file) {
      this.#timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 1000);
      this.#timer.unref();
    }
  }

  static async open(options: ShadowStoreOptions): Promise<ShadowStore> {
    const store = new ShadowStore(options);
    if (options.dataDir) {
      await mkdir(options.dataDir, { recursive: true });
      await store.#load();
      await store.#serially(() => store.#compact());
    }
    return store;
  }

  slot(thingName: string, shadowName: string): ShadowSlot {
    return this.#things.get(thingName)?.get(shadowName) ?? {};
  }

  put(thingName: string, shadowName: string, shadow: StoredShadow): void {
    this.#set(thingName, shadowName, { shadow });
  }

  remove(thingName: string, shadowName: string, tombstone: ShadowTombstone): void {
    this.#set(thingName, shadowName, { tombstone });
  }

  /** Names of the thing's existing named shadows, sorted. */
  namedShadows(thingName: string): string[] {
    const shadows = this.#things.get(thingName);
    if (!shadows) return [];
    const names: string[] = [];
    for (const [name, slot] of shadows) if (name !== classicShadow && slot.shadow) names.push(name);
    return names.sort();
  }

  /** Writes every shadow changed since the last flush; waits for a flush already under way. */
  flush(): Promise<void> {
    return this.#serially(() => this.#writeDirty());
  }

  /** File writes run one at a time, so a compaction never races an append. */
  #serially(work: () => Promise<void>): Promise<void> {
    this.#flushing = this.#flushing.then(work);
    return this.#flushing;
  }

  /** Stops the timer, flushes and compacts the log. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#serially(async () => {
      await this.#writeDirty();
      await this.#compact();
    });
  }

  #set(thingName: string, shadowName: string, slot: ShadowSlot): void {
    let shadows = this.#things.get(thingName);
    if (!shadows) {
      shadows = new Map();
      this.#things.set(thingName, shadows);
    }
    shadows.set(shadowName, slot);
    if (!this.#file) return;
    let dirty = this.#dirty.get(thingName);
    if (!dirty) {
      dirty = new Map();
      this.#dirty.set(thingName, dirty);
    }
    dirty.set(shadowName, true);
  }

  async #writeDirty(): Promise<void> {
    if (!this.#file || this.#dirty.size === 0) return;
    const lines: string[] = [];
    for (const [thingName, names] of this.#dirty) {
      for (const shadowName of names.keys()) lines.push(this.#line(thingName, shadowName));
    }
    this.#dirty.clear();
    await appendFile(this.#file, lines.join(''));
  }

  #line(thingName: string, shadowName: string): string {
    const slot = this.slot(thingName, shadowName);
    const line: LogLine = {
      t: thingName,
      n: shadowName,
      ...(slot.shadow ? { s: slot.shadow } : {}),
      ...(slot.tombstone ? { d: slot.tombstone } : {}),
    };
    return `${JSON.stringify(line)}\n`;
  }

  async #load(): Promise<void> {
    if (!this.#file) return;
    const input = createReadStream(this.#file, 'utf8');
    const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
    try {
      for await (const text of lines) {
        if (text.trim() === '') continue;
        const line = JSON.parse(text) as LogLine;
        const slot: ShadowSlot = line.s ? { shadow: line.s } : line.d ? { tombstone: line.d } : {};
        let shadows = this.#things.get(line.t);
        if (!shadows) {
          shadows = new Map();
          this.#things.set(line.t, shadows);
        }
        shadows.set(line.n, slot);
      }
    } catch (error) {
      // A data directory without a log yet is a fresh start.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }

  /** Rewrites the log as one line per shadow, atomically (write then rename). */
  async #compact(): Promise<void> {
    if (!this.#file) return;
    const lines: string[] = [];
    for (const [thingName, shadows] of this.#things) {
      for (const shadowName of shadows.keys()) lines.push(this.#line(thingName, shadowName));
    }
    const temporary = `${this.#file}.tmp`;
    await writeFile(temporary, lines.join(''));
    await rename(temporary, this.#file);
  }
}
