/** What a client's middleware stack offers to take a step out (every AWS SDK v3 client has one). */
interface WithMiddlewareStack {
  readonly middlewareStack: { remove(name: string): boolean };
}

function hasMiddlewareStack(client: object): client is WithMiddlewareStack {
  const stack = (client as Partial<WithMiddlewareStack>).middlewareStack;
  return typeof stack?.remove === 'function';
}

/**
 * Takes the SDK's request log step out of a client. It filters every request's input and output
 * for sensitive fields to build a log line, even for the SDK's default logger, which drops it: a
 * few per cent of a handler's CPU in the fan-out benchmark's profile, on every request. Our
 * handlers log what they need themselves. Returns the same client; anything without a middleware
 * stack (a test double) is returned as it is.
 */
export function withoutSdkRequestLog<C extends object>(client: C): C {
  if (hasMiddlewareStack(client)) client.middlewareStack.remove('loggerMiddleware');
  return client;
}
