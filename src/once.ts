/** Wraps `fn` so that it runs on the first call only; every later call returns the first result. */
export function once<T>(fn: () => T): () => T {
  let ran = false;
  let result: T;
  return () => {
    if (!ran) {
      ran = true;
      result = fn();
    }
    return result;
  };
}
