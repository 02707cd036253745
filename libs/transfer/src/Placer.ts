import type { CheckpointIo, LocalIoFailed } from "@p2pal/domain/Errors"
import { type Cause, Deferred, Duration, Effect, Fiber, FiberId, type Scope } from "effect"
import * as fs from "node:fs/promises"
import { ioError, writeAll } from "./Io.js"
import type * as RecvCheckpoint from "./RecvCheckpoint.js"
import { place } from "./Targets.js"

/** A file received in full and verified, waiting to be synced, recorded and placed. */
export interface Verified {
  /**
   * Its temporary file, open and written; or, for a small file, its bytes, held until the placer writes
   * them to the temporary file: the receiver then waits for no file-system call per small file.
   */
  readonly content: fs.FileHandle | Uint8Array
  /** The temporary file's path. */
  readonly temp: string
  readonly target: string
  readonly size: number
  /** Replace a file already at `target` (otherwise placing fails rather than clobber it). */
  readonly overwrite: boolean
  /** Its record in the receiver's checkpoint, if there is one. */
  readonly state: RecvCheckpoint.FileState | undefined
}

/** When a group of verified files is placed: once it holds this many files or bytes, or its first waited this long. */
export interface Limits {
  readonly files: number
  readonly bytes: number
  readonly delay: Duration.Duration
}

export const DefaultLimits: Limits = { files: 256, bytes: 16 * 1024 * 1024, delay: Duration.millis(200) }

/**
 * Syncs running at once: the file system commits concurrent ones together (one journal commit for
 * many), so a group of small files is made durable in a fraction of one sync per file. Twice the
 * CLI's thread pool (apps/cli/start.cjs).
 */
const Concurrency = 32

/** Groups placing at once, the one being filled aside: beyond it the receiver waits. */
const GroupsInFlight = 2

