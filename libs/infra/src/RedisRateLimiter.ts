import { Effect, Layer } from "effect"
import { Redis } from "./Redis.js"
import { type Kind, type Limits, RateLimited, RateLimiter } from "./RateLimiter.js"

/** Counts a hit on KEYS[1], whose first hit starts the window of ARGV[1] ms; returns the count and the window's PTTL. */
const HitLua = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return { count, redis.call('PTTL', KEYS[1]) }
`

const key = (kind: Kind, client: string) => `p2pal:rl:${kind}:${client}`

const make = (limits: Limits) =>
  Effect.gen(function* () {
    const redis = yield* Redis

    // The window may end between the two reads of `check`: never tell a client to retry in the past.
    const refused = (kind: Kind, pttl: number) => new RateLimited({ kind, retryAfterMs: Math.max(1, pttl) })

    const hit = Effect.fn("RateLimiter.hit")(function* (kind: Kind, client: string) {
      const [count, pttl] = (yield* redis.use((connection) =>
        connection.eval(HitLua, 1, key(kind, client), limits[kind].windowMs),
      )) as [number, number]
      if (count > limits[kind].max) return yield* refused(kind, pttl)
    })

    const check = Effect.fn("RateLimiter.check")(function* (kind: Kind, client: string) {
      const [count, pttl] = yield* redis.use((connection) =>
        Promise.all([connection.get(key(kind, client)), connection.pttl(key(kind, client))]),
      )
      if (Number(count ?? 0) >= limits[kind].max) return yield* refused(kind, pttl)
    })

    return RateLimiter.of({ hit, check })
  })

/** Fixed windows per kind and client, shared by every instance on one Redis. */
export const layer = (limits: Limits): Layer.Layer<RateLimiter, never, Redis> =>
  Layer.effect(RateLimiter, make(limits))
