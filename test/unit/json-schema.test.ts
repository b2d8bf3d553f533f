/** The small JSON Schema check the OpenAPI test relies on: it must fail what does not conform. */
import { expect, it } from "vitest";
import * as z from "zod";
import { schemaErrors } from "../support/json-schema.js";

const schema = z.toJSONSchema(
  z.object({
    bdf: z.string().regex(/^[0-9a-f]{2}$/),
    n: z.number().int().min(0),
    state: z.enum(["a", "b"]).nullable(),
    vm: z.union([z.string(), z.number()]),
    list: z.array(z.object({ x: z.boolean() })),
    extra: z.string().optional(),
  }),
) as Record<string, unknown>;

it("passes a conforming value and names each way a value breaks the schema", () => {
  const good = { bdf: "0a", n: 3, state: null, vm: 7, list: [{ x: true }] };
  expect(schemaErrors(schema, good)).toEqual([]);
  expect(
    schemaErrors(schema, { bdf: "zz", n: 1.5, state: "c", vm: false, list: [{ x: 1 }], more: 1 }),
  ).toEqual([
    "$.bdf: zz does not match ^[0-9a-f]{2}$",
    "$.n: is number, not integer",
    "$.state: matches 0 of the anyOf alternatives",
    "$.vm: is boolean, not string or number",
    "$.list[0].x: is integer, not boolean",
    "$: has more, which the schema does not allow",
  ]);
  const { list: _, ...noList } = good;
  expect(schemaErrors(schema, { ...noList, n: -1 })).toEqual(["$.n: -1 breaks minimum 0", "$: lacks list"]);
  expect(() => schemaErrors({ not: {} }, 1)).toThrow(/does not know the keyword not/);
});
