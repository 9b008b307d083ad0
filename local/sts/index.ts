/**
 * The local cloud's identity side: long-term and temporary credentials, SigV4 verification, IAM
 * policy evaluation and the STS endpoint that issues role sessions.
 */
export {
  type CredentialStore,
  type LongTermCredentials,
  makeCredentialStore,
  type Principal,
  type RoleSession,
} from './credentials.ts';
export {
  evaluatePolicy,
  type PolicyDecision,
  type PolicyDocument,
  parsePolicy,
  sessionAllows,
} from './policy.ts';
export {
  assumeRoleLimits,
  type LocalRole,
  type LocalStsOptions,
  type RunningLocalSts,
  startLocalSts,
} from './server.ts';
export {
  type AuthFailure,
  type IncomingSignedRequest,
  parseRawQuery,
  type VerifiedRequest,
  verifySigV4,
} from './sigv4.ts';
