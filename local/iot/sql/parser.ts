/**
 * A recursive-descent parser for the IoT SQL subset the service's rules use:
 * `SELECT * | expr [AS alias], ... FROM 'topic/filter/+/#' [WHERE condition]`, with nested field
 * access (`a.b[0].c`), literals, `topic(n)`, `timestamp()`, `clientid()`, `newuuid()`,
 * `isUndefined(x)`, arithmetic, comparisons and AND / OR / NOT.
 *
 * Grammar (lowest precedence first):
 *   or         := and ( OR and )*
 *   and        := not ( AND not )*
 *   not        := NOT not | comparison
 *   comparison := additive ( ( = | <> | != | < | <= | > | >= ) additive )?
 *   additive   := term ( ( + | - ) term )*
 *   term       := unary ( ( * | / | % ) unary )*
 *   unary      := - unary | primary
 *   primary    := literal | function '(' args ')' | path | '(' or ')'
 */
import type { Json } from '../shadow/json.ts';
import { SqlSyntaxError, type Token, tokenize } from './lexer.ts';

export type BinaryOperator =
  | '='
  | '<>'
  | '<'
  | '<='
  | '>'
  | '>='
  | '+'
  | '-'
  | '*'
  | '/'
  | '%'
  | 'AND'
  | 'OR';

export type Expression =
  | { readonly type: 'literal'; readonly value: Json }
  | { readonly type: 'path'; readonly segments: readonly (string | number)[] }
  | { readonly type: 'call'; readonly name: SqlFunction; readonly args: readonly Expression[] }
  | { readonly type: 'not'; readonly operand: Expression }
  | { readonly type: 'negate'; readonly operand: Expression }
  | {
      readonly type: 'binary';
      readonly operator: BinaryOperator;
      readonly left: Expression;
      readonly right: Expression;
    };

export type SelectItem =
  | { readonly type: 'all' }
  | { readonly type: 'expression'; readonly expression: Expression; readonly name: string };

export interface SelectStatement {
  readonly select: readonly SelectItem[];
  /** The FROM topic filter. */
  readonly from: string;
  readonly where?: Expression;
}

/** Functions and how many arguments each takes. */
const functionArity = {
  topic: [0, 1],
  timestamp: [0, 0],
  clientid: [0, 0],
  newuuid: [0, 0],
  isundefined: [1, 1],
} as const;
export type SqlFunction = keyof typeof functionArity;

function isSqlFunction(name: string): name is SqlFunction {
  return Object.hasOwn(functionArity, name);
}

const comparisonOperators = new Set(['=', '<>', '!=', '<', '<=', '>', '>=']);

class Parser {
  readonly #tokens: Token[];
  #position = 0;

  constructor(sql: string) {
    this.#tokens = tokenize(sql);
  }

  statement(): SelectStatement {
    this.#expectKeyword('SELECT');
    const select = this.#selectList();
    this.#expectKeyword('FROM');
    const fromToken = this.#next();
    if (fromToken.kind !== 'string')
      throw new SqlSyntaxError('FROM needs a quoted topic filter', fromToken.at);
    validateTopicFilter(fromToken.text, fromToken.at);
    let where: Expression | undefined;
    if (this.#peekKeyword('WHERE')) {
      this.#next();
      where = this.#or();
    }
    const end = this.#peek();
    if (end.kind !== 'end') throw new SqlSyntaxError(`Unexpected '${end.text}'`, end.at);
    return { select, from: fromToken.text, ...(where ? { where } : {}) };
  }

  #selectList(): SelectItem[] {
    const items: SelectItem[] = [];
    do {
      if (items.length > 0) this.#next();
      const token = this.#peek();
      if (token.kind === 'operator' && token.text === '*') {
        this.#next();
        items.push({ type: 'all' });
        continue;
      }
      const expression = this.#or();
      let name = defaultName(expression, items.length);
      if (this.#peekKeyword('AS')) {
        this.#next();
        const alias = this.#next();
        if (alias.kind !== 'identifier') throw new SqlSyntaxError('AS needs a name', alias.at);
        name = alias.text;
      }
      items.push({ type: 'expression', expression, name });
    } while (this.#peek().kind === 'punctuation' && this.#peek().text === ',');
    return items;
  }

  #or(): Expression {
    let left = this.#and();
    while (this.#peekKeyword('OR')) {
      this.#next();
      left = { type: 'binary', operator: 'OR', left, right: this.#and() };
    }
    return left;
  }

  #and(): Expression {
    let left = this.#not();
    while (this.#peekKeyword('AND')) {
      this.#next();
      left = { type: 'binary', operator: 'AND', left, right: this.#not() };
    }
    return left;
  }

  #not(): Expression {
    if (this.#peekKeyword('NOT')) {
      this.#next();
      return { type: 'not', operand: this.#not() };
    }
    return this.#comparison();
  }

  #comparison(): Expression {
    const left = this.#additive();
    const token = this.#peek();
    if (token.kind === 'operator' && comparisonOperators.has(token.text)) {
      this.#next();
      const operator = (token.text === '!=' ? '<>' : token.text) as BinaryOperator;
      return { type: 'binary', operator, left, right: this.#additive() };
    }
    return left;
  }

  #additive(): Expression {
    let left = this.#term();
    for (
      let token = this.#peek();
      token.kind === 'operator' && (token.text === '+' || token.text === '-');
      token = this.#peek()
    ) {
      this.#next();
      left = { type: 'binary', operator: token.text as BinaryOperator, left, right: this.#term() };
    }
    return left;
  }

