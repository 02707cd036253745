import { Checkpoint, Ids } from "@p2pal/domain"
import { CheckpointCorrupt, CheckpointIo, CheckpointNotFound } from "@p2pal/domain/Errors"
import { Clock, Config, Effect, Either, Option, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import {
  appendLine,
  attempt,
  type Base,
  ioError,
  isMissing,
  missingAs,
  replayJournal,
  unlink,
  writeBase,
} from "./CheckpointFiles.js"

/** A checkpoint file as `list` finds it: usable, or damaged (and then never used). */
export type Listed = Either.Either<Checkpoint.Checkpoint, CheckpointCorrupt>

/** `<transferId>.<direction>.json`; transfer ids are [A-Za-z0-9_-], so the name stays inside the directory. */
const CheckpointName = /^(.+)\.(send|recv)\.json$/
/** The saves since the checkpoint was last written whole; useless without it. */
const JournalName = /^(.+)\.(send|recv)\.journal$/
/** What `save` writes before its rename; one left behind means a save died half way. */
const TempName = /\.(send|recv)\.json\.tmp-[0-9a-f]+$/
/** A temp file younger than this may belong to a save in progress in another p2pal process. */
const StaleTempMs = 60_000

const isTransferId = Schema.is(Ids.TransferId)

const parseName = (name: string, pattern = CheckpointName) => {
  const match = pattern.exec(name)
  const [, transferId, direction] = match ?? []
  return isTransferId(transferId) && Schema.is(Checkpoint.Direction)(direction)
    ? Option.some({ transferId, direction })
    : Option.none()
}

/** The directory's entries, sorted; none if it does not exist yet (nothing was ever saved). */
const readNames = (dir: string) =>
  attempt(dir, () => fs.readdir(dir).then((names) => names.sort(), missingAs<Array<string>>([])))

/** The saves that follow one `save` of a checkpoint: each costs what changed, not the whole checkpoint. */
export interface Journal {
  /**
   * Records `update` (the files changed since the last save, and the new times) durably, in the journal;
   * when the journal would outgrow the checkpoint, writes the checkpoint whole again instead. Not to be
   * called again before it ends (CheckpointSaves sees to that): the lines must land in order.
   */
  readonly append: (update: Checkpoint.Update) => Effect.Effect<void, CheckpointIo>
}

/**
 * The checkpoint store, in one private directory: per transfer and direction, the checkpoint written
 * whole as JSON, and a journal of the saves since.
 */
export interface Store {
  /** `<P2PAL_HOME or ~/.p2pal>/checkpoints`. */
  readonly dir: string
  /**
   * Replaces the stored checkpoint with `checkpoint`, whole, so that even after a crash loading gives
   * either the old one or this; returns its journal, for the saves that follow.
   */
  readonly save: (checkpoint: Checkpoint.Checkpoint) => Effect.Effect<Journal, CheckpointIo>
  /** The checkpoint as last saved: written whole, then its journal replayed. */
  readonly load: (
    transferId: Ids.TransferId,
    direction: Checkpoint.Direction,
  ) => Effect.Effect<Checkpoint.Checkpoint, CheckpointNotFound | CheckpointCorrupt | CheckpointIo>
  /** Every checkpoint, by name; damaged ones are reported with their path, never used. */
  readonly list: () => Effect.Effect<ReadonlyArray<Listed>, CheckpointIo>
  /** Removes the transfer's checkpoint in `direction`, or in both; tells which directions it removed. */
  readonly remove: (
    transferId: Ids.TransferId,
    direction?: Checkpoint.Direction,
  ) => Effect.Effect<ReadonlyArray<Checkpoint.Direction>, CheckpointNotFound | CheckpointIo>
  /**
   * Removes the expired checkpoints, the temp files of saves that died and journals without their
   * checkpoint; tells how many checkpoints. Damaged ones stay: their expiry cannot be read, so only the
   * user deletes them.
   */
  readonly clean: () => Effect.Effect<number, CheckpointIo>
  /** Removes every checkpoint, damaged ones, journals and leftover temp files included; tells how many checkpoints. */
  readonly cleanAll: () => Effect.Effect<number, CheckpointIo>
}

const make = (dir: string): Store => {
  const fileOf = (transferId: string, direction: Checkpoint.Direction) =>
    path.join(dir, `${transferId}.${direction}.json`)
  const journalOf = (transferId: string, direction: Checkpoint.Direction) =>
    path.join(dir, `${transferId}.${direction}.journal`)

  const journalAfter = (first: Base): Journal => {
    const target = fileOf(first.checkpoint.transferId, first.checkpoint.direction)
    const journal = journalOf(first.checkpoint.transferId, first.checkpoint.direction)
    let base = first
    /** The updates in the journal, and the one being appended: a rewrite applies them. */
    let pending: Array<Checkpoint.Update> = []
    /** The journal's bytes (0: not started); undefined while unknown, after a write that failed half way. */
    let written: number | undefined = 0
    return {
      append: Effect.fn("Checkpoints.append")(function* (update: Checkpoint.Update) {
        const line = Checkpoint.encodeUpdateJson(base.checkpoint, update)
        pending.push(update)
        const before = written
        written = undefined
        // A line after a torn one would make it damage in the middle of the journal: rewrite instead.
        if (before === undefined || before + line.length + 1 > base.bytes) {
          base = yield* writeBase(target, journal, Checkpoint.replay(base.checkpoint, pending))
          pending = []
          written = 0
        } else {
          const added = yield* appendLine(journal, before === 0 ? base : undefined, line)
          written = before + added
        }
      }),
    }
  }

  const save = Effect.fn("Checkpoints.save")(function* (checkpoint: Checkpoint.Checkpoint) {
    const { transferId, direction } = checkpoint
    return journalAfter(
      yield* writeBase(fileOf(transferId, direction), journalOf(transferId, direction), checkpoint),
    )
  })

  const load = Effect.fn("Checkpoints.load")(function* (
    transferId: Ids.TransferId,
    direction: Checkpoint.Direction,
  ) {
    const file = fileOf(transferId, direction)
    const journal = journalOf(transferId, direction)
    // The journal first: one a rewrite replaces in between names the old checkpoint, and is ignored.
    const lines = yield* attempt(journal, () => fs.readFile(journal).catch(missingAs(undefined)))
    const bytes = yield* Effect.tryPromise({
      try: () => fs.readFile(file),
      catch: (e) => (isMissing(e) ? new CheckpointNotFound({ transferId }) : ioError(file)(e)),
    })
    const damaged = (at: string) => (detail: string) =>
      new CheckpointCorrupt({ transferId, direction, path: at, detail })
    const checkpoint = yield* Either.mapLeft(Checkpoint.decodeJson(bytes), damaged(file))
    // A file renamed (or copied) by hand would resume some other transfer.
    if (checkpoint.transferId !== transferId || checkpoint.direction !== direction)
      return yield* damaged(file)(
        `it holds the ${checkpoint.direction} checkpoint of ${checkpoint.transferId}`,
      )
    return yield* Either.mapLeft(replayJournal(checkpoint, bytes, lines), damaged(journal))
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

  /**
   * Removes a checkpoint and its journal, in that order (a journal left alone is inert, and cleaned), then
   * the temp files of its saves that died: only this transfer's own process saves it, so none is live.
   */
  const removeBoth = (transferId: string, direction: Checkpoint.Direction) =>
    Effect.gen(function* () {
      const removed = yield* unlink(fileOf(transferId, direction))
      yield* unlink(journalOf(transferId, direction))
      const temps = `${path.basename(fileOf(transferId, direction))}.tmp-`
      for (const name of yield* readNames(dir))
        if (name.startsWith(temps) && TempName.test(name)) yield* unlink(path.join(dir, name))
      return removed
    })

  const remove = Effect.fn("Checkpoints.remove")(function* (
    transferId: Ids.TransferId,
    direction?: Checkpoint.Direction,
  ) {
    const removed: Array<Checkpoint.Direction> = []
    for (const d of direction === undefined ? Checkpoint.Direction.literals : [direction])
      if (yield* removeBoth(transferId, d)) removed.push(d)
    if (removed.length === 0) return yield* new CheckpointNotFound({ transferId })
    return removed
  })

  const clean = Effect.fn("Checkpoints.clean")(function* () {
    const now = yield* Clock.currentTimeMillis
    let removed = 0
    for (const listed of yield* list())
      if (Either.isRight(listed) && Checkpoint.isExpired(listed.right, now))
        if (yield* removeBoth(listed.right.transferId, listed.right.direction)) removed++
    const names = yield* readNames(dir)
    for (const name of names) {
      const file = path.join(dir, name)
      // A journal is started only once its checkpoint is there, so one without it is left from a removal.
      const orphan = Option.map(parseName(name, JournalName), (j) =>
        path.basename(fileOf(j.transferId, j.direction)),
      )
      if (Option.isSome(orphan) && !names.includes(orphan.value)) yield* unlink(file)
      if (!TempName.test(name)) continue
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
      } else if (TempName.test(name) || JournalName.test(name)) yield* unlink(path.join(dir, name))
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
