import { Context, Data } from "effect"
import type { Effect } from "effect"
import type { StoreUnavailable } from "./TransferStore.js"

/** What is counted, per client address, in fixed windows. */
export type Kind = "create" | "join" | "failed-join"

export interface Limit {
  /** Requests allowed per window; the next one is refused until the window ends. */
  readonly max: number
  readonly windowMs: number
}

export type Limits = Record<Kind, Limit>

export class RateLimited extends Data.TaggedError("RateLimited")<{
  readonly kind: Kind
  /** When the client may try again. */
  readonly retryAfterMs: number
}> {}

export interface Service {
  /** Counts one request of `kind` from `client`; fails once the window's allowance is used up. */
  readonly hit: (kind: Kind, client: string) => Effect.Effect<void, RateLimited | StoreUnavailable>
  /** Fails if `kind`'s allowance is already used up, without counting (joins check failed joins first). */
  readonly check: (kind: Kind, client: string) => Effect.Effect<void, RateLimited | StoreUnavailable>
}

export class RateLimiter extends Context.Tag("@p2pal/infra/RateLimiter")<RateLimiter, Service>() {}
