import type { Ids } from "@p2pal/domain"
import { Clock, Duration, Effect } from "effect"
import type { Checkpoints } from "./Checkpoints.js"
import type { AckedFiles } from "./Sender.js"
import type { Sources } from "./Sources.js"

/** Saves while acknowledgements arrive at most this often: each save syncs two files to disk. */
const SaveEveryMs = 1000

/**
 * The sender's checkpoint of one transfer: where each file comes from, its modification time, and what
 * the receiver confirmed of it. `send --resume` rebuilds the transfer from it; the receiver's own
 * checkpoint says where each file continues.
 */
export const make = (
  store: Checkpoints,
  transferId: Ids.TransferId,
  sources: Sources,
  ttl: Duration.Duration,
  createdAt: number,
) =>
  Effect.gen(function* () {
    const bytes = new Map<number, number>()
    let savedAt = yield* Clock.currentTimeMillis
    const save = Effect.gen(function* () {
      const now = (savedAt = yield* Clock.currentTimeMillis)
      yield* store.save({
        direction: "send",
        version: 1,
        transferId,
        createdAt,
        updatedAt: now,
        expiresAt: now + Duration.toMillis(ttl),
        manifest: sources.manifest,
        files: [...sources.files].map(([index, source]) => ({
          index,
          source: source.path,
          mtimeMs: source.mtimeMs,
          acked: bytes.get(index) ?? 0,
        })),
      })
    })
    const acked: AckedFiles = {
      bytes,
      onChange: Effect.gen(function* () {
        // A save that fails leaves the last one, which is behind but sound: the receiver's offsets rule.
        if ((yield* Clock.currentTimeMillis) - savedAt >= SaveEveryMs) yield* Effect.ignore(save)
      }),
    }
    return {
      acked,
      save,
      remove: store.remove(transferId, "send").pipe(Effect.catchTag("CheckpointNotFound", () => Effect.void)),
    }
  })
