import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { issueClientCertificate, loadTlsMaterial } from '../../local/iot/certs.ts';
import { endpointsFileOf, iotDirOf, tlsDirOf } from '../../local/layout.ts';
import { defaultPorts } from '../../local/options.ts';
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
    const endpoints = JSON.parse(await readFile(endpointsFileOf(dataDir), 'utf8')) as { mqtts?: unknown };
    if (typeof endpoints.mqtts === 'string') return endpoints.mqtts;
  } catch {
    // Not running now: the default port.
  }
  return `mqtts://localhost:${defaultPorts.mqtts}`;
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
  const tlsDir = tlsDirOf(iotDirOf(dataDir));
  const tls = await loadTlsMaterial(tlsDir);
  if (!tls) {
    io.err(
      `no local CA in ${tlsDir}: start the local cloud once with this data directory (an --ephemeral cloud keeps none)\n`,
    );
    return false;
  }
  const issued = await issueClientCertificate(tls.ca, thingName);
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
    caFile: join(tlsDir, 'ca.pem'),
  };
  io.out(`certificate ${issued.certificateId} for ${thingName}\n`);
  io.out(`in the agent's configuration:\n${JSON.stringify(agentConfig, null, 2)}\n`);
  return true;
}
