import type { Checkpoint, Ids, Manifest } from "@p2pal/domain"
import { type CheckpointIo, LocalIoFailed, PeerFailed } from "@p2pal/domain/Errors"
import { Cause, Clock, Duration, Effect, Exit, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { Checkpoints } from "./Checkpoints.js"
import * as CheckpointSaves from "./CheckpointSaves.js"
import { ioError, isAbsent, lstat } from "./Io.js"
import { finishPlacing } from "./Targets.js"

/** Where the receiver keeps its checkpoint; without one, a failed transfer leaves nothing behind. */
export interface RecvCheckpointOptions {
  readonly store: Checkpoints
  readonly ttl: Duration.Duration
}

/** What the receiver holds of one file, updated as its bytes reach the disk. */
export interface FileState {
  /** The temporary file's name, next to the target. */
  temp: string | undefined
  /** Bytes fsynced: a prefix of the file, and below its size until it is verified. */
  durable: number
  verified: boolean
}

export interface Tracker {
  readonly files: ReadonlyMap<number, FileState>
  /** Files verified and moved into place in an earlier session of this transfer: `out` has them because of it. */
  readonly placedBefore: ReadonlySet<number>
  /** What to tell the sender (ResumeFrom): per file, bytes already here; its size when it is verified. */
  readonly resumeFrom: ReadonlyArray<readonly [index: number, offset: number]>
  readonly bytesHere: number
  /** Removes the temporary files of an earlier session that cannot be continued. */
  readonly discardStale: Effect.Effect<void, LocalIoFailed>
  readonly save: Effect.Effect<void, CheckpointIo>
  readonly remove: Effect.Effect<void, CheckpointIo>
}

/**
 * A file's bytes on disk as the checkpoint may record them: never all of them before the file is verified,
 * so that its size in ResumeFrom keeps meaning "verified, send nothing"; the sender then sends the last byte again.
 */
export const durableOf = (bytes: number, size: number) => Math.max(0, Math.min(bytes, size - 1))

/** A file's state that notes its index in `changed` whenever a field is set: a save appends only those. */
const tracked = (index: number, changed: Set<number>): FileState =>
  new Proxy<FileState>(
    { temp: undefined, durable: 0, verified: false },
    {
      set: (state, field, value) => {
        changed.add(index)
        return Reflect.set(state, field, value)
      },
    },
  )

/**
 * The transfer stopped in a way a resume can build on: Ctrl+C, the peer or the network went away, or
 * the receiver's disk filled up (what is on it is sound; the resume goes on once there is room).
 */
export const resumable = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) &&
  (Cause.isInterruptedOnly(exit.cause) ||
    Option.exists(
      Cause.failureOption(exit.cause),
      (e) =>
        (e instanceof PeerFailed && e.lost === true) || (e instanceof LocalIoFailed && e.diskFull === true),
    ))

const TempSuffix = ".p2pal-part"

/**
 * The start of every temporary name for `target`. A backslash, a character of a Linux name (`a\b`),
 * becomes `_`: the checkpoint keeps temporary names plain on every platform.
 */
const tempPrefix = (target: string) => `.${path.basename(target).replaceAll("\\", "_")}.`

/** Temporary names count up from a random start: unique in this process, and unlikely to meet another's. */
let nextTemp = randomBytes(4).readUInt32BE()

/** A fresh temporary name for `target`'s bytes, hidden, next to it. */
export const tempName = (target: string) =>
  `${tempPrefix(target)}${(nextTemp++ >>> 0).toString(16).padStart(8, "0")}${TempSuffix}`

/** Whether `name` is one `tempName` gives `target`. */
const isTempOf = (name: string, target: string) => {
  const prefix = tempPrefix(target)
  const middle = name.slice(prefix.length, name.length - TempSuffix.length)
  return name.startsWith(prefix) && name.endsWith(TempSuffix) && /^[0-9a-f]{8}$/.test(middle)
}

/** Same entries in the same order; a file the sender marked changed may have a new size. */
const sameEntries = (before: Manifest.Manifest, now: Manifest.Manifest, changed: ReadonlySet<number>) =>
  before.entries.length === now.entries.length &&
  before.entries.every((entry, i) => {
    const other = now.entries[i]!
    if (entry._tag !== other._tag || entry.path !== other.path) return false
    return entry._tag !== "file" || other._tag !== "file" || entry.size === other.size || changed.has(i)
  })

/**
 * The receiver's checkpoint for a transfer the manifest names (`transfer`, hostile like the rest of it).
 * If this receiver holds one for the same entries and `out`, it keeps what still stands on disk: verified
 * files still in place, temporary files at least as long as their durable bytes; everything else starts
 * from zero. One it holds for other entries is another transfer's (an honest `send --resume` offers the
 * same entries again): refused, rather than have this one replace it and leave its files behind.
 */
