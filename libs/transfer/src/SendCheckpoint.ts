import type { Ids } from "@p2pal/domain"
import { Clock, type Duration, Effect } from "effect"
import type { Checkpoints } from "./Checkpoints.js"
import * as CheckpointSaves from "./CheckpointSaves.js"
import type { AckedFiles } from "./Sender.js"
import type { Sources } from "./Sources.js"

/** Saves while acknowledgements arrive at most this often: each save syncs the journal to disk. */
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
  /** Runs once the checkpoint is on disk, so the user may be told of it. */
  onKept: Effect.Effect<void>,
) =>
  Effect.gen(function* () {
    const changedSinceSave = new Set<number>()
    /** The acknowledged bytes per file, noting which changed: a save appends only those. */
    const bytes = new (class extends Map<number, number> {
      override set(index: number, acked: number) {
        changedSinceSave.add(index)
        return super.set(index, acked)
      }
    })()
    let savedAt = yield* Clock.currentTimeMillis
    const saves = yield* CheckpointSaves.make({
      store,
      transferId,
      direction: "send",
      ttl,
      changed: changedSinceSave,
      whole: (times) => ({
        direction: "send",
        version: 1,
        transferId,
        createdAt,
        ...times,
        manifest: sources.manifest,
        files: [...sources.files].map(([index, source]) => ({
          index,
          source: source.path,
          mtimeMs: source.mtimeMs,
          acked: bytes.get(index) ?? 0,
        })),
      }),
      update: (times, indices) => ({
        direction: "send",
        ...times,
        files: indices.map((index) => ({ index, acked: bytes.get(index) ?? 0 })),
      }),
    })
    const save = Clock.currentTimeMillis.pipe(
      Effect.tap((now) => (savedAt = now)),
      Effect.zipRight(saves.save),
    )
    /**
     * Whether the checkpoint is on disk. It is written once the receiver has accepted: an attempt that
     * moved nothing (an expired, burned or declined code, a stop while waiting) leaves nothing to resume.
     * A save that fails leaves none, and the transfer goes on without one.
     */
    let kept = false
    const keep = Effect.suspend(() =>
      kept
        ? Effect.void
        : save.pipe(
            Effect.zipRight(Effect.sync(() => (kept = true))),
            Effect.zipRight(onKept),
            Effect.ignore,
          ),
    )
    const update = Effect.suspend(() => (kept ? Effect.ignore(save) : Effect.void))
    const acked: AckedFiles = {
      bytes,
      accepted: keep,
      onChange: Effect.gen(function* () {
        // A save that fails leaves the last one, which is behind but sound: the receiver's offsets rule.
        if ((yield* Clock.currentTimeMillis) - savedAt >= SaveEveryMs) yield* update
      }),
    }
    return {
      acked,
      /** Writes it now: a resumed transfer's checkpoint exists already, and stays kept from the start. */
      keep,
      /** Brings a kept checkpoint up to date. */
      update,
      remove: saves.remove,
    }
  })
