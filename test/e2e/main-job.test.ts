import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `npm start -- ...` as a user would, every port free-picked so runs never collide. */
async function npmStart(args: readonly string[], timeoutMs: number): Promise<Run> {
  const dataDir = await mkdtemp(join(tmpdir(), 'shadow-ota-main-'));
  dirs.push(dataDir);
  const ports = ['api', 's3', 'dynamodb', 'mqtt', 'mqtts', 'iot-data', 'iot'].flatMap((p) => [
    `--${p}-port`,
    '0',
  ]);
  const child = spawn('npm', ['start', '--silent', '--', '--data-dir', dataDir, ...ports, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CI: 'true' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

describe('npm start --exit-when-done (the main job)', () => {
  it('rolls the sample update out to a simulated fleet and ends with one JSON line', async () => {
    // Given a fresh data directory, when the main job runs with a small fleet...
    const run = await npmStart(['--devices', '12', '--exit-when-done'], 240_000);
    const lines = run.stdout.trim().split('\n');
    const summary = JSON.parse(lines.at(-1) ?? '') as {
      deploymentId: string;
      status: string;
      devices: number;
      counts: Record<string, number>;
      durationSeconds: number;
    };
    // ...then every device succeeded, the last line says so, and the exit code is 0.
    expect(run.code, run.stderr).toBe(0);
    expect(summary.status).toBe('completed');
    expect(summary.devices).toBe(12);
    expect(summary.counts.succeeded).toBe(12);
    expect(summary.deploymentId).toMatch(/^[0-9a-f-]{36}$/);
    expect(summary.durationSeconds).toBeGreaterThan(0);
    // The progress was shown while it ran, and it imported the parent with its child.
    expect(run.stdout).toContain(
      'importing update Contoso/Demo-Gateway/1.1 with its child Contoso/Demo-Camera/1.1',
    );
    expect(run.stdout).toMatch(/12\/12 finished \| completed \| succeeded 12/);
    // Nothing the devices sent was refused (the agent clears keys with null, which reports carry).
    expect(run.stdout + run.stderr).not.toMatch(/refused|ECONNREFUSED/);
  }, 300_000);

  it('refuses a bad --devices with a usage error (exit 2)', async () => {
    const run = await npmStart(['--devices', '0'], 60_000);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('1 to 10000 devices');
  });
});
