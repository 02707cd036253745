import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import {
  type ApiErrorCode,
  CreateTransferRequest,
  CreateTransferResponse,
  JoinRequest,
  JoinResponse,
} from "./SignalApi.js"

/*
 * The signal app's REST endpoints, declared once: the app serves them (HttpApiBuilder), the CLI calls them
 * (HttpApiClient), and GET /api/openapi.json describes them. The relay (GET /api/ws) is not one of them.
 */

export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", { message: Schema.String }) {}
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { message: Schema.String }) {}
/** The code was used: claimed by another receiver, or its transfer completed. */
export class AlreadyClaimed extends Schema.TaggedError<AlreadyClaimed>()("AlreadyClaimed", {
  message: Schema.String,
}) {}
/** The code's TTL passed, or its transfer was aborted. */
export class Expired extends Schema.TaggedError<Expired>()("Expired", { message: Schema.String }) {}
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  message: Schema.String,
}) {}
/** Too many requests from this client address; the answer's Retry-After header says when to try again. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  message: Schema.String,
}) {}
/** The store did not answer, a cap is reached (with Retry-After), or the instance is shutting down. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  message: Schema.String,
}) {}

/**
 * `error` as the app answers it: `status`, and the body `{ "error": code, "message": text }` that clients
 * have always read (programs tell failures apart by `error`, people read `message`).
 */
const answered = <A, Tag extends string>(
  error: Schema.Schema<A, { readonly _tag: Tag; readonly message: string }> & { readonly _tag: Tag },
  code: ApiErrorCode,
  status: number,
) =>
  Schema.transform(
    Schema.Struct({ error: Schema.Literal(code), message: Schema.String }),
    Schema.encodedSchema(error),
    {
      strict: true,
      decode: ({ message }) => ({ _tag: error._tag, message }),
      encode: ({ message }) => ({ error: code, message }),
    },
  ).pipe(Schema.compose(error), (schema) => schema.annotations(HttpApiSchema.annotations({ status })))

const Answers = {
  badRequest: answered(BadRequest, "bad_request", 400),
  notFound: answered(NotFound, "not_found", 404),
  alreadyClaimed: answered(AlreadyClaimed, "already_claimed", 409),
  expired: answered(Expired, "expired", 410),
  payloadTooLarge: answered(PayloadTooLarge, "payload_too_large", 413),
  rateLimited: answered(RateLimited, "rate_limited", 429),
  unavailable: answered(Unavailable, "unavailable", 503),
}

export const Health = Schema.Struct({ status: Schema.Literal("ok") })
export const Readiness = Schema.Struct({ status: Schema.Literal("ready") })

const create = HttpApiEndpoint.post("create", "/api/transfer")
  .setPayload(CreateTransferRequest)
  .addSuccess(CreateTransferResponse, { status: 201 })
  .addError(Answers.badRequest)
  .addError(Answers.payloadTooLarge)
  .addError(Answers.rateLimited)
  .addError(Answers.unavailable)

const join = HttpApiEndpoint.post("join", "/api/join")
  .setPayload(JoinRequest)
  .addSuccess(JoinResponse)
  .addError(Answers.badRequest)
  .addError(Answers.notFound)
  .addError(Answers.alreadyClaimed)
  .addError(Answers.expired)
  .addError(Answers.payloadTooLarge)
  .addError(Answers.rateLimited)
  .addError(Answers.unavailable)

/** Liveness: answers while the process runs. */
const healthz = HttpApiEndpoint.get("healthz", "/healthz").addSuccess(Health)

/** Readiness: the store answers and no shutdown has begun. */
const readyz = HttpApiEndpoint.get("readyz", "/readyz").addSuccess(Readiness).addError(Answers.unavailable)

export class SignalHttpApi extends HttpApi.make("p2pal-signal")
  .add(HttpApiGroup.make("signal", { topLevel: true }).add(create).add(join).add(healthz).add(readyz))
  // Any other path.
  .addError(Answers.notFound)
  .annotate(OpenApi.Title, "p2pal signal app")
  .annotate(OpenApi.Version, "0.1.0") {}
