import { Checkpoint, Ids } from "@p2pal/domain"
import { CheckpointCorrupt, CheckpointIo, CheckpointNotFound } from "@p2pal/domain/Errors"
import { Clock, Config, Effect, Either, Option, Schema } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

/** A checkpoint file as `list` finds it: usable, or damaged (and then never used). */
export type Listed = Either.Either<Checkpoint.Checkpoint, CheckpointCorrupt>

/** `<transferId>.<direction>.json`; transfer ids are [A-Za-z0-9_-], so the name stays inside the directory. */
const CheckpointName = /^(.+)\.(send|recv)\.json$/
/** What `save` writes before its rename; one left behind means a save died half way. */
const TempName = /\.(send|recv)\.json\.tmp-[0-9a-f]+$/
/** A temp file younger than this may belong to a save in progress in another p2pal process. */
const StaleTempMs = 60_000

const isTransferId = Schema.is(Ids.TransferId)

const parseName = (name: string) => {
  const match = CheckpointName.exec(name)
  const [, transferId, direction] = match ?? []
  return isTransferId(transferId) && Schema.is(Checkpoint.Direction)(direction)
    ? Option.some({ transferId, direction })
    : Option.none()
}

const isMissing = (e: unknown) => (e as NodeJS.ErrnoException).code === "ENOENT"

const ioError = (file: string) => (e: unknown) =>
  new CheckpointIo({ path: file, detail: e instanceof Error ? e.message : String(e) })

const attempt = <A>(file: string, f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: ioError(file) })

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

/** Turns "no such file" into `value`: another process may remove a file at any moment. */
const missingAs =
  <B>(value: B) =>
  (e: unknown): B | Promise<never> =>
    isMissing(e) ? value : Promise.reject(e)

/** Removes `file`; false if it was not there. */
const unlink = (file: string) => attempt(file, () => fs.unlink(file).then(() => true, missingAs(false)))

/** The directory's entries, sorted; none if it does not exist yet (nothing was ever saved). */
const readNames = (dir: string) =>
  attempt(dir, () => fs.readdir(dir).then((names) => names.sort(), missingAs([])))

/** The checkpoint store: one JSON file per transfer and direction, in one private directory. */
export interface Store {
  /** `<P2PAL_HOME or ~/.p2pal>/checkpoints`. */
  readonly dir: string
  /** Replaces the stored checkpoint so that, even after a crash, the file holds either the old one or this. */
  readonly save: (checkpoint: Checkpoint.Checkpoint) => Effect.Effect<void, CheckpointIo>
  readonly load: (
    transferId: Ids.TransferId,
    direction: Checkpoint.Direction,
  ) => Effect.Effect<Checkpoint.Checkpoint, CheckpointNotFound | CheckpointCorrupt | CheckpointIo>
  /** Every checkpoint file, by name; damaged ones are reported with their path, never used. */
  readonly list: () => Effect.Effect<ReadonlyArray<Listed>, CheckpointIo>
  /** Removes the transfer's checkpoint in `direction`, or in both; tells which directions it removed. */
  readonly remove: (
    transferId: Ids.TransferId,
    direction?: Checkpoint.Direction,
  ) => Effect.Effect<ReadonlyArray<Checkpoint.Direction>, CheckpointNotFound | CheckpointIo>
  /**
   * Removes the expired checkpoints and the temp files of saves that died; tells how many checkpoints.
   * Damaged ones stay: their expiry cannot be read, so only the user deletes them.
   */
  readonly clean: () => Effect.Effect<number, CheckpointIo>
  /** Removes every checkpoint, damaged ones and leftover temp files included; tells how many checkpoints. */
  readonly cleanAll: () => Effect.Effect<number, CheckpointIo>
}