  #term(): Expression {
    let left = this.#unary();
    for (
      let token = this.#peek();
      token.kind === 'operator' && (token.text === '*' || token.text === '/' || token.text === '%');
      token = this.#peek()
    ) {
      this.#next();
      left = { type: 'binary', operator: token.text as BinaryOperator, left, right: this.#unary() };
    }
    return left;
  }

  #unary(): Expression {
    const token = this.#peek();
    if (token.kind === 'operator' && token.text === '-') {
      this.#next();
      return { type: 'negate', operand: this.#unary() };
    }
    return this.#primary();
  }

  #primary(): Expression {
    const token = this.#next();
    switch (token.kind) {
      case 'number':
        return { type: 'literal', value: Number(token.text) };
      case 'string':
        return { type: 'literal', value: token.text };
      case 'keyword':
        if (token.text === 'TRUE') return { type: 'literal', value: true };
        if (token.text === 'FALSE') return { type: 'literal', value: false };
        if (token.text === 'NULL') return { type: 'literal', value: null };
        throw new SqlSyntaxError(`Unexpected ${token.text}`, token.at);
      case 'punctuation':
        if (token.text === '(') {
          const inner = this.#or();
          this.#expectPunctuation(')');
          return inner;
        }
        throw new SqlSyntaxError(`Unexpected '${token.text}'`, token.at);
      case 'identifier':
        return this.#isNext('(') ? this.#call(token) : this.#path(token.text);
      default:
        throw new SqlSyntaxError(
          token.kind === 'end' ? 'Unexpected end of SQL' : `Unexpected '${token.text}'`,
          token.at,
        );
    }
  }

  #call(nameToken: Token): Expression {
    const name = nameToken.text.toLowerCase();
    if (!isSqlFunction(name))
      throw new SqlSyntaxError(`Unsupported function ${nameToken.text}()`, nameToken.at);
    this.#expectPunctuation('(');
    const args: Expression[] = [];
    if (!this.#isNext(')')) {
      args.push(this.#or());
      while (this.#isNext(',')) {
        this.#next();
        args.push(this.#or());
      }
    }
    this.#expectPunctuation(')');
    const [min, max] = functionArity[name];
    if (args.length < min || args.length > max) {
      throw new SqlSyntaxError(
        `${name}() takes ${min === max ? min : `${min} to ${max}`} arguments`,
        nameToken.at,
      );
    }
    return { type: 'call', name, args };
  }

  #path(first: string): Expression {
    const segments: (string | number)[] = [first];
    for (;;) {
      if (this.#isNext('.')) {
        this.#next();
        const field = this.#next();
        if (field.kind !== 'identifier' && field.kind !== 'keyword')
          throw new SqlSyntaxError('Expected a field name', field.at);
        segments.push(field.kind === 'keyword' ? field.text.toLowerCase() : field.text);
      } else if (this.#isNext('[')) {
        this.#next();
        const index = this.#next();
        if (index.kind !== 'number' || !Number.isInteger(Number(index.text))) {
          throw new SqlSyntaxError('Expected an array index', index.at);
        }
        segments.push(Number(index.text));
        this.#expectPunctuation(']');
      } else {
        return { type: 'path', segments };
      }
    }
  }

  #peek(): Token {
    return this.#tokens[this.#position] ?? { kind: 'end', text: '', at: -1 };
  }

  #next(): Token {
    const token = this.#peek();
    if (token.kind !== 'end') this.#position++;
    return token;
  }

  #peekKeyword(keyword: string): boolean {
    const token = this.#peek();
    return token.kind === 'keyword' && token.text === keyword;
  }

  #isNext(symbol: string): boolean {
    const token = this.#peek();
    return token.kind === 'punctuation' && token.text === symbol;
  }

  #expectKeyword(keyword: string): void {
    const token = this.#next();
    if (token.kind !== 'keyword' || token.text !== keyword)
      throw new SqlSyntaxError(`Expected ${keyword}`, token.at);
  }

  #expectPunctuation(symbol: string): void {
    const token = this.#next();
    if (token.kind !== 'punctuation' || token.text !== symbol)
      throw new SqlSyntaxError(`Expected '${symbol}'`, token.at);
  }
}

/** An unaliased field keeps its last name (`state.reported.ota` → `ota`); anything else `_<n>`. */
function defaultName(expression: Expression, index: number): string {
  if (expression.type === 'path') {
    const last = expression.segments.at(-1);
    if (typeof last === 'string') return last;
  }
  if (expression.type === 'call') return expression.name;
  return `_${index + 1}`;
}

function validateTopicFilter(filter: string, at: number): void {
  const levels = filter.split('/');
  levels.forEach((level, i) => {
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      throw new SqlSyntaxError(`'#' must be the last level of the topic filter`, at);
    }
    if (level.includes('+') && level !== '+')
      throw new SqlSyntaxError(`'+' must fill a whole topic level`, at);
  });
}

/** Parses a rule's SQL; throws `SqlSyntaxError` (a rule definition is code: a bad one is a bug). */
export function parseSql(sql: string): SelectStatement {
  return new Parser(sql).statement();
}

/** Parses a lone expression, as in a republish topic's `${...}` substitution template. */
export function parseExpression(text: string): Expression {
  const statement = parseSql(`SELECT ${text} FROM '#'`);
  const [item] = statement.select;
  if (statement.select.length !== 1 || item?.type !== 'expression') {
    throw new SqlSyntaxError(`Not one expression: ${text}`, 0);
  }
  return item.expression;
}
