/** Tokens of the IoT SQL subset (version 2016-03-23) the local rules engine understands. */

export type TokenKind = 'keyword' | 'identifier' | 'string' | 'number' | 'operator' | 'punctuation' | 'end';

export interface Token {
  readonly kind: TokenKind;
  /** Keywords upper-cased; identifiers and strings as written (quotes removed). */
  readonly text: string;
  /** Offset in the SQL text, for error messages. */
  readonly at: number;
}

export class SqlSyntaxError extends Error {
  readonly at: number;

  constructor(message: string, at: number) {
    super(`${message} at offset ${at}`);
    this.name = 'SqlSyntaxError';
    this.at = at;
  }
}

const keywords = new Set(['SELECT', 'FROM', 'WHERE', 'AS', 'AND', 'OR', 'NOT', 'TRUE', 'FALSE', 'NULL']);
const twoCharOperators = new Set(['<>', '!=', '<=', '>=']);
const oneCharOperators = new Set(['=', '<', '>', '+', '-', '*', '/', '%']);
const punctuation = new Set(['(', ')', ',', '.', '[', ']']);

function isIdentifierStart(ch: string): boolean {
  return /[A-Za-z_$]/.test(ch);
}

function isIdentifierPart(ch: string): boolean {
  return /[A-Za-z0-9_$]/.test(ch);
}

/** Reads a quoted string or identifier; `''` inside single quotes is one quote. */
function readQuoted(sql: string, start: number, quote: string): { text: string; end: number } {
  let text = '';
  let i = start + 1;
  while (i < sql.length) {
    const ch = sql[i];
    if (ch === quote) {
      if (quote === "'" && sql[i + 1] === "'") {
        text += "'";
        i += 2;
        continue;
      }
      return { text, end: i + 1 };
    }
    text += ch;
    i++;
  }
  throw new SqlSyntaxError('Unterminated quoted text', start);
}

export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const ch = sql[i] ?? '';
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === "'" || ch === '`' || ch === '"') {
      const { text, end } = readQuoted(sql, i, ch);
      tokens.push({ kind: ch === "'" ? 'string' : 'identifier', text, at: i });
      i = end;
    } else if (/[0-9]/.test(ch)) {
      const match = /^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(sql.slice(i));
      const text = match?.[0] ?? ch;
      tokens.push({ kind: 'number', text, at: i });
      i += text.length;
    } else if (isIdentifierStart(ch)) {
      let end = i + 1;
      while (end < sql.length && isIdentifierPart(sql[end] ?? '')) end++;
      const word = sql.slice(i, end);
      const upper = word.toUpperCase();
      tokens.push(
        keywords.has(upper)
          ? { kind: 'keyword', text: upper, at: i }
          : { kind: 'identifier', text: word, at: i },
      );
      i = end;
    } else if (twoCharOperators.has(sql.slice(i, i + 2))) {
      tokens.push({ kind: 'operator', text: sql.slice(i, i + 2), at: i });
      i += 2;
    } else if (oneCharOperators.has(ch)) {
      tokens.push({ kind: 'operator', text: ch, at: i });
      i++;
    } else if (punctuation.has(ch)) {
      tokens.push({ kind: 'punctuation', text: ch, at: i });
      i++;
    } else {
      throw new SqlSyntaxError(`Unexpected character '${ch}'`, i);
    }
  }
  tokens.push({ kind: 'end', text: '', at: sql.length });
  return tokens;
}
