import { type Ids, TransferState } from "@p2pal/domain"
import { Clock, Effect, Metric, Option, Schedule } from "effect"
import type { Service as Redis } from "./Redis.js"
import * as Layout from "./RedisLayout.js"
import * as Store from "./TransferStore.js"

/**
 * The deadline index of RedisTransferStore: the transfers not yet ended, scored by their deadlines, for
 * `held` (the signal app's --max-transfers) and for counting each expired transfer once. It is one key,
 * in a slot of its own on a Redis Cluster, so it is kept in step after each write rather than in it.
 */

/** How often each instance looks for transfers whose deadline passed, to count them. */
const SweepInterval = "1 second"

/** A transfer's record as stored (for compare-and-set) and decoded. */
export interface Stored {
  readonly raw: string
  readonly record: Layout.TransferRecord
}

/**
 * Keeps the deadline index KEYS[1] in step with one transfer: member ARGV[1] is scored by its deadline
 * ARGV[2] while live and removed once final (ARGV[2] ''), and the index lives at least ARGV[3] more ms.
 */
const IndexLua = `
if ARGV[2] == '' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`

/**
 * The deadline index outlives its members' records by this much, so a sweep still finds a passed deadline
 * whose record is already gone (a retention shorter than the sweep interval, instances restarting).
 */
const DeadlinesSlackMs = 60_000

/** IndexLua's arguments for `transferId` whose record is `record` and lives `ttl` more ms. */
const indexArgs = (transferId: Ids.TransferId, record: Layout.TransferRecord, ttl: number) => [
  transferId,
  TransferState.isFinal(record.state.status) ? "" : String(record.state.expiresAt),
  ttl + DeadlinesSlackMs,
]

/**
 * The index on `redis`, swept by this instance while the scope lasts; `read` reads a transfer's record,
 * `ttlOf` tells how long a transfer's keys live.
 */
export const make = (
  redis: Redis,
  read: (transferId: Ids.TransferId) => Effect.Effect<Option.Option<Stored>, Store.StoreUnavailable>,
  ttlOf: (state: TransferState.TransferState, now: number) => number,
) =>
  Effect.gen(function* () {
    // Every instance sweeps; ZREM counts each removed member for exactly one of them.
    const sweep = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const due = yield* redis.use((client) => client.zrangebyscore(Layout.key.deadlines, "-inf", now))
      if (due.length === 0) return
      const removed = yield* redis.use((client) => client.zrem(Layout.key.deadlines, ...due))
      yield* Metric.incrementBy(Store.expiredTransfers, removed)
    })
    yield* Effect.forkScoped(Effect.repeat(Effect.ignore(sweep), Schedule.spaced(SweepInterval)))

    /**
     * Brings the index in step with the record `written`; again from a fresh read while another writer
     * changed the record meanwhile, so the index ends as the last write left it, however the writers'
     * updates of the index interleaved.
     */
    const follow = (transferId: Ids.TransferId, written: Stored) => {
      let current = written
      return Layout.casRetry(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const args = indexArgs(transferId, current.record, ttlOf(current.record.state, now))
          yield* redis.use((client) => client.eval(IndexLua, 1, Layout.key.deadlines, ...args))
          const after = yield* read(transferId)
          if (Option.isNone(after) || after.value.raw === current.raw) return
          current = after.value
          return yield* new Layout.Conflict()
        }),
      )
    }

    // The index lists exactly the transfers not yet ended (a passed deadline is swept off it).
    const held = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      redis.use((client) => client.zcount(Layout.key.deadlines, now, "+inf")),
    )

    return { follow, held }
  })