/** Makes the file's bytes durable in its temporary file, writing them there first if they were held. */
const durable = async ({ content, temp }: Verified) => {
  if (!(content instanceof Uint8Array)) return content.sync()
  const handle = await fs.open(temp, "wx", 0o644)
  try {
    await writeAll(handle, content, 0)
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Places a group of verified files: syncs them all, waits for `after` (the group before, which saves and
 * places first while this one syncs), records them all verified under their temporary names in ONE
 * checkpoint save, then moves them into place. Whenever the receiver stops (a crash included), a
 * resume finds each file either recorded verified (and finishes its move, see RecvCheckpoint.open) or not
 * recorded at all (and receives it again). Every handle is closed, and on a failure the temporary files
 * not placed are removed and forgotten. Uninterruptible: a stop waits for the group rather than tear it.
 */
export const placeGroup = (
  group: ReadonlyArray<Verified>,
  save: Effect.Effect<void, CheckpointIo> | undefined,
  after: Effect.Effect<void> = Effect.void,
): Effect.Effect<void, LocalIoFailed | CheckpointIo> => {
  if (group.length === 0) return after
  const placed = new Set<Verified>()
  const each = <E>(f: (file: Verified) => Effect.Effect<void, E>) =>
    Effect.forEach(group, f, { concurrency: Concurrency, discard: true })
  return Effect.gen(function* () {
    yield* each((file) => Effect.tryPromise({ try: () => durable(file), catch: ioError(file.target) }))
    yield* after
    if (save !== undefined) {
      for (const { state, size } of group)
        if (state !== undefined) Object.assign(state, { durable: size, verified: true })
      yield* save
    }
    yield* each((file) =>
      Effect.tryPromise({
        try: () => place(file.temp, file.target, file.overwrite),
        catch: ioError(file.target),
      }).pipe(
        Effect.map(() => {
          placed.add(file)
          // The next save drops the temporary name.
          if (file.state !== undefined) file.state.temp = undefined
        }),
      ),
    )
  }).pipe(
    Effect.ensuring(
      each(({ content }) =>
        content instanceof Uint8Array ? Effect.void : Effect.ignore(Effect.tryPromise(() => content.close())),
      ),
    ),
    Effect.tapError(() =>
      each((file) => {
        if (placed.has(file)) return Effect.void
        if (file.state !== undefined)
          Object.assign(file.state, { temp: undefined, durable: 0, verified: false })
        return Effect.ignore(Effect.tryPromise(() => fs.rm(file.temp, { force: true })))
      }),
    ),
    // Even when this group fails first, it ends after the one before: the last group is done last.
    Effect.ensuring(after),
    Effect.uninterruptible,
  )
}

export interface Placer {
  /** Waits while enough groups are being placed; fails if one of them failed. */
  readonly room: Effect.Effect<void, LocalIoFailed | CheckpointIo>
  /** Takes the file over, its handle included: from now on the placer closes it (or writes its bytes). */
  readonly add: (file: Verified) => Effect.Effect<void>
  /** Places every file added so far; fails if any group failed. */
  readonly drain: Effect.Effect<void, LocalIoFailed | CheckpointIo>
}

/**
 * Places verified files in groups, in the background, while the next files arrive: one sync each, but
 * side by side, and one checkpoint save per group instead of one per file. When the scope closes (a
 * failure or Ctrl+C included), the files added are placed before it is closed: a stop loses none of them.
 */
export const make = (
  save: Effect.Effect<void, CheckpointIo> | undefined,
  limits: Limits = DefaultLimits,
): Effect.Effect<Placer, never, Scope.Scope> =>
  Effect.gen(function* () {
    let pending: Array<Verified> = []
    let pendingBytes = 0
    /** Counts the groups begun, so a timer for one already placed does nothing. */
    let generation = 0
    let timer: Fiber.RuntimeFiber<void> | undefined
    let closing = false
    /** Groups being placed, oldest first; each saves after the one before, so the last is done last. */
    const inFlight: Array<Deferred.Deferred<void>> = []
    let failure: Cause.Cause<LocalIoFailed | CheckpointIo> | undefined
    const takePending = () => {
      const group = pending
      pending = []
      pendingBytes = 0
      generation++
      return group
    }
    // Daemons, awaited by the finalizer below rather than by the scope, which would not wait for one begun
    // while it closes. Uninterruptible: a group taken from `pending` is always handed to a fiber that places it.
    const flush = Effect.suspend(() => {
      if (pending.length === 0 || closing) return Effect.void
      const group = takePending()
      const before = inFlight.at(-1)
      const done = Deferred.unsafeMake<void>(FiberId.none)
      inFlight.push(done)
      return Effect.forkDaemon(
        placeGroup(group, save, before === undefined ? Effect.void : Deferred.await(before)).pipe(
          Effect.tapErrorCause((cause) => Effect.sync(() => void (failure ??= cause))),
          Effect.ensuring(
            Effect.suspend(() => {
              inFlight.splice(inFlight.indexOf(done), 1)
              return Deferred.succeed(done, undefined)
            }),
          ),
        ),
      )
    }).pipe(Effect.asVoid, Effect.uninterruptible)
    const failed = Effect.suspend(() => (failure === undefined ? Effect.void : Effect.failCause(failure)))
    const last = Effect.suspend(() => {
      const group = inFlight.at(-1)
      return group === undefined ? Effect.void : Deferred.await(group)
    })
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        closing = true
        // Not waited for: woken, it would find the placer closing and do nothing.
        if (timer !== undefined) yield* Fiber.interruptFork(timer)
        yield* last
        yield* Effect.ignore(placeGroup(takePending(), save))
      }),
    )
    return {
      room: Effect.gen(function* () {
        while (inFlight.length >= GroupsInFlight) yield* Deferred.await(inFlight[0]!)
        yield* failed
      }),
      add: (file) =>
        Effect.suspend(() => {
          pending.push(file)
          pendingBytes += file.size
          if (pending.length >= limits.files || pendingBytes >= limits.bytes) return flush
          if (pending.length > 1) return Effect.void
          const first = generation
          // A timer from a group placed since would do nothing when it fires: stopped rather than left running.
          const stale = timer === undefined ? Effect.void : Fiber.interruptFork(timer)
          return Effect.zipRight(
            stale,
            Effect.map(
              Effect.forkDaemon(
                Effect.zipRight(
                  Effect.sleep(limits.delay),
                  Effect.suspend(() => (generation === first ? flush : Effect.void)),
                ),
              ),
              (fiber) => void (timer = fiber),
            ),
          )
        }),
      drain: Effect.gen(function* () {
        yield* flush
        yield* last
        yield* failed
      }),
    } satisfies Placer
  })
