import { Checkpoint } from "@p2pal/domain"
import { CheckpointIo } from "@p2pal/domain/Errors"
import { Effect, Either } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"

/**
 * The files behind one checkpoint, as the store writes and reads them: the checkpoint written whole
 * (`<id>.<direction>.json`) and its journal (`<id>.<direction>.journal`), one line per save since.
 */

export const isMissing = (e: unknown) => (e as NodeJS.ErrnoException).code === "ENOENT"

export const ioError = (file: string) => (e: unknown) =>
  new CheckpointIo({ path: file, detail: e instanceof Error ? e.message : String(e) })

export const attempt = <A>(file: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: ioError(file) })

/** Turns "no such file" into `value`: another process may remove a file at any moment. */
export const missingAs =
  <B>(value: B) =>
  (e: unknown): B | Promise<never> =>
    isMissing(e) ? value : Promise.reject(e)

/** Removes `file`; false if it was not there. */
export const unlink = (file: string) =>
  attempt(file, () => fs.unlink(file).then(() => true, missingAs(false)))

/** Opens `file`, runs `use` on the handle, and closes it whatever happens. */
const withHandle = <A>(
  file: string,
  open: () => Promise<fs.FileHandle>,
  use: (handle: fs.FileHandle) => Promise<A>,
) =>
  Effect.acquireUseRelease(
    attempt(file, open),
    (handle) => attempt(file, () => use(handle)),
    (handle) => Effect.promise(() => handle.close()),
  )

/** Makes the directory's entries (a rename, a new or removed file) durable. */
const syncDir = (dir: string) =>
  withHandle(
    dir,
    () => fs.open(dir, "r"),
    (handle) => handle.sync(),
  )

export const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const newline = Buffer.from("\n")

/** The checkpoint written whole, as a journal follows it. */
export interface Base {
  readonly checkpoint: Checkpoint.Checkpoint
  readonly bytes: number
  readonly sha256: string
}

/**
 * Replaces `target` with `checkpoint` whole and removes `journal`, so that even after a crash the pair
 * holds either the old checkpoint or this one: a journal left next to the new one names the old one, and
 * loading ignores it.
 */
export const writeBase = (target: string, journal: string, checkpoint: Checkpoint.Checkpoint) =>
  Effect.gen(function* () {
    const dir = path.dirname(target)
    const temp = `${target}.tmp-${randomBytes(8).toString("hex")}`
    const bytes = Checkpoint.encodeJson(checkpoint)
    yield* attempt(dir, () => fs.mkdir(dir, { recursive: true, mode: 0o700 }))
    yield* Effect.gen(function* () {
      // Durable before it becomes visible: a crash after the rename must not leave an empty file behind.
      yield* withHandle(
        temp,
        () => fs.open(temp, "wx", 0o600),
        async (handle) => {
          await handle.writeFile(bytes)
          await handle.sync()
        },
      )
      yield* attempt(target, () => fs.rename(temp, target))
    }).pipe(Effect.onError(() => Effect.promise(() => fs.rm(temp, { force: true }))))
    yield* unlink(journal)
    // The rename and the removal are durable only once the directory is.
    yield* syncDir(dir)
    return { checkpoint, bytes: bytes.length, sha256: sha256(bytes) } satisfies Base
  })

/**
 * Appends `line` to `journal` and syncs it. The first append after `writeBase` starts the journal with
 * its head naming `base`, replacing any leftover, and syncs the directory too, or a crash could lose the
 * new file with what it holds. Returns the bytes written.
 */
export const appendLine = (journal: string, base: Base | undefined, line: Uint8Array) =>
  Effect.gen(function* () {
    const head = base === undefined ? [] : [Checkpoint.encodeJournalHead(base.sha256), newline]
    const bytes = Buffer.concat([...head, line, newline])
    yield* withHandle(
      journal,
      () => fs.open(journal, base === undefined ? "a" : "w", 0o600),
      async (handle) => {
        await handle.writeFile(bytes)
        await handle.datasync()
      },
    )
    if (base !== undefined) yield* syncDir(path.dirname(journal))
    return bytes.length
  })

/**
 * `base` with its journal replayed: nothing if there is none, if its head is torn, or if it names another
 * checkpoint (what a crash during `writeBase` leaves). A torn last line is a crash during an append, and
 * ignored; any other damage is returned, to be reported like a damaged checkpoint.
 */
export const replayJournal = (
  base: Checkpoint.Checkpoint,
  baseBytes: Uint8Array,
  journalBytes: Uint8Array | undefined,
): Either.Either<Checkpoint.Checkpoint, string> => {
  const lines: Array<Uint8Array> = []
  for (let start = 0, end = 0; journalBytes !== undefined; start = end + 1) {
    end = journalBytes.indexOf(0x0a, start)
    if (end < 0) break
    lines.push(journalBytes.subarray(start, end))
  }
  const [head, ...rest] = lines
  if (head === undefined) return Either.right(base)
  return Checkpoint.decodeJournalHead(head).pipe(
    Either.mapLeft((detail) => `journal line 1: ${detail}`),
    Either.flatMap((named) => {
      if (named !== sha256(baseBytes)) return Either.right(base)
      const updates: Array<Checkpoint.Update> = []
      for (const [i, line] of rest.entries()) {
        const update = Checkpoint.decodeUpdateJson(base, line)
        if (Either.isLeft(update)) return Either.left(`journal line ${i + 2}: ${update.left}`)
        updates.push(update.right)
      }
      return Either.right(Checkpoint.replay(base, updates))
    }),
  )
}
