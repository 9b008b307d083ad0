/** A shared definition (lambdas/definitions) asks for something the stack cannot deploy. */
export class UnsupportedDefinitionError extends Error {
  override readonly name = 'UnsupportedDefinitionError';
  constructor(
    readonly definition: string,
    message: string,
  ) {
    super(`${definition}: ${message}`);
  }
}
