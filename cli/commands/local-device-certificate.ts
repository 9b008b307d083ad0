import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type CertificateAuthority, issueClientCertificate } from '../../local/iot/certs.ts';
import type { CliIo } from '../io.ts';

export interface DeviceCertificateOptions {
  /** The local cloud's data directory (`--data-dir` of `npm start`). */
  readonly dataDir: string;
  /** Where the certificate and key go. */
  readonly out: string;
}

/** The mTLS endpoint the cloud published, when it has run with this data directory. */
async function mqttsEndpoint(dataDir: string): Promise<string> {
  try {
    const endpoints = JSON.parse(await readFile(join(dataDir, 'endpoints.json'), 'utf8')) as {
      mqtts?: unknown;
    };
    if (typeof endpoints.mqtts === 'string') return endpoints.mqtts;
  } catch {
    // Not running now: the default port.
  }
  return 'mqtts://localhost:8883';
}

/** The local CA a persistent cloud keeps in its data directory; undefined when there is none. */
async function localCa(dataDir: string): Promise<CertificateAuthority | undefined> {
  const dir = join(dataDir, 'iot', 'tls');
  try {
    const [cert, key] = await Promise.all([
      readFile(join(dir, 'ca.pem'), 'utf8'),
      readFile(join(dir, 'ca.key'), 'utf8'),
    ]);
    return { cert, key };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * `shadow-ota local device-certificate <thing>`: a client certificate for the local cloud's mutual
 * TLS listener, signed by the CA the cloud keeps in its data directory (its CN is the thing name,
 * which the listener requires as the client id), so the agent can be tried over mutual TLS as it
 * runs against AWS IoT Core. Returns false when there is no local CA to sign with.
 */
export async function issueLocalDeviceCertificate(
  thingName: string,
  options: DeviceCertificateOptions,
  io: CliIo,
): Promise<boolean> {
  const dataDir = resolve(options.dataDir);
  const ca = await localCa(dataDir);
  if (!ca) {
    io.err(
      `no local CA in ${join(dataDir, 'iot', 'tls')}: start the local cloud once with this data directory (an --ephemeral cloud keeps none)\n`,
    );
    return false;
  }
  const issued = await issueClientCertificate(ca, thingName);
  const out = resolve(options.out);
  await mkdir(out, { recursive: true });
  const certificateFile = join(out, `${thingName}.crt`);
  const privateKeyFile = join(out, `${thingName}.key`);
  await writeFile(certificateFile, issued.cert);
  await writeFile(privateKeyFile, issued.key, { mode: 0o600 });
  const agentConfig = {
    endpoint: await mqttsEndpoint(dataDir),
    certificateFile,
    privateKeyFile,
    caFile: join(dataDir, 'iot', 'tls', 'ca.pem'),
  };
  io.out(`certificate ${issued.certificateId} for ${thingName}\n`);
  io.out(`in the agent's configuration:\n${JSON.stringify(agentConfig, null, 2)}\n`);
  return true;
}