export const open = (
  options: RecvCheckpointOptions,
  transferId: Ids.TransferId,
  manifest: Manifest.Manifest,
  out: string,
  targetOf: (entry: Manifest.Entry) => string,
) =>
  Effect.gen(function* () {
    const changed = new Set(manifest.changed ?? [])
    const loaded = yield* options.store.load(transferId, "recv").pipe(
      // Damaged or unreadable: start over; the first save replaces it.
      Effect.orElseSucceed(() => undefined),
    )
    if (loaded?.direction === "recv" && !sameEntries(loaded.manifest, manifest, changed))
      return yield* new PeerFailed({
        message: `the sender named transfer ${transferId}, of which this receiver keeps a checkpoint for other files`,
      })
    const previous = loaded?.direction === "recv" && loaded.out === out ? loaded : undefined
    const before = new Map((previous?.files ?? []).map((f) => [f.index, f]))
    const listed = new Map<string, ReadonlyArray<string>>()
    const orphansOf = (target: string) =>
      Effect.gen(function* () {
        const dir = path.dirname(target)
        const names =
          listed.get(dir) ??
          (yield* Effect.tryPromise({
            // Not there yet: nothing was ever written into it.
            try: () => fs.readdir(dir).catch((e) => (isAbsent(e) ? [] : Promise.reject(e))),
            catch: ioError(dir),
          }))
        listed.set(dir, names)
        return names.filter((name) => isTempOf(name, target)).map((name) => path.join(dir, name))
      })
    const files = new Map<number, FileState>()
    const changedSinceSave = new Set<number>()
    const placedBefore = new Set<number>()
    const stale: Array<string> = []
    for (const [index, entry] of manifest.entries.entries()) {
      if (entry._tag !== "file") continue
      const state = tracked(index, changedSinceSave)
      files.set(index, state)
      const kept = before.get(index)
      if (kept === undefined) continue
      const target = targetOf(entry)
      if (kept.verified) {
        const temp = kept.temp === undefined ? undefined : path.join(path.dirname(target), kept.temp)
        const ours =
          temp === undefined ||
          (yield* Effect.tryPromise({ try: () => finishPlacing(temp, target), catch: ioError(target) }))
        if (!ours && temp !== undefined) stale.push(temp)
        const stat = ours ? yield* lstat(target) : undefined
        // Replaced only when the sender says it changed: a copy edited here since is the user's now.
        if (stat?.isFile() === true && (changed.has(index) || stat.size === entry.size)) {
          placedBefore.add(index)
          if (!changed.has(index)) Object.assign(state, { durable: entry.size, verified: true })
        }
      } else if (kept.temp !== undefined) {
        const temp = path.join(path.dirname(target), kept.temp)
        const stat = yield* lstat(temp)
        if (!changed.has(index) && kept.durable > 0 && stat?.isFile() === true && stat.size >= kept.durable)
          Object.assign(state, { temp: kept.temp, durable: kept.durable })
        else stale.push(temp)
      }
      // A crash between creating a temporary file and the next save leaves one the checkpoint never named.
      if (!state.verified && state.durable === 0) stale.push(...(yield* orphansOf(target)))
    }
    const resumeFrom = [...files].flatMap(([index, s]) =>
      s.verified || s.durable > 0 ? [[index, s.durable] as const] : [],
    )
    const createdAt = previous?.createdAt ?? (yield* Clock.currentTimeMillis)
    const stateOf = (index: number): Checkpoint.ReceivedFile => {
      const s = files.get(index)!
      return {
        index,
        ...(s.temp === undefined ? {} : { temp: s.temp }),
        durable: s.durable,
        verified: s.verified,
      }
    }
    const { save, remove } = yield* CheckpointSaves.make({
      store: options.store,
      transferId,
      direction: "recv",
      ttl: options.ttl,
      changed: changedSinceSave,
      whole: (times) => ({
        direction: "recv",
        version: 1,
        transferId,
        createdAt,
        ...times,
        manifest,
        out,
        files: [...files.keys()].map(stateOf),
      }),
      update: (times, indices) => ({ direction: "recv", ...times, files: indices.map(stateOf) }),
    })
    return {
      files,
      placedBefore,
      resumeFrom,
      bytesHere: resumeFrom.reduce((sum, [, offset]) => sum + offset, 0),
      discardStale: Effect.forEach(
        stale,
        (p) => Effect.tryPromise({ try: () => fs.rm(p, { force: true }), catch: ioError(p) }),
        { concurrency: "unbounded", discard: true },
      ),
      save,
      remove,
    } satisfies Tracker
  })
