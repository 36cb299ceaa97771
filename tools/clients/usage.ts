// A terminal's QR verification and a charge, typed by the generated client (schema.d.ts): a schema or
// operation renamed or removed in the OpenAPI document fails `tsc --noEmit` here.
import type { components, paths } from "./schema";

type Verify = paths["/v1/terminal/qr/verify"]["post"];
type Holder = Verify["responses"][200]["content"]["application/json"];
type Problem = components["schemas"]["ProblemDetails"];
type Charge = paths["/v1/terminal/charges"]["post"];

const request: Verify["requestBody"] = { content: { "application/json": { token: "AQGd3xkq8m0SkX7hQ2Vr1g.Xb3w0kqzJ4yY0a6o9mD1sw" } } };

const refusal: Problem = expiredAnswer();
function expiredAnswer(): Verify["responses"][410]["content"]["application/problem+json"] {
  return {
    type: "urn:socialcard:problem:qr_expired",
    title: "expired",
    status: 410,
    detail: "expired",
    code: "qr_expired",
    instance: "/v1/terminal/qr/verify",
  };
}

// The Idempotency-Key is required: an optional one must not type-check.
type IsRequired<T, K extends keyof T> = object extends Pick<T, K> ? false : true;
const idempotencyKeyIsRequired: IsRequired<Charge["parameters"]["header"], "Idempotency-Key"> = true;
const chargeHeaders: Charge["parameters"]["header"] = { "Idempotency-Key": "pos-17-000123" };

export function describe(holder: Holder): string {
  return `${holder.name} ${holder.card_number} ${holder.card_status} ${refusal.code} ${chargeHeaders["Idempotency-Key"]} ${idempotencyKeyIsRequired} ${JSON.stringify(request)}`;
}
