import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc, Schema } from "effect"
import { TransferState } from "../src/index.js"

const { step, initial, isFinal } = TransferState
type State = TransferState.TransferState
type Event = TransferState.Event

interface Step {
  readonly before: State
  readonly event: Event
  readonly result: Either.Either<State, TransferState.Rejection>
}

/** Folds events over `start`, keeping every step; a rejected event leaves the state as it was. */
const run = (start: State, events: ReadonlyArray<Event>): ReadonlyArray<Step> => {
  const steps: Array<Step> = []
  let state = start
  for (const event of events) {
    const result = step(state, event)
    steps.push({ before: state, event, result })
    state = Either.getOrElse(result, () => state)
  }
  return steps
}

/** Events on a small integer clock, so deadlines are hit often and the happy path is reachable. */
const at = fc.integer({ min: 0, max: 1_000 })
const timedEvent: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ _tag: fc.constant("Join" as const), at }),
  fc.record({ _tag: fc.constant("Activate" as const), at, leaseMs: fc.integer({ min: 0, max: 500 }) }),
  fc.record({ _tag: fc.constant("Complete" as const), at }),
  fc.record({ _tag: fc.constant("Abort" as const), at }),
  fc.record({ _tag: fc.constant("Tick" as const), at }),
)
/** Sorted times, as a real clock would deliver them. */
const timeline = fc
  .array(timedEvent, { maxLength: 30 })
  .map((events) => [...events].sort((x, y) => x.at - y.at))
const start = fc.record({
  createdAt: fc.integer({ min: 0, max: 200 }),
  ttl: fc.integer({ min: 1, max: 600 }),
})

const allowed: ReadonlySet<string> = new Set([
  "pending>pending",
  "pending>ready",
  "ready>ready",
  "ready>active",
  "active>active",
  "active>completed",
  ...["pending", "ready", "active"].flatMap((s) => [`${s}>aborted`, `${s}>expired`]),
  ...["completed", "aborted", "expired"].map((s) => `${s}>${s}`),
])

const checkInvariants = (steps: ReadonlyArray<Step>): void => {
  for (const { before, event, result } of steps) {
    // A final state never changes: the event is refused or leaves it exactly as it was.
    if (isFinal(before.status)) {
      if (Either.isRight(result)) expect(result.right).toEqual(before)
    }
    // Expiry wins: at or past the deadline a live transfer is expired, whatever the event.
    if (!isFinal(before.status) && event.at >= before.expiresAt) {
      if (event._tag === "Tick") expect(result).toEqual(Either.right({ ...before, status: "expired" }))
      else expect(result).toEqual(Either.left("expired"))
    }
    if (Either.isRight(result)) {
      expect(allowed.has(`${before.status}>${result.right.status}`)).toBe(true)
      expect(result.right.expiresAt).toBeGreaterThanOrEqual(before.expiresAt)
    }
  }
  // A transfer is claimed at most once.
  const joins = steps.filter((s) => s.event._tag === "Join" && Either.isRight(s.result))
  expect(joins.length).toBeLessThanOrEqual(1)
}

describe("TransferState", () => {
  it.prop(
    "invariants hold over time-ordered event sequences",
    [start, timeline],
    ([{ createdAt, ttl }, events]) => {
      checkInvariants(run(initial(createdAt, ttl), events))
    },
  )

  it.prop(
    "invariants hold over arbitrary Schema-generated events, from any state",
    [TransferState.TransferState, Schema.Array(TransferState.Event)],
    ([state, events]) => {
      checkInvariants(run(state, events))
    },
  )

  it("has no NaN times to compare (regression: seed 536232767 generated expiresAt NaN)", () => {
    expect(Schema.is(TransferState.TransferState)({ status: "aborted", expiresAt: Number.NaN })).toBe(false)
    expect(Schema.is(TransferState.Event)({ _tag: "Tick", at: Number.POSITIVE_INFINITY })).toBe(false)
  })

  it.prop("a Join succeeds at most once", [start, timeline], ([{ createdAt, ttl }, events]) => {
    const joinsOnly = events.map((e): Event => ({ _tag: "Join", at: e.at }))
    const ok = run(initial(createdAt, ttl), joinsOnly).filter((s) => Either.isRight(s.result))
    expect(ok.length).toBe(joinsOnly.length > 0 && joinsOnly[0]!.at < createdAt + ttl ? 1 : 0)
  })

  it("walks the happy path pending -> ready -> active -> completed", () => {
    const events: ReadonlyArray<Event> = [
      { _tag: "Join", at: 10 },
      { _tag: "Activate", at: 20, leaseMs: 1_000 },
      { _tag: "Complete", at: 500 },
    ]
    const statuses = run(initial(0, 100), events).map((s) => Either.map(s.result, (x) => x.status))
    expect(statuses).toEqual([Either.right("ready"), Either.right("active"), Either.right("completed")])
  })

  it("extends the deadline on Activate, never shortens it", () => {
    const ready: State = { status: "ready", expiresAt: 100 }
    expect(step(ready, { _tag: "Activate", at: 50, leaseMs: 1_000 })).toEqual(
      Either.right({ status: "active", expiresAt: 1_050 }),
    )
    expect(step(ready, { _tag: "Activate", at: 50, leaseMs: 10 })).toEqual(
      Either.right({ status: "active", expiresAt: 100 }),
    )
  })

  it("refuses a second claim, early completion and anything after the end", () => {
    const pending = initial(0, 100)
    const ready = Either.getOrThrow(step(pending, { _tag: "Join", at: 1 }))
    expect(step(ready, { _tag: "Join", at: 2 })).toEqual(Either.left("already_claimed"))
    expect(step(ready, { _tag: "Complete", at: 2 })).toEqual(Either.left("not_allowed"))
    expect(step(pending, { _tag: "Activate", at: 2, leaseMs: 0 })).toEqual(Either.left("not_allowed"))
    const aborted = Either.getOrThrow(step(ready, { _tag: "Abort", at: 3 }))
    expect(aborted.status).toBe("aborted")
    expect(step(aborted, { _tag: "Join", at: 4 })).toEqual(Either.left("final"))
    expect(step(aborted, { _tag: "Tick", at: 1_000 })).toEqual(Either.right(aborted))
  })

  it("expires exactly at the deadline, not before", () => {
    const pending = initial(0, 100)
    expect(step(pending, { _tag: "Join", at: 99 })).toEqual(Either.right({ status: "ready", expiresAt: 100 }))
    expect(step(pending, { _tag: "Join", at: 100 })).toEqual(Either.left("expired"))
    expect(step(pending, { _tag: "Abort", at: 100 })).toEqual(Either.left("expired"))
    expect(TransferState.observe(pending, 100).status).toBe("expired")
  })
})
