import { Args, Command, Options } from "@effect/cli"
import { DurationText, Ids, Manifest } from "@p2pal/domain"
import { CheckpointNotFound, UsageError } from "@p2pal/domain/Errors"
import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import { Checkpoints } from "@p2pal/transfer/Checkpoints"
import * as Sources from "@p2pal/transfer/Sources"
import { resumable } from "@p2pal/transfer/RecvCheckpoint"
import { Transfer } from "@p2pal/transfer/Transfer"
import { Effect, Exit, Option, Schema } from "effect"
import * as Flags from "./Flags.js"
import * as Format from "./Format.js"
import * as Peer from "./Peer.js"
import * as Skipped from "./Skipped.js"
import { Ui } from "./Ui.js"

const files = Args.text({ name: "file" }).pipe(
  Args.repeated,
  Args.withDescription(
    "files (or, with -r, directories) to send, or quoted patterns p2pal expands ('*.pdf', 'docs/**/*.md'); " +
      "- sends standard input as one file; none with --resume or --text; a name starting with - goes after --",
  ),
)

const exclude = Options.text("exclude").pipe(
  Options.withPseudoName("GLOB"),
  Options.withDescription(
    "leave out what matches GLOB, in directories (-r) and pattern matches: matched against the path " +
      "from what was named and against the base name (e.g. '*.log', node_modules); repeatable; none by default",
  ),
  Options.repeated,
  Options.withDefault([]),
)

const text = Options.text("text").pipe(
  Options.withPseudoName("TEXT"),
  Options.optional,
  Options.withDescription(
    `send this text (at most ${Manifest.MaxTextMessageBytes / 1024} KiB) instead of files: the receiver prints it and writes nothing`,
  ),
)

const name = Options.text("name").pipe(
  Options.withPseudoName("NAME"),
  Options.optional,
  Options.withDescription("with send -: the name standard input arrives under; default stdin"),
)

const resume = Options.text("resume").pipe(
  Options.withPseudoName("ID"),
  Options.optional,
  Options.withDescription(
    "resume an interrupted transfer by its checkpoint id (`p2pal checkpoint list`); sends the same files under a new code",
  ),
)

/**
 * The sources of the transfer `id` as its send checkpoint recorded them; a file changed since comes whole,
 * and the user is told.
 */
const resumed = (id: string) =>
  Effect.gen(function* () {
    const ui = yield* Ui
    // Anything that is not a transfer id cannot name a checkpoint (nor a path outside their directory).
    const transferId = yield* Schema.decodeUnknown(Ids.TransferId)(id).pipe(
      Effect.orElseFail(() => new CheckpointNotFound({ transferId: id })),
    )
    const checkpoint = yield* (yield* Checkpoints).load(transferId, "send")
    // load() has checked the direction already; this tells the type checker.
    if (checkpoint.direction !== "send") return yield* new CheckpointNotFound({ transferId: id })
    const sources = yield* Sources.fromCheckpoint(checkpoint, (path) =>
      ui.notice(`${escapeForDisplay(path)} changed since the checkpoint: sending it again from the start`),
    )
    return { sources, resume: { transferId, createdAt: checkpoint.createdAt } }
  })

const summary = (sources: Sources.Sources, ttl: string) => {
  const { entries, stream } = sources.manifest
  if (stream === "text")
    return `Sending a text (${Format.bytes(Manifest.totalBytes(sources.manifest))}) — TTL: ${ttl}`
  if (stream === "pipe")
    return `Sending standard input as ${escapeForDisplay(entries[0]!.path)} (its size is known at its end) — TTL: ${ttl}`
  const fileCount = entries.filter((e) => e._tag === "file").length
  const top = entries.filter((e) => !e.path.includes("/"))
  const what =
    top.length === 1
      ? `${top[0]!._tag === "dir" ? "directory" : "file"}: ${escapeForDisplay(top[0]!.path)}`
      : `${top.length} items: ${top.map((e) => escapeForDisplay(e.path)).join(", ")}`
  const excluded = sources.excluded > 0 ? `, ${Format.count(sources.excluded, "entry")} excluded` : ""
  return `Sending ${what} (${Format.count(fileCount, "file")}, ${Format.bytes(Manifest.totalBytes(sources.manifest))}${excluded}) — TTL: ${ttl}`
}

/** `send --text` or `send -`: one stream, and nothing else to send with it. */
const streamed = (flags: {
  readonly text: Option.Option<string>
  readonly name: Option.Option<string>
  readonly files: ReadonlyArray<string>
  readonly resume: Option.Option<string>
  readonly recursive: boolean
}) => {
  const alone =
    flags.files.length === (Option.isSome(flags.text) ? 0 : 1) &&
    Option.isNone(flags.resume) &&
    !flags.recursive
  if (Option.isSome(flags.text))
    return alone && Option.isNone(flags.name)
      ? Sources.fromText(flags.text.value)
      : new UsageError({
          message: "--text sends only the text: give no files, -r, --name or --resume with it",
        })
  if (!flags.files.includes("-"))
    return new UsageError({ message: "--name names standard input: use it with p2pal send -" })
  return alone
    ? Sources.fromPipe(
        Option.getOrElse(flags.name, () => "stdin"),
        () => process.stdin,
      )
    : new UsageError({
        message: "send - sends standard input alone: give no other files, -r or --resume with it",
      })
}

