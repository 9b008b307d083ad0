import { readFile } from 'node:fs/promises';

/** A text file's non-empty lines, trimmed; none when the file does not exist (yet). */
export async function readLines(path: string): Promise<string[]> {
  try {
    return (await readFile(path, 'utf8'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  } catch {
    return [];
  }
}
