import { Clock, Duration, Effect, Schedule } from "effect"

/**
 * libjuice's own consent checks take 13-30 s to notice a dead path here, so each side says something at
 * least every `HeartbeatEvery`, and `SilenceLimit` without a word from the peer means the path is gone.
 */
export const HeartbeatEvery = Duration.seconds(1)
export const SilenceLimit = Duration.seconds(5)

/** Sends `beat` every `HeartbeatEvery`, for as long as it runs. */
export const heartbeat = <E, R>(beat: Effect.Effect<void, E, R>) =>
  Effect.schedule(beat, Schedule.spaced(HeartbeatEvery))

/**
 * Completes once `heard` (a count of everything heard from the peer) has not moved for `SilenceLimit`,
 * looking at it every `HeartbeatEvery`; time through Clock, so a TestClock drives it.
 */
export const silence = (heard: () => number): Effect.Effect<void> =>
  Effect.gen(function* () {
    let last = heard()
    let since = yield* Clock.currentTimeMillis
    const silent = Effect.map(Clock.currentTimeMillis, (now) => {
      const count = heard()
      if (count !== last) {
        last = count
        since = now
      }
      return now - since >= Duration.toMillis(SilenceLimit)
    })
    yield* Effect.repeat(silent, { schedule: Schedule.spaced(HeartbeatEvery), until: (gone) => gone })
  })
