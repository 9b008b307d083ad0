/**
 * The local cloud's credentials, shared by the local STS (which issues temporary ones) and every
 * endpoint that verifies SigV4 (the S3 gateway, STS itself). Long-term keys stand for the account's
 * administrator and may do anything; temporary keys carry the role, the session policy and the
 * expiry AssumeRole gave them. Everything is kept in memory: a restarted cloud forgets sessions, as
 * short-lived credentials should be.
 */
import { randomBytes } from 'node:crypto';
import type { PolicyDocument } from './policy.ts';

export interface LongTermCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface RoleSession {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
  /** Epoch ms. */
  readonly expiresAt: number;
  readonly roleArn: string;
  readonly roleSessionName: string;
  /** The role's own permissions. */
  readonly rolePolicy: PolicyDocument;
  /** The inline session policy passed to AssumeRole; absent means the role's permissions alone. */
  readonly sessionPolicy?: PolicyDocument;
}

export type Principal =
  | { readonly kind: 'account'; readonly accessKeyId: string; readonly secretAccessKey: string }
  | ({ readonly kind: 'role-session' } & RoleSession);

export interface CredentialStore {
  /** The principal an access key id belongs to, for SigV4 verification. */
  lookup(accessKeyId: string): Principal | undefined;
  /** Mints temporary credentials (ASIA... like AWS) for a role session. */
  issue(session: Omit<RoleSession, 'accessKeyId' | 'secretAccessKey' | 'sessionToken'>): RoleSession;
}

/** How many sessions are kept before the oldest expired ones are dropped (a long-running cloud stays small). */
const PRUNE_ABOVE = 10_000;

function randomKey(prefix: string, length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bytes = randomBytes(length);
  return prefix + Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

export function makeCredentialStore(
  accounts: readonly LongTermCredentials[],
  now: () => number = Date.now,
): CredentialStore {
  const longTerm = new Map(accounts.map((a) => [a.accessKeyId, a]));
  const sessions = new Map<string, RoleSession>();

  function prune(): void {
    if (sessions.size <= PRUNE_ABOVE) return;
    const t = now();
    for (const [key, session] of sessions) if (session.expiresAt < t) sessions.delete(key);
  }

  return {
    lookup(accessKeyId) {
      const account = longTerm.get(accessKeyId);
      if (account) return { kind: 'account', ...account };
      const session = sessions.get(accessKeyId);
      return session ? { kind: 'role-session', ...session } : undefined;
    },
    issue(session) {
      prune();
      const issued: RoleSession = {
        ...session,
        accessKeyId: randomKey('ASIA', 16),
        secretAccessKey: randomBytes(30).toString('base64'),
        sessionToken: randomBytes(96).toString('base64'),
      };
      sessions.set(issued.accessKeyId, issued);
      return issued;
    },
  };
}
