/**
 * The MQTT 3.1.1 message broker (aedes, in process) with AWS IoT's connection rules: plain TCP where
 * the client id is the thing name, TLS with client certificates whose CN must equal the client id,
 * the device policy on every publish and subscribe (a refused one closes the connection, as AWS
 * does for MQTT 3.1.1), a 128 KB payload limit and the presence lifecycle events.
 */
import { randomUUID } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { Aedes, type Client } from 'aedes';
import { certificateIdOfDer, type TlsMaterial } from './certs.ts';
import { isTopicAllowedForThing } from './topics.ts';

export const maxMqttPayloadBytes = 128 * 1024;

export interface BrokerOptions {
  readonly host: string;
  readonly mqttPort: number;
  readonly mqttsPort: number;
  readonly tls: TlsMaterial;
  /** Client ids with full access (a backend or test observer); devices get the device policy. */
  readonly adminClientIds: ReadonlySet<string>;
  /** Called for every message the broker carries, from a client or published internally. */
  readonly onMessage: (topic: string, payload: Buffer, clientId: string | undefined) => void;
  /** Epoch milliseconds. */
  readonly now: () => number;
}

export interface RunningBroker {
  readonly mqttPort: number;
  readonly mqttsPort: number;
  publish(topic: string, payload: string | Buffer, qos: 0 | 1): void;
  connectedClients(): number;
  close(): Promise<void>;
}

type DisconnectReason =
  | 'CLIENT_INITIATED_DISCONNECT'
  | 'CONNECTION_LOST'
  | 'DUPLICATE_CLIENTID'
  | 'MQTT_KEEP_ALIVE_TIMEOUT'
  | 'AUTHORIZATION_ERROR'
  | 'SERVER_INITIATED_DISCONNECT';

interface Session {
  readonly sessionIdentifier: string;
  readonly principalIdentifier: string;
  readonly ipAddress?: string;
  reason?: DisconnectReason;
}

/** Errors an aedes hook hands back; `returnCode` 5 is CONNACK "not authorized". */
function notAuthorized(message: string): Error & { returnCode: number } {
  return Object.assign(new Error(message), { returnCode: 5 });
}

function peerCertificate(client: Client): { cn?: string; raw?: Buffer } | undefined {
  const conn = client.conn as unknown as Partial<TLSSocket>;
  if (typeof conn.getPeerCertificate !== 'function') return undefined;
  const cert = conn.getPeerCertificate();
  const cn = cert.subject?.CN;
  return { ...(typeof cn === 'string' ? { cn } : {}), ...(cert.raw ? { raw: cert.raw } : {}) };
}

/** aedes keeps these on its objects without declaring them in its types. */
function clientsOf(aedes: Aedes): Record<string, Client> {
  return (aedes as unknown as { clients: Record<string, Client> }).clients;
}

function sentDisconnect(client: Client): boolean {
  return (client as Client & { _disconnected?: boolean })._disconnected === true;
}

function remoteAddress(client: Client): string | undefined {
  const conn = client.conn as unknown as Partial<net.Socket>;
  return conn.remoteAddress;
}

function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