const make = (dir: string): Store => {
  const fileOf = (transferId: string, direction: Checkpoint.Direction) =>
    path.join(dir, `${transferId}.${direction}.json`)

  const save = Effect.fn("Checkpoints.save")(function* (checkpoint: Checkpoint.Checkpoint) {
    const target = fileOf(checkpoint.transferId, checkpoint.direction)
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
    // The rename itself is durable only once the directory is.
    yield* withHandle(
      dir,
      () => fs.open(dir, "r"),
      (handle) => handle.sync(),
    )
  })

  const load = Effect.fn("Checkpoints.load")(function* (
    transferId: Ids.TransferId,
    direction: Checkpoint.Direction,
  ) {
    const file = fileOf(transferId, direction)
    const bytes = yield* Effect.tryPromise({
      try: () => fs.readFile(file),
      catch: (e) => (isMissing(e) ? new CheckpointNotFound({ transferId }) : ioError(file)(e)),
    })
    const damaged = (detail: string) => new CheckpointCorrupt({ transferId, direction, path: file, detail })
    const checkpoint = yield* Either.mapLeft(Checkpoint.decodeJson(bytes), damaged)
    // A file renamed (or copied) by hand would resume some other transfer.
    if (checkpoint.transferId !== transferId || checkpoint.direction !== direction)
      return yield* damaged(`it holds the ${checkpoint.direction} checkpoint of ${checkpoint.transferId}`)
    return checkpoint
  })

  const list = Effect.fn("Checkpoints.list")(function* () {
    const listed: Array<Listed> = []
    for (const name of yield* readNames(dir)) {
      const parsed = parseName(name)
      if (Option.isNone(parsed)) continue
      const { transferId, direction } = parsed.value
      const found = yield* load(transferId, direction).pipe(
        Effect.map(Either.right),
        Effect.catchTags({
          CheckpointCorrupt: (e) => Effect.succeed(Either.left(e)),
          // One unreadable file must not hide the others; the user can still delete it.
          CheckpointIo: (e) =>
            Effect.succeed(Either.left(new CheckpointCorrupt({ transferId, direction, ...e }))),
          // Deleted since the directory was read.
          CheckpointNotFound: () => Effect.succeed(undefined),
        }),
      )
      if (found !== undefined) listed.push(found)
    }
    return listed
  })

  const remove = Effect.fn("Checkpoints.remove")(function* (
    transferId: Ids.TransferId,
    direction?: Checkpoint.Direction,
  ) {
    const removed: Array<Checkpoint.Direction> = []
    for (const d of direction === undefined ? Checkpoint.Direction.literals : [direction])
      if (yield* unlink(fileOf(transferId, d))) removed.push(d)
    if (removed.length === 0) return yield* new CheckpointNotFound({ transferId })
    return removed
  })

  const clean = Effect.fn("Checkpoints.clean")(function* () {
    const now = yield* Clock.currentTimeMillis
    let removed = 0
    for (const listed of yield* list())
      if (Either.isRight(listed) && Checkpoint.isExpired(listed.right, now))
        if (yield* unlink(fileOf(listed.right.transferId, listed.right.direction))) removed++
    for (const name of yield* readNames(dir)) {
      if (!TempName.test(name)) continue
      const file = path.join(dir, name)
      const stat = yield* attempt(file, () => fs.stat(file).catch(missingAs(undefined)))
      if (stat !== undefined && now - stat.mtimeMs > StaleTempMs) yield* unlink(file)
    }
    return removed
  })

  const cleanAll = Effect.fn("Checkpoints.cleanAll")(function* () {
    let removed = 0
    for (const name of yield* readNames(dir)) {
      if (Option.isSome(parseName(name))) {
        if (yield* unlink(path.join(dir, name))) removed++
      } else if (TempName.test(name)) yield* unlink(path.join(dir, name))
    }
    return removed
  })

  return { dir, save, load, list, remove, clean, cleanAll }
}

/** The store under `$P2PAL_HOME/checkpoints`, else `~/.p2pal/checkpoints`; nothing touches the disk until used. */
export class Checkpoints extends Effect.Service<Checkpoints>()("@p2pal/transfer/Checkpoints", {
  effect: Effect.map(Config.option(Config.string("P2PAL_HOME")), (home) => {
    // An empty P2PAL_HOME counts as unset, as in `P2PAL_HOME= p2pal ...`.
    const root = Option.getOrElse(
      Option.filter(home, (h) => h !== ""),
      () => path.join(os.homedir(), ".p2pal"),
    )
    return make(path.resolve(root, "checkpoints"))
  }),
}) {}
