/**
 * A small JSON Schema (2020-12) check: the keywords z.toJSONSchema writes, no more. A keyword it
 * does not know fails the check, so that a schema never passes for lack of understanding.
 */
type Schema = Record<string, unknown>;

const IGNORED = new Set(["$schema", "description", "title", "default", "format", "examples"]);

const typeOf = (v: unknown): string =>
  v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v;

/** Every way `value` breaks `schema`, each as "path: what"; empty when it conforms. */
export function schemaErrors(schema: Schema, value: unknown, path = "$"): string[] {
  const errors: string[] = [];
  const fail = (what: string) => errors.push(`${path}: ${what}`);
  for (const [key, rule] of Object.entries(schema)) {
    if (IGNORED.has(key)) continue;
    switch (key) {
      case "type": {
        const types = Array.isArray(rule) ? rule : [rule];
        const t = typeOf(value);
        if (!types.includes(t) && !(t === "integer" && types.includes("number")))
          fail(`is ${t}, not ${types.join(" or ")}`);
        break;
      }
      case "properties":
        if (typeOf(value) === "object")
          for (const [k, s] of Object.entries(rule as Record<string, Schema>))
            if (k in (value as object))
              errors.push(...schemaErrors(s, (value as Record<string, unknown>)[k], `${path}.${k}`));
        break;
      case "required":
        if (typeOf(value) === "object")
          for (const k of rule as string[]) if (!(k in (value as object))) fail(`lacks ${k}`);
        break;
      case "additionalProperties": {
        if (typeOf(value) !== "object") break;
        const known = Object.keys((schema.properties as object | undefined) ?? {});
        for (const [k, v] of Object.entries(value as object)) {
          if (known.includes(k)) continue;
          if (rule === false) fail(`has ${k}, which the schema does not allow`);
          else if (typeof rule === "object") errors.push(...schemaErrors(rule as Schema, v, `${path}.${k}`));
        }
        break;
      }
      case "propertyNames":
        if (typeOf(value) === "object")
          for (const k of Object.keys(value as object))
            errors.push(...schemaErrors(rule as Schema, k, `${path}[key ${k}]`));
        break;
      case "items":
        if (Array.isArray(value))
          for (const [i, v] of value.entries())
            errors.push(...schemaErrors(rule as Schema, v, `${path}[${i}]`));
        break;
      case "enum":
        if (!(rule as unknown[]).includes(value))
          fail(`${JSON.stringify(value)} is not one of ${JSON.stringify(rule)}`);
        break;
      case "const":
        if (value !== rule) fail(`${JSON.stringify(value)} is not ${JSON.stringify(rule)}`);
        break;
      case "anyOf":
      case "oneOf": {
        const passing = (rule as Schema[]).filter((s) => schemaErrors(s, value, path).length === 0).length;
        if (passing === 0 || (key === "oneOf" && passing > 1))
          fail(`matches ${passing} of the ${key} alternatives`);
        break;
      }
      case "allOf":
        for (const s of rule as Schema[]) errors.push(...schemaErrors(s, value, path));
        break;
      case "minimum":
      case "maximum":
      case "exclusiveMinimum":
      case "exclusiveMaximum": {
        if (typeof value !== "number") break;
        const bound = rule as number;
        const ok =
          key === "minimum"
            ? value >= bound
            : key === "maximum"
              ? value <= bound
              : key === "exclusiveMinimum"
                ? value > bound
                : value < bound;
        if (!ok) fail(`${value} breaks ${key} ${bound}`);
        break;
      }
      case "minLength":
      case "maxLength":
        if (
          typeof value === "string" &&
          (key === "minLength" ? value.length < (rule as number) : value.length > (rule as number))
        )
          fail(`length ${value.length} breaks ${key} ${rule}`);
        break;
      case "pattern":
        if (typeof value === "string" && !new RegExp(rule as string).test(value))
          fail(`${value} does not match ${rule}`);
        break;
      default:
        throw new Error(`${path}: the schema check does not know the keyword ${key}`);
    }
  }
  return errors;
}
