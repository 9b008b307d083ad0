/**
 * Writing a large download around the page cache (O_DIRECT), where the filesystem allows it.
 *
 * Why: a buffered write copies every byte into page-cache pages the kernel must first find and
 * map; for a download of hundreds of MB that is most of the cost (the bench measured about 2 s of
 * kernel time per GiB on its VM, against 0.2 s direct), and it fills the device's memory with a
 * file that is read once more at most. A direct write hands the (aligned) batch buffer to the disk.
 * Direct writes need the buffer, the position and the length aligned: the batches come from
 * `alignedBuffers`, and any write that is not aligned (the first bytes of a resume, the last of the
 * file) goes through the ordinary handle. A filesystem that refuses O_DIRECT (tmpfs, some FUSE)
 * gets ordinary writes throughout.
 */
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

/** Alignment of direct writes: the largest logical block size in use (4Kn disks). */
export const directAlignment = 4096;

/** The open partial file: the ordinary handle, and a direct one while direct writes work. */
export interface WritableFile {
  readonly handle: FileHandle;
  direct: FileHandle | undefined;
}

const wasmPage = 64 * 1024;

/** The one part of the WebAssembly API used here (this project's TypeScript libs do not declare it). */
interface WasmMemoryConstructor {
  new (descriptor: {
    readonly initial: number;
    readonly maximum?: number;
    readonly shared?: boolean;
  }): { readonly buffer: ArrayBuffer | SharedArrayBuffer };
}
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryConstructor } }).WebAssembly
  .Memory;

/** Page-aligned batch buffers, and the memory behind them when it can be shared with another thread. */
export interface AlignedBuffers {
  readonly buffers: Buffer[];
  /** Set when `shared` was asked for: the buffers are views of it, `bytes` apart. */
  readonly shared: SharedArrayBuffer | undefined;
}

/**
 * `count` buffers of `bytes` each (a multiple of 64 KiB), page-aligned as O_DIRECT needs: they are
 * views of a WebAssembly memory, whose start the engine aligns to a page; a Buffer's start is
 * wherever malloc put it. `shared`: a shared memory, so that a worker thread can read them.
 */
export function alignedBuffers(count: number, bytes: number, shared = false): AlignedBuffers {
  if (bytes % wasmPage !== 0) throw new Error(`buffer size must be a multiple of ${wasmPage}`);
  const pages = (count * bytes) / wasmPage;
  const memory = new WasmMemory(shared ? { initial: pages, maximum: pages, shared } : { initial: pages });
  const buffers = Array.from({ length: count }, (_, i) => Buffer.from(memory.buffer, i * bytes, bytes));
  return { buffers, shared: shared ? (memory.buffer as SharedArrayBuffer) : undefined };
}

/** Opens a second, direct handle on `path`; undefined where the filesystem does not take O_DIRECT. */
export async function openDirect(path: string): Promise<FileHandle | undefined> {
  const flag = constants.O_DIRECT;
  if (flag === undefined) return undefined;
  return open(path, constants.O_WRONLY | flag).catch(() => undefined);
}

/**
 * Writes `bytes` of `buffer` at `position`: direct when everything is aligned, else (or when a
 * direct write is refused) through the ordinary handle; a refused direct write turns direct writes
 * off for this file. Rejects on a failed or short write.
 */
export async function writeAt(
  file: WritableFile,
  buffer: Buffer,
  bytes: number,
  position: number,
): Promise<void> {
  const aligned = position % directAlignment === 0 && bytes % directAlignment === 0;
  if (file.direct && aligned) {
    try {
      const { bytesWritten } = await file.direct.write(buffer, 0, bytes, position);
      return checkWritten(bytesWritten, bytes);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      await closeDirect(file);
    }
  }
  const { bytesWritten } = await file.handle.write(buffer, 0, bytes, position);
  checkWritten(bytesWritten, bytes);
}

function checkWritten(written: number, bytes: number): void {
  if (written !== bytes) throw new Error(`short write (${written} of ${bytes} bytes)`);
}

export async function closeDirect(file: WritableFile): Promise<void> {
  const direct = file.direct;
  file.direct = undefined;
  await direct?.close();
}
