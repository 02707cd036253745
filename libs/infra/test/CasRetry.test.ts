import { describe, expect, it } from "@effect/vitest"
import { casRetry, Conflict } from "@p2pal/infra/RedisLayout"
import { StoreUnavailable, TransferNotFound } from "@p2pal/infra/TransferStore"
import { Effect, Ref } from "effect"

/** An attempt that loses `conflicts` compare-and-sets, then ends with `last`; counts its runs. */
const attempt = (conflicts: number, last: Effect.Effect<string, TransferNotFound>) =>
  Effect.map(Ref.make(0), (runs) => ({
    runs,
    run: Effect.flatMap(
      Ref.getAndUpdate(runs, (n) => n + 1),
      (n): Effect.Effect<string, TransferNotFound | Conflict> => (n < conflicts ? new Conflict() : last),
    ),
  }))

describe("casRetry", () => {
  it.effect("reads again after each lost compare-and-set until one wins", () =>
    Effect.gen(function* () {
      const { runs, run } = yield* attempt(10, Effect.succeed("written"))
      expect(yield* casRetry(run)).toBe("written")
      expect(yield* Ref.get(runs)).toBe(11)
    }),
  )

  it.effect("gives up with StoreUnavailable after 10 retries instead of looping forever", () =>
    Effect.gen(function* () {
      const { runs, run } = yield* attempt(Infinity, Effect.succeed("never"))
      expect(yield* Effect.flip(casRetry(run))).toBeInstanceOf(StoreUnavailable)
      expect(yield* Ref.get(runs)).toBe(11)
    }),
  )

  it.effect("passes any other failure through at once", () =>
    Effect.gen(function* () {
      const { runs, run } = yield* attempt(1, new TransferNotFound())
      expect(yield* Effect.flip(casRetry(run))).toBeInstanceOf(TransferNotFound)
      expect(yield* Ref.get(runs)).toBe(2)
    }),
  )
})
