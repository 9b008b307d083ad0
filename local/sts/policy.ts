/**
 * IAM policy documents as the local STS and the local S3 gateway need them: parse a session or role
 * policy, and decide whether it allows one action on one resource with IAM's rules (an explicit Deny
 * wins, an Allow is needed, anything else is an implicit deny). Conditions are refused when a policy
 * is parsed rather than ignored, so a local test never passes on a policy AWS would read otherwise.
 */
import { z } from 'zod';

const stringOrList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

const statementSchema = z
  .object({
    Sid: z.string().optional(),
    Effect: z.enum(['Allow', 'Deny']),
    Action: stringOrList.optional(),
    NotAction: stringOrList.optional(),
    Resource: stringOrList.optional(),
    NotResource: stringOrList.optional(),
    Condition: z.unknown().optional(),
  })
  .strict()
  .superRefine((statement, ctx) => {
    if ((statement.Action === undefined) === (statement.NotAction === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'a statement needs exactly one of Action or NotAction' });
    }
    if ((statement.Resource === undefined) === (statement.NotResource === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'a statement needs exactly one of Resource or NotResource' });
    }
    if (statement.Condition !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['Condition'], message: 'conditions are not supported locally' });
    }
  });

const policySchema = z
  .object({
    Version: z.enum(['2012-10-17', '2008-10-17']).optional(),
    Id: z.string().optional(),
    Statement: z.union([statementSchema, z.array(statementSchema).min(1)]),
  })
  .strict();

export interface PolicyStatement {
  readonly effect: 'Allow' | 'Deny';
  readonly actions: readonly string[];
  /** NotAction: the statement applies to every action but these. */
  readonly actionsNegated: boolean;
  readonly resources: readonly string[];
  readonly resourcesNegated: boolean;
}

export interface PolicyDocument {
  readonly statements: readonly PolicyStatement[];
}

const list = (value: string | string[] | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** Parses policy JSON text; the error message names what is wrong (STS answers MalformedPolicyDocument). */
export function parsePolicy(
  text: string,
): { ok: true; policy: PolicyDocument } | { ok: false; message: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, message: 'the policy is not valid JSON' };
  }
  const parsed = policySchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, message: `${issue?.path.join('.') || 'policy'}: ${issue?.message ?? 'invalid'}` };
  }
  const statements = Array.isArray(parsed.data.Statement) ? parsed.data.Statement : [parsed.data.Statement];
  return {
    ok: true,
    policy: {
      statements: statements.map((s) => ({
        effect: s.Effect,
        actions: list(s.Action ?? s.NotAction),
        actionsNegated: s.NotAction !== undefined,
        resources: list(s.Resource ?? s.NotResource),
        resourcesNegated: s.NotResource !== undefined,
      })),
    },
  };
}

/** IAM wildcards: `*` any run of characters, `?` one character; everything else literal. */
function wildcardMatches(pattern: string, value: string, ignoreCase: boolean): boolean {
  const source = pattern
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`, ignoreCase ? 'is' : 's').test(value);
}

function statementApplies(statement: PolicyStatement, action: string, resource: string): boolean {
  // Action names are case-insensitive in IAM; resource ARNs (object keys) are not.
  const actionHit = statement.actions.some((p) => wildcardMatches(p, action, true));
  const resourceHit = statement.resources.some((p) => wildcardMatches(p, resource, false));
  return actionHit !== statement.actionsNegated && resourceHit !== statement.resourcesNegated;
}

export type PolicyDecision = 'allow' | 'explicit-deny' | 'implicit-deny';

export function evaluatePolicy(policy: PolicyDocument, action: string, resource: string): PolicyDecision {
  const applying = policy.statements.filter((s) => statementApplies(s, action, resource));
  if (applying.some((s) => s.effect === 'Deny')) return 'explicit-deny';
  return applying.some((s) => s.effect === 'Allow') ? 'allow' : 'implicit-deny';
}

/**
 * A role session's effective permissions: the intersection of the role's identity policy and the
 * session policy passed to AssumeRole (a session policy can only narrow what the role may do).
 */
export function sessionAllows(
  rolePolicy: PolicyDocument,
  sessionPolicy: PolicyDocument | undefined,
  action: string,
  resource: string,
): boolean {
  if (evaluatePolicy(rolePolicy, action, resource) !== 'allow') return false;
  return sessionPolicy === undefined || evaluatePolicy(sessionPolicy, action, resource) === 'allow';
}
