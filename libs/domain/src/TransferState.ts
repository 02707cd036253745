import { Either, Schema } from "effect"

/**
 * The life of a transfer on the signal app:
 * pending (code issued) -> ready (receiver claimed it) -> active (both sockets up) -> completed,
 * any non-final -> aborted, and any non-final -> expired once its deadline passes.
 */
export const Status = Schema.Literal("pending", "ready", "active", "completed", "aborted", "expired")
export type Status = typeof Status.Type

export const FinalStatuses: ReadonlySet<Status> = new Set(["completed", "aborted", "expired"])
export const isFinal = (status: Status): boolean => FinalStatuses.has(status)

export const TransferState = Schema.Struct({
  status: Status,
  /** Epoch milliseconds after which the transfer is expired, whatever happens. */
  expiresAt: Schema.Finite,
})
export type TransferState = typeof TransferState.Type

const At = { at: Schema.Finite }

export const Event = Schema.Union(
  Schema.TaggedStruct("Join", At),
  /** Both sides are connected: the deadline becomes `at + leaseMs` so a long transfer is not cut off. */
  Schema.TaggedStruct("Activate", { ...At, leaseMs: Schema.Finite.pipe(Schema.nonNegative()) }),
  Schema.TaggedStruct("Complete", At),
  Schema.TaggedStruct("Abort", At),
  /** Time passing with nothing else happening. */
  Schema.TaggedStruct("Tick", At),
)
export type Event = typeof Event.Type

export type Rejection = "expired" | "already_claimed" | "final" | "not_allowed"

export const initial = (createdAt: number, ttlMs: number): TransferState => ({
  status: "pending",
  expiresAt: createdAt + ttlMs,
})

/** Applies the deadline alone: the state as of `at`. */
export const observe = (state: TransferState, at: number): TransferState =>
  !isFinal(state.status) && at >= state.expiresAt ? { ...state, status: "expired" } : state

/**
 * One transition. Expiry wins over every event; a final state never changes; a transfer is claimed
 * (Join) at most once.
 */
export const step = (state: TransferState, event: Event): Either.Either<TransferState, Rejection> => {
  const now = observe(state, event.at)
  if (event._tag === "Tick") return Either.right(now)
  if (now.status === "expired") return Either.left("expired")
  if (isFinal(now.status)) return Either.left("final")
  switch (event._tag) {
    case "Join":
      return now.status === "pending"
        ? Either.right({ ...now, status: "ready" })
        : Either.left("already_claimed")
    case "Activate":
      return now.status === "ready" || now.status === "active"
        ? Either.right({ status: "active", expiresAt: Math.max(now.expiresAt, event.at + event.leaseMs) })
        : Either.left("not_allowed")
    case "Complete":
      return now.status === "active"
        ? Either.right({ ...now, status: "completed" })
        : Either.left("not_allowed")
    case "Abort":
      return Either.right({ ...now, status: "aborted" })
  }
}
