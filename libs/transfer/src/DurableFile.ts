import type { CheckpointIo, LocalIoFailed } from "@p2pal/domain/Errors"
import { Effect, type Exit, Fiber, Option } from "effect"
import { constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { createHash } from "node:crypto"
import { absorbPrefix, type FileHash, Hasher } from "./Hasher.js"
import { ioError, withCleanup, writeAll } from "./Io.js"
import * as Placer from "./Placer.js"
import * as RecvCheckpoint from "./RecvCheckpoint.js"
import { WriteBatchBytes } from "./Wire.js"

/**
 * Bytes written between two background flushes of a file to disk; each one that completes moves the
 * checkpoint on, so it is also how much a crash may cost a resume.
 */
export const DurableBytes = 16 * 1024 * 1024

/** The file's record in the receiver's checkpoint: where it continues from, kept current as bytes reach the disk. */
export interface Checkpointed {
  readonly state: RecvCheckpoint.FileState
  readonly save: Effect.Effect<void, CheckpointIo>
}

export interface Options {
  /** Where the file goes once verified; its temporary file sits next to it. */
  readonly target: string
  /** The size the sender declared: the checkpoint never records all of it as durable before it is verified. */
  readonly size: number
  /** Replace a file already at `target` (otherwise placing fails rather than clobber it). */
  readonly overwrite: boolean
  /** A pipe's bytes: `size` is no bound on them, so they are never held in memory (see HeldBytes). */
  readonly pipe?: boolean | undefined
  /** Without one, any failure removes the temporary file; with one, a resumable stop keeps it. */
  readonly checkpoint?: Checkpointed | undefined
  /** Places the file with others, in the background; without one, `place` places it at once, on its own. */
  readonly placer?: Placer.Placer | undefined
}

/** One file being received, as `use` hands it out. */
export interface DurableFile {
  /** Bytes given so far, those a resume found on disk included: the file's length once they are written. */
  readonly received: number
  /** Bytes written to the file so far. */
  readonly written: number
  /**
   * Adds bytes after those received; writes them if they are the file's first, or once they reach the
   * end of a batch (every WriteBatchBytes of the file). True if it wrote.
   */
  readonly append: (bytes: Uint8Array) => Effect.Effect<boolean, LocalIoFailed | CheckpointIo>
  /** Writes the batch waiting, if any. True if it wrote. */
  readonly write: Effect.Effect<boolean, LocalIoFailed | CheckpointIo>
  /** Waits for the background flushes asked for so far; fails if one did. */
  readonly flushed: Effect.Effect<void, LocalIoFailed>
  /** SHA-256 of the bytes written. */
  readonly digest: Effect.Effect<Uint8Array>
  /**
   * Syncs the file, records it verified, then moves it onto the target (see Placer.placeGroup); with a
   * placer, hands it over for that and returns.
   */
  readonly place: Effect.Effect<void, LocalIoFailed | CheckpointIo>
  /** The sender skipped it: the checkpoint forgets it and the temporary file goes when `use` ends. */
  readonly discard: Effect.Effect<void>
}

/** A new temporary file, or for a resume the one holding `from` durable bytes, whose hash is rebuilt from disk. */
const openTemp = (temp: string, from: number, hasher: Hasher, hash: FileHash) =>
  Effect.tryPromise({
    try: async () => {
      if (from === 0) return fs.open(temp, "wx", 0o644)
      // Bytes past the durable ones may be torn by a crash: cut them, and hash the rest as it is on disk.
      const handle = await fs.open(temp, fsConstants.O_RDWR | fsConstants.O_NOFOLLOW)
      try {
        await handle.truncate(from)
        await absorbPrefix(hasher, hash, handle, from)
        return handle
      } catch (e) {
        await handle.close()
        throw e
      }
    },
    catch: ioError(temp),
  })

/**
 * Files up to this size, received whole in this session, are held in memory until verified, then handed
 * to the placer, which writes, syncs and places them in groups, in the background: a tree of small files
 * then costs the receive loop no file-system call per file. It bounds what the placer holds in memory.
 */
export const HeldBytes = 64 * 1024

/**
 * A small file held in memory (see HeldBytes): its bytes are copied out of the frames, so nothing they
 * share memory with is kept, and hashed as they come.
 */
const held = (options: Options & { readonly placer: Placer.Placer }, temp: string): DurableFile => {
  const { size, placer, checkpoint } = options
  const bytes = Buffer.allocUnsafe(size)
  const hash = createHash("sha256")
  let received = 0
  return {
    get received() {
      return received
    },
    get written() {
      return received
    },
    append: (chunk) =>
      Effect.sync(() => {
        // The receiver checks every frame against the declared size before it gets here.
        bytes.set(chunk, received)
        hash.update(chunk)
        received += chunk.length
        return true
      }),
    write: Effect.succeed(false),
    flushed: Effect.void,
    digest: Effect.sync(() => new Uint8Array(hash.digest())),
    place: Effect.gen(function* () {
      yield* placer.room
      // Named in the checkpoint only now: the placer creates the file before its save records it verified.
      if (checkpoint !== undefined) checkpoint.state.temp = path.basename(temp)
      yield* placer.add({
        content: bytes,
        temp,
        target: options.target,
        size,
        overwrite: options.overwrite,
        state: checkpoint?.state,
      })
    }),
    discard: Effect.sync(() => {
      if (checkpoint !== undefined) Object.assign(checkpoint.state, { temp: undefined, durable: 0 })
    }),
  }
}

/**
 * Runs `body` with the file for `options.target`, written to a hidden temporary name next to it and
 * moved into place only by `place`, once the caller has checked its SHA-256. With a checkpoint, a file
 * partly here continues from its durable bytes, and after Ctrl+C or a lost peer (`resumable`) the
 * temporary file stays, synced and recorded; otherwise, unless placed, it is removed when `body` ends.
 * Background flushes run on fibers of `body`'s scope: none outlives it.
 */
export const use = <A, E, R>(options: Options, body: (file: DurableFile) => Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const { target, size, checkpoint, placer } = options
    const state = checkpoint?.state
    const from = state?.durable ?? 0
    const temp = path.join(
      path.dirname(target),
      from > 0 && state?.temp !== undefined ? state.temp : RecvCheckpoint.tempName(target),
    )
    if (placer !== undefined && !options.pipe && from === 0 && size <= HeldBytes)
      return yield* Effect.scoped(body(held({ ...options, placer }, temp)))
    if (state !== undefined) state.temp = path.basename(temp)
    const hasher = yield* Hasher
    const hash = hasher.start(size)
    let received = from
    let written = from
    /** The placer (or placeGroup) has the file and its handle: it places it, or removes it if that fails. */
    let handedOver = false

    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        const handle = yield* openTemp(temp, from, hasher, hash)
        const run = Effect.gen(function* () {
          const scope = yield* Effect.scope
          let batch: Array<Uint8Array> = []
          // The kernel would keep the whole file dirty until the final fsync and then flush it all at once
          // (about 0.5 s per GiB here, with nothing else left to overlap): flushing as the file grows keeps
          // that tail short. Each flush waits for the one before, so `flushing` is the last and fails if any did.
          let flushing: Fiber.RuntimeFiber<void, LocalIoFailed> | undefined
          let flushRequestedAt = from
          /** Bytes the background flushes have made durable so far. */
          let synced = from
          const flushed = Effect.suspend(() => (flushing === undefined ? Effect.void : Fiber.join(flushing)))
          /** A background flush that failed fails the next write, rather than only the final sync. */
          const flushFailure = Effect.suspend(() =>
            flushing === undefined
              ? Effect.void
              : Effect.flatMap(
                  Fiber.poll(flushing),
                  Option.match({ onNone: () => Effect.void, onSome: (exit) => exit }),
                ),
          )
          const flushUpTo = (upTo: number) =>
            Effect.tryPromise({ try: () => handle.datasync(), catch: ioError(target) }).pipe(
              Effect.map(() => void (synced = upTo)),
              // Interrupting a flush (the scope closing) waits for it: nothing touches the file after that.
              Effect.uninterruptible,
            )
          const write = Effect.gen(function* () {
            if (batch.length === 0) return false
            yield* flushFailure
            // One contiguous copy into recycled memory: a single write, and a single block for the hashing thread.
            const block = hasher.allocate(received - written)
            let at = 0
            for (const b of batch) {
              block.set(b, at)
              at += b.length
            }
            batch = []
            yield* Effect.tryPromise({ try: () => writeAll(handle, block, written), catch: ioError(target) })
            written = received
            hash.absorb([block])
            if (written - flushRequestedAt >= DurableBytes) {
              flushRequestedAt = written
              const before = flushing
              flushing = yield* Effect.forkIn(
                Effect.zipRight(before === undefined ? Effect.void : Fiber.join(before), flushUpTo(written)),
                scope,
              )
            }
            const durable = RecvCheckpoint.durableOf(synced, size)
            if (checkpoint !== undefined && durable > checkpoint.state.durable) {
              checkpoint.state.durable = durable
              yield* checkpoint.save
            }
            return true
          })
          const notYet = Effect.succeed(false)
          const file: DurableFile = {
            get received() {
              return received
            },
            get written() {
              return written
            },
            append: (bytes) => {
              batch.push(bytes)
              received += bytes.length
              // The first bytes go to disk at once, so a transfer's first file shows them without waiting
              // for a whole batch; the batches after them still end every WriteBatchBytes of the file.
              const batches = (bytes: number) => Math.floor((bytes - from) / WriteBatchBytes)
              return written === from || batches(received) > batches(written) ? write : notYet
            },
            write,
            flushed,
            digest: hash.digest,
            place: Effect.gen(function* () {
              yield* flushed
              const verified = { content: handle, temp, target, size, overwrite: options.overwrite, state }
              if (placer === undefined) {
                handedOver = true
                return yield* Placer.placeGroup([verified], checkpoint?.save)
              }
              yield* placer.room
              // Taken over whole or not at all: from here on the placer closes the handle and places the file.
              yield* Effect.uninterruptible(
                Effect.suspend(() => {
                  handedOver = true
                  return placer.add(verified)
                }),
              )
            }),
            discard: Effect.sync(() => {
              if (state !== undefined) Object.assign(state, { temp: undefined, durable: 0 })
            }),
          }
          return yield* body(file)
        }).pipe(Effect.scoped)

        const close = (exit: Exit.Exit<unknown, unknown>) => {
          if (handedOver) return Effect.void
          const keep = checkpoint !== undefined && RecvCheckpoint.resumable(exit)
          return Effect.gen(function* () {
            if (keep)
              yield* Effect.tryPromise(() => handle.datasync()).pipe(
                Effect.match({
                  onSuccess: () => void (checkpoint.state.durable = RecvCheckpoint.durableOf(written, size)),
                  // Not synced: the durable bytes recorded earlier are still a sound prefix.
                  onFailure: () => undefined,
                }),
              )
            yield* Effect.tryPromise({ try: () => handle.close(), catch: ioError(temp) })
            if (!keep)
              yield* Effect.tryPromise({ try: () => fs.rm(temp, { force: true }), catch: ioError(temp) })
            // Not saved: the checkpoint on disk still holds an earlier, smaller prefix of the file.
            if (keep) yield* Effect.ignore(checkpoint.save)
          })
        }
        return yield* withCleanup(restore(run), close)
      }),
    )
  })
