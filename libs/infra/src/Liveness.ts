import { Clock, Duration, Effect, Schedule } from "effect"

/**
 * libjuice's own consent checks take 13-30 s to notice a dead path here, so each side says something at
 * least every `HeartbeatEvery`, and `SilenceLimit` without progress means the path is gone.
 */
export const HeartbeatEvery = Duration.seconds(1)
export const SilenceLimit = Duration.seconds(5)
/**
 * Round trips added to the limit: a heartbeat lost on the way holds up what follows it on its lane for a
 * retransmission timeout, about a round trip and more on a long path.
 */
export const RoundTripsAllowed = 2

/** What one side sees of a lane at one look. */
export interface Look {
  /** Messages of any kind heard from the peer so far: only its changes count. */
  readonly heard: number
  /** What this side still queues for the peer: it only shrinks as the peer acknowledges what it got. */
  readonly buffered: number
  /** The lane's smoothed round trip, if measured yet. */
  readonly rttMs: number | undefined
}

/** How long a lane may go without progress before it is taken for dead. */
export const patience = (rttMs: number | undefined): Duration.Duration =>
  Duration.sum(SilenceLimit, Duration.millis(RoundTripsAllowed * (rttMs ?? 0)))

/** Sends `beat` every `HeartbeatEvery`, for as long as it runs. */
export const heartbeat = <E, R>(beat: Effect.Effect<void, E, R>) =>
  Effect.schedule(beat, Schedule.spaced(HeartbeatEvery))

/**
 * Completes with how long the lane went without progress once that is past its `patience`, looking every
 * `HeartbeatEvery`. Progress is a message heard (the peer breaks up long ones so that even a slow link
 * delivers one every few seconds: see Stripes) or this side's queue for the peer shrinking (the peer
 * acknowledges what it got even while none of its own messages gets through). Time through Clock, so a
 * TestClock drives it.
 */
export const silence = (look: () => Look): Effect.Effect<Duration.Duration> =>
  Effect.gen(function* () {
    let last = look()
    let since = yield* Clock.currentTimeMillis
    let quiet = Duration.zero
    const gone = Effect.map(Clock.currentTimeMillis, (now) => {
      const seen = look()
      if (seen.heard !== last.heard || seen.buffered < last.buffered) since = now
      last = seen
      quiet = Duration.millis(now - since)
      return Duration.greaterThanOrEqualTo(quiet, patience(seen.rttMs))
    })
    yield* Effect.repeat(gone, { schedule: Schedule.spaced(HeartbeatEvery), until: (is) => is })
    return quiet
  })
