import type { Checkpoint, Ids } from "@p2pal/domain"
import type { CheckpointIo } from "@p2pal/domain/Errors"
import { Clock, Duration, Effect } from "effect"
import type { Checkpoints, Journal } from "./Checkpoints.js"

/** When a save happened, and until when it keeps the transfer resumable. */
export interface Times {
  readonly updatedAt: number
  readonly expiresAt: number
}

export interface Saves {
  /**
   * The first save writes the checkpoint whole; each one after appends to its journal the files noted in
   * `changed` since. One at a time.
   */
  readonly save: Effect.Effect<void, CheckpointIo>
  /** Removes the checkpoint, if there is one; a save after this writes it whole again. */
  readonly remove: Effect.Effect<void, CheckpointIo>
}

/** The saves of one side's checkpoint, each costing what changed rather than the whole checkpoint. */
export const make = (options: {
  readonly store: Checkpoints
  readonly transferId: Ids.TransferId
  readonly direction: Checkpoint.Direction
  readonly ttl: Duration.Duration
  /** The indices of the files whose state changed since the last save; each save empties it. */
  readonly changed: Set<number>
  readonly whole: (times: Times) => Checkpoint.Checkpoint
  readonly update: (times: Times, files: ReadonlyArray<number>) => Checkpoint.Update
}) =>
  Effect.map(Effect.makeSemaphore(1), (lock): Saves => {
    let journal: Journal | undefined
    return {
      save: lock.withPermits(1)(
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const times = { updatedAt: now, expiresAt: now + Duration.toMillis(options.ttl) }
          // Taken before any wait: a state that changes during the write is in the next save.
          const files = [...options.changed].sort((a, b) => a - b)
          options.changed.clear()
          if (journal !== undefined) return yield* journal.append(options.update(times, files))
          journal = yield* options.store.save(options.whole(times))
        }),
      ),
      remove: lock.withPermits(1)(
        Effect.suspend(() => {
          journal = undefined
          return options.store.remove(options.transferId, options.direction)
        }).pipe(
          Effect.asVoid,
          Effect.catchTag("CheckpointNotFound", () => Effect.void),
        ),
      ),
    }
  })