export const send = Command.make(
  "send",
  {
    ttl: Flags.ttl,
    recursive: Flags.recursive,
    chunkSize: Flags.chunkSize,
    encrypt: Flags.encrypt,
    compress: Flags.compress,
    compressLevel: Flags.compressLevel,
    skipErrors: Flags.skipErrors,
    exclude,
    resume,
    text,
    name,
    ...Flags.shared,
    files,
  },
  (flags) =>
    Effect.gen(function* () {
      const ui = yield* Ui
      const peer = Peer.options(flags)
      const { ttl, chunkSize, checkpointTtl } = flags
      const skipped = yield* Skipped.tracker("sender")
      const skipUnreadable = flags.skipErrors ? skipped.skip : undefined
      const { sources, resume } = yield* Option.isSome(flags.text) ||
      flags.files.includes("-") ||
      Option.isSome(flags.name)
        ? Effect.map(streamed(flags), (sources) => ({ sources, resume: undefined }))
        : Option.match(flags.resume, {
            onNone: () =>
              flags.files.length === 0
                ? new UsageError({
                    message: "nothing to send: name files, or a checkpoint with --resume <id>",
                  })
                : Effect.map(
                    Sources.collect(flags.files, flags.recursive, skipUnreadable, flags.exclude),
                    (sources) => ({
                      sources,
                      resume: undefined,
                    }),
                  ),
            onSome: (id) =>
              flags.files.length > 0
                ? new UsageError({
                    message: "--resume sends the files its checkpoint names: give no files with it",
                  })
                : resumed(id),
          })
      yield* ui.info(summary(sources, DurationText.format(ttl)))
      for (const special of sources.skipped)
        yield* ui.info(`skipping ${escapeForDisplay(special)}: not a regular file or directory`)
      yield* ui.info("Creating transfer...")
      const transfer = yield* Transfer
      const sent = yield* Peer.watching(
        (events) =>
          transfer.send(
            {
              ...peer,
              ttl,
              chunkSize,
              encrypt: flags.encrypt,
              sources,
              skipUnreadable: flags.skipErrors,
              checkpointTtl,
              resume,
              compress: { mode: flags.compress, level: flags.compressLevel },
              limitRate: Option.getOrUndefined(flags.limitRate),
            },
            events,
          ),
        (seen, event) =>
          Effect.gen(function* () {
            switch (event._tag) {
              case "CheckpointSaved":
                return { ...seen, checkpointId: event.transferId }
              case "CodeReady":
                yield* ui.quiet
                  ? ui.result(event.code)
                  : Effect.zipRight(ui.info(`Join code: ${event.code}`), ui.info("Waiting for receiver..."))
                return seen
              case "ClaimAbandoned":
                yield* ui.notice(
                  `someone claimed the code, but ${escapeForDisplay(event.why)}: they may know only its number. ` +
                    "That code is void; the receiver uses this new one:",
                )
                return seen
              case "Verified":
                if (flags.verify) yield* ui.notice(Flags.verificationLine(event.verification))
                return seen
              case "Skipped":
                yield* skipped.skip(event.file)
                return seen
              case "Started":
                // The progress bars close with the display, before the verified line is printed below them.
                yield* ui.showProgress(event.progress, sources.manifest)
                return { ...seen, progress: event.progress }
              default:
                return yield* Peer.showLink(ui, seen, event)
            }
          }),
        (exit, seen) =>
          seen.checkpointId === undefined || !resumable(exit)
            ? Effect.void
            : ui.notice(
                `${Exit.isInterrupted(exit) ? "Interrupted. " : ""}Resume with: p2pal send --resume ${seen.checkpointId}`,
              ),
      )
      yield* ui.verified()
      for (const line of Format.compression(flags.compress, flags.encrypt, sent.progress, sources.manifest))
        yield* ui.info(line)
      if (sent.path !== undefined) yield* ui.info(Format.connection(sent.path))
      if (sent.resent > 0)
        yield* ui.info(
          `Sent again after reconnecting: ${Format.bytes(sent.resent)} (${sent.resent} bytes) that the drop lost on the way`,
        )
      yield* skipped.outcome
    }).pipe(Effect.scoped, Effect.provide(Ui.layer(flags.quiet))),
).pipe(Command.withDescription("send files or directories; prints a join code for the receiver"))
