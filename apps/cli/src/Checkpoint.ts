import { Args, Command } from "@effect/cli"
import { Checkpoint, Ids } from "@p2pal/domain"
import { type CheckpointCorrupt, CheckpointNotFound } from "@p2pal/domain/Errors"
import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import { Checkpoints } from "@p2pal/transfer/Checkpoints"
import { Clock, Console, Effect, Either, Schema } from "effect"
import * as Format from "./Format.js"

/** A span of time in its two largest units: "6d 23h", "3h 5m", "12m", "40s". */
const span = (ms: number) => {
  const s = Math.floor(Math.max(0, ms) / 1000)
  const [days, hours, minutes] = [Math.floor(s / 86_400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60]
  if (days > 0) return `${days}d ${hours}h`
  if (hours > 0) return `${hours}h ${minutes}m`
  if (minutes > 0) return `${minutes}m`
  return `${s}s`
}

const percent = (p: Checkpoint.Progress) =>
  p.bytesTotal === 0
    ? p.filesDone === p.filesTotal
      ? 100
      : 0
    : Math.floor((p.bytesDone * 100) / p.bytesTotal)

/** Columns padded to their widest cell; a row's last cell is never padded, so it may run long. */
const table = (rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths: Array<number> = []
  for (const row of rows)
    row.slice(0, -1).forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  return rows
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "))
    .join("\n")
}

const Header = ["ID", "DIRECTION", "FILES", "PROGRESS", "AGE", "EXPIRES"]

const row = (now: number) =>
  Either.match({
    onLeft: (damaged: CheckpointCorrupt): ReadonlyArray<string> => [
      damaged.transferId,
      damaged.direction,
      "damaged",
      `${escapeForDisplay(damaged.path)} (${escapeForDisplay(damaged.detail)})`,
    ],
    onRight: (c: Checkpoint.Checkpoint) => {
      const p = Checkpoint.progress(c)
      return [
        c.transferId,
        c.direction,
        `${p.filesDone}/${p.filesTotal}`,
        `${percent(p)}% (${Format.bytes(p.bytesDone)} / ${Format.bytes(p.bytesTotal)})`,
        span(now - c.updatedAt),
        Checkpoint.isExpired(c, now) ? "expired" : `in ${span(c.expiresAt - now)}`,
      ]
    },
  })

const list = Command.make("list", {}, () =>
  Effect.gen(function* () {
    const listed = yield* (yield* Checkpoints).list()
    if (listed.length === 0) return yield* Console.log("No checkpoints.")
    const now = yield* Clock.currentTimeMillis
    yield* Console.log(table([Header, ...listed.map(row(now))]))
    if (listed.some(Either.isLeft))
      yield* Console.log("Delete a damaged checkpoint with `p2pal checkpoint delete <id>`.")
  }),
).pipe(Command.withDescription("list the checkpoints of interrupted transfers (age: since last saved)"))

const id = Args.text({ name: "id" }).pipe(
  Args.withDescription("the transfer id, as `p2pal checkpoint list` shows it"),
)

const remove = Command.make("delete", { id }, ({ id }) =>
  Effect.gen(function* () {
    // Anything that is not a transfer id cannot name a checkpoint (nor a path outside their directory).
    const transferId = yield* Schema.decodeUnknown(Ids.TransferId)(id).pipe(
      Effect.orElseFail(() => new CheckpointNotFound({ transferId: id })),
    )
    const removed = yield* (yield* Checkpoints).remove(transferId)
    yield* Console.log(
      `Deleted the ${removed.join(" and ")} ${removed.length === 1 ? "checkpoint" : "checkpoints"} of ${transferId}.`,
    )
  }),
).pipe(Command.withDescription("delete both sides' checkpoints of one transfer"))

const clean = Command.make("clean", {}, () =>
  Effect.gen(function* () {
    const removed = yield* (yield* Checkpoints).clean()
    yield* Console.log(`Removed ${Format.count(removed, "expired checkpoint")}.`)
  }),
).pipe(Command.withDescription("remove expired checkpoints"))

const cleanAll = Command.make("clean-all", {}, () =>
  Effect.gen(function* () {
    const removed = yield* (yield* Checkpoints).cleanAll()
    yield* Console.log(`Removed ${Format.count(removed, "checkpoint")}.`)
  }),
).pipe(Command.withDescription("remove every checkpoint, damaged ones included"))

export const checkpoint = Command.make("checkpoint").pipe(
  Command.withDescription("list, delete and clean the checkpoints that let interrupted transfers resume"),
  Command.withSubcommands([list, remove, clean, cleanAll]),
)