export async function startBroker(options: BrokerOptions): Promise<RunningBroker> {
  // $SYS heartbeats are noise here; once an hour keeps aedes' timer cheap.
  // A higher concurrency than aedes' 100 keeps its message queue short under load: the queue is an
  // array drained with shift(), which turns quadratic once thousands of messages wait.
  const aedes = await Aedes.createBroker({
    heartbeatInterval: 3_600_000,
    maxClientsIdLength: 128,
    concurrency: 2000,
  });
  const sessions = new WeakMap<Client, Session>();
  const versions = new Map<string, number>();

  const isAdmin = (client: Client | null): boolean =>
    client !== null && options.adminClientIds.has(client.id);

  const refuse = (client: Client, message: string): Error => {
    const session = sessions.get(client);
    if (session) session.reason = 'AUTHORIZATION_ERROR';
    return notAuthorized(message);
  };

  aedes.authenticate = (client, _username, _password, done) => {
    if (!client.id) return done(notAuthorized('A client id is required'), false);
    const cert = peerCertificate(client);
    // On TLS the certificate names the thing; the client id must be that thing (the policy's iot:Connect).
    if (cert && cert.cn !== client.id) {
      return done(notAuthorized(`Certificate ${cert.cn ?? '?'} may not connect as ${client.id}`), false);
    }
    const existing = clientsOf(aedes)[client.id];
    const previous = existing ? sessions.get(existing) : undefined;
    if (previous) previous.reason = 'DUPLICATE_CLIENTID';
    const ipAddress = remoteAddress(client);
    sessions.set(client, {
      sessionIdentifier: randomUUID(),
      // AWS names a certificate principal by its certificate id.
      principalIdentifier: cert?.raw ? certificateIdOfDer(cert.raw) : client.id,
      ...(ipAddress ? { ipAddress } : {}),
    });
    done(null, true);
  };

  aedes.authorizePublish = (client, packet, done) => {
    if (!client || isAdmin(client)) return done(null);
    if (packet.payload.length > maxMqttPayloadBytes) return done(refuse(client, 'Payload exceeds 128 KB'));
    if (!isTopicAllowedForThing(client.id, packet.topic)) {
      return done(refuse(client, `Not authorized to publish to ${packet.topic}`));
    }
    done(null);
  };

  aedes.authorizeSubscribe = (client, subscription, done) => {
    if (isAdmin(client) || isTopicAllowedForThing(client.id, subscription.topic))
      return done(null, subscription);
    done(refuse(client, `Not authorized to subscribe to ${subscription.topic}`), null);
  };

  const publishLifecycle = (client: Client, eventType: 'connected' | 'disconnected'): void => {
    const session = sessions.get(client);
    if (!session) return;
    const versionNumber =
      eventType === 'connected' ? (versions.get(client.id) ?? -1) + 1 : (versions.get(client.id) ?? 0);
    versions.set(client.id, versionNumber);
    const reason =
      session.reason ?? (sentDisconnect(client) ? 'CLIENT_INITIATED_DISCONNECT' : 'CONNECTION_LOST');
    const event = {
      clientId: client.id,
      timestamp: options.now(),
      eventType,
      sessionIdentifier: session.sessionIdentifier,
      principalIdentifier: session.principalIdentifier,
      ...(eventType === 'connected' && session.ipAddress ? { ipAddress: session.ipAddress } : {}),
      ...(eventType === 'disconnected'
        ? { clientInitiatedDisconnect: reason === 'CLIENT_INITIATED_DISCONNECT', disconnectReason: reason }
        : {}),
      versionNumber,
    };
    publish(`$aws/events/presence/${eventType}/${client.id}`, JSON.stringify(event), 1);
  };

  aedes.on('clientReady', (client) => publishLifecycle(client, 'connected'));
  aedes.on('clientDisconnect', (client) => publishLifecycle(client, 'disconnected'));
  aedes.on('keepaliveTimeout', (client) => {
    const session = sessions.get(client);
    if (session) session.reason = 'MQTT_KEEP_ALIVE_TIMEOUT';
  });
  aedes.on('publish', (packet, client) => {
    if (packet.topic.startsWith('$SYS/')) return;
    options.onMessage(packet.topic, packet.payload as Buffer, client?.id);
  });

  function publish(topic: string, payload: string | Buffer, qos: 0 | 1): void {
    aedes.publish(
      {
        cmd: 'publish',
        topic,
        payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
        qos,
        retain: false,
        dup: false,
      },
      () => undefined,
    );
  }

  const plain = net.createServer(aedes.handle);
  const secure = tls.createServer(
    {
      key: options.tls.server.key,
      cert: options.tls.server.cert,
      ca: options.tls.ca.cert,
      requestCert: true,
      rejectUnauthorized: true,
    },
    aedes.handle,
  );
  const mqttPort = await listen(plain, options.host, options.mqttPort);
  const mqttsPort = await listen(secure, options.host, options.mqttsPort);

  return {
    mqttPort,
    mqttsPort,
    publish,
    connectedClients: () => aedes.connectedClients,
    async close() {
      for (const client of Object.values(clientsOf(aedes))) {
        const session = sessions.get(client);
        if (session) session.reason = 'SERVER_INITIATED_DISCONNECT';
      }
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await Promise.all([closeServer(plain), closeServer(secure)]);
    },
  };
}
