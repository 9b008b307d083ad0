/**
 * Local X.509 material for the MQTT TLS listener, made with the machine's `openssl`: a CA, a server
 * certificate for localhost / 127.0.0.1, and client certificates whose subject CN is the thing
 * name (the local stand-in for AWS's certificate-to-thing attachment).
 */
import { execFile } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { thingNamePattern } from '../../lambdas/domain/deployment/request.ts';

const run = promisify(execFile);

export interface PemPair {
  readonly cert: string;
  readonly key: string;
}

export interface CertificateAuthority extends PemPair {}

export interface TlsMaterial {
  readonly ca: CertificateAuthority;
  readonly server: PemPair;
}

export interface ClientCertificate extends PemPair {
  /** AWS's certificate id: the SHA-256 of the DER certificate, hex. */
  readonly certificateId: string;
  readonly thingName: string;
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  await run('openssl', [...args], { cwd });
}

/** Runs `fn` in a fresh temporary directory that is removed afterwards. */
async function inScratch<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'local-iot-certs-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** P-256 keys: fast to make, and accepted by Node, MQTT.js and aws-crt alike. */
const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function signedBy(
  ca: CertificateAuthority,
  subject: string,
  extensions: string,
  days: number,
): Promise<PemPair> {
  return inScratch(async (dir) => {
    await writeFile(join(dir, 'ca.pem'), ca.cert);
    await writeFile(join(dir, 'ca.key'), ca.key);
    await writeFile(join(dir, 'ext.cnf'), extensions);
    await openssl(['req', ...newKey, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', subject], dir);
    await openssl(
      [
        'x509',
        '-req',
        '-in',
        'leaf.csr',
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        String(days),
        '-sha256',
        '-extfile',
        'ext.cnf',
        '-out',
        'leaf.pem',
      ],
      dir,
    );
    return {
      cert: await readFile(join(dir, 'leaf.pem'), 'utf8'),
      key: await readFile(join(dir, 'leaf.key'), 'utf8'),
    };
  });
}

export async function createCertificateAuthority(days = 3650): Promise<CertificateAuthority> {
  return inScratch(async (dir) => {
    await openssl(
      [
        'req',
        '-x509',
        ...newKey,
        '-keyout',
        'ca.key',
        '-out',
        'ca.pem',
        '-days',
        String(days),
        '-subj',
        '/CN=shadow-ota local IoT CA',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
    return {
      cert: await readFile(join(dir, 'ca.pem'), 'utf8'),
      key: await readFile(join(dir, 'ca.key'), 'utf8'),
    };
  });
}

export function issueServerCertificate(
  ca: CertificateAuthority,
  hosts: readonly string[] = ['localhost', '127.0.0.1'],
): Promise<PemPair> {
  const san = hosts
    .map((host) => (/^[0-9.]+$/.test(host) || host.includes(':') ? `IP:${host}` : `DNS:${host}`))
    .join(',');
  return signedBy(ca, '/CN=localhost', `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`, 825);
}

/** A device certificate for `thingName`: its CN names the thing the connection acts as. */
export async function issueClientCertificate(
  ca: CertificateAuthority,
  thingName: string,
): Promise<ClientCertificate> {
  if (!thingNamePattern.test(thingName)) throw new Error(`Invalid thing name: ${thingName}`);
  const pair = await signedBy(ca, `/CN=${thingName}`, 'extendedKeyUsage=clientAuth\n', 825);
  return { ...pair, thingName, certificateId: certificateId(pair.cert) };
}

export function certificateId(certPem: string): string {
  return certificateIdOfDer(new X509Certificate(certPem).raw);
}

export function certificateIdOfDer(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

/** The CA and server certificate kept in `dir`; undefined when they are not (all) there. */
export async function loadTlsMaterial(dir: string): Promise<TlsMaterial | undefined> {
  const files = ['ca.pem', 'ca.key', 'server.pem', 'server.key'].map((name) => join(dir, name));
  try {
    const [caCert, caKey, serverCert, serverKey] = await Promise.all(
      files.map((file) => readFile(file, 'utf8')),
    );
    if (caCert && caKey && serverCert && serverKey) {
      return { ca: { cert: caCert, key: caKey }, server: { cert: serverCert, key: serverKey } };
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return undefined;
}

/**
 * The CA and server certificate kept in `dir` (made on first use), so devices provisioned against
 * a data directory keep working across restarts.
 */
export async function loadOrCreateTlsMaterial(dir: string | undefined): Promise<TlsMaterial> {
  const kept = dir ? await loadTlsMaterial(dir) : undefined;
  if (kept) return kept;
  const ca = await createCertificateAuthority();
  const server = await issueServerCertificate(ca);
  if (dir) {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ca.pem'), ca.cert);
    await writeFile(join(dir, 'ca.key'), ca.key, { mode: 0o600 });
    await writeFile(join(dir, 'server.pem'), server.cert);
    await writeFile(join(dir, 'server.key'), server.key, { mode: 0o600 });
  }
  return { ca, server };
}
