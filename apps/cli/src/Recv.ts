import { Args, Command } from "@effect/cli"
import { JoinCode } from "@p2pal/domain"
import { UsageError } from "@p2pal/domain/Errors"
import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import { resumable } from "@p2pal/transfer/RecvCheckpoint"
import { Transfer } from "@p2pal/transfer/Transfer"
import { Config, Deferred, Effect, Either, Exit, Option } from "effect"
import * as path from "node:path"
import * as Flags from "./Flags.js"
import * as Format from "./Format.js"
import * as Peer from "./Peer.js"
import * as Skipped from "./Skipped.js"
import { describeManifest } from "./Summary.js"
import { MaxLineBytes, Ui } from "./Ui.js"

/** $P2PAL_CODE; set but blank counts as unset. */
const codeFromEnv = Config.option(Config.string("P2PAL_CODE")).pipe(
  Config.map(Option.filter((code) => code.trim() !== "")),
)

/**
 * The name rules of Windows, on any platform: `P2PAL_NAME_RULES=windows` (or `posix`). Undocumented in
 * --help; the README's Security section names it, for tests and for a tree bound for a Windows share.
 */
const windowsNames = Config.literal(
  "windows",
  "posix",
)("P2PAL_NAME_RULES").pipe(
  Config.map((rules) => rules === "windows"),
  Config.withDefault(process.platform === "win32"),
)

const code = Args.text({ name: "code" }).pipe(
  Args.withDescription(
    "the join code the sender printed, e.g. zebra-luna-47; if left out, taken from $P2PAL_CODE or read from stdin (keeps it out of shell history and ps)",
  ),
  Args.optional,
  // Placed inside optional's default: the environment is read only when the argument is left out.
  Args.withFallbackConfig(codeFromEnv),
)

/** The code from the argument or $P2PAL_CODE, else one line of stdin. */
const readCode = (given: Option.Option<string>) =>
  Option.match(given, {
    onSome: Effect.succeed,
    onNone: () =>
      Effect.flatMap(Ui, (ui) => ui.ask("Join code: ")).pipe(
        Effect.flatten,
        Effect.orElseFail(
          () =>
            new UsageError({ message: `no join code on stdin: no line end within ${MaxLineBytes} bytes` }),
        ),
      ),
  })

/** Control and invisible characters but newline and tab, as escapeForDisplay writes them. */
const unprintable = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu

/**
 * A received text on stdout: as sent when stdout is a pipe or a file; on a terminal decoded, with
 * control characters (which could move the cursor, retitle the window, or hide a line) escaped.
 */
const printText = (bytes: Uint8Array) =>
  Effect.async<void>((resume) => {
    const done = () => resume(Effect.void)
    if (!process.stdout.isTTY) return void process.stdout.write(bytes, done)
    const shown = new TextDecoder()
      .decode(bytes)
      .replace(unprintable, (c) =>
        c === "\n" || c === "\t" ? c : `\\u{${c.codePointAt(0)!.toString(16).padStart(4, "0")}}`,
      )
    // The text ends its line, so the shell prompt does not start after it.
    process.stdout.write(shown.endsWith("\n") ? shown : `${shown}\n`, done)
  })

export const recv = Command.make(
  "recv",
  {
    out: Flags.out,
    overwrite: Flags.overwrite,
    renameUnsafe: Flags.renameUnsafe,
    listAll: Flags.listAll,
    ...Flags.shared,
    code,
  },
  (flags) =>
    Effect.gen(function* () {
      const ui = yield* Ui
      const peer = Peer.options(flags)
      const joinCode = yield* Either.mapLeft(
        JoinCode.parse(yield* readCode(flags.code)),
        (e) => new UsageError({ message: e.message }),
      )
      // `--out -`: the one file goes to stdout; the probes and checks for a directory are not made.
      const toStdout = flags.out === "-"
      const out = path.resolve(toStdout ? "." : flags.out)
      const { checkpointTtl } = flags
      const skipped = yield* Skipped.tracker("receiver")
      const names = yield* windowsNames
      yield* ui.info("Joining transfer...")
      const transfer = yield* Transfer
      const received = yield* Peer.watching(
        (events) =>
          transfer.receive(
            {
              ...peer,
              code: joinCode,
              out,
              overwrite: flags.overwrite,
              windowsNames: names,
              renameUnsafe: flags.renameUnsafe,
              stdout: toStdout ? process.stdout : undefined,
              checkpointTtl,
              limitRate: Option.getOrUndefined(flags.limitRate),
            },
            events,
          ),
        (seen, event) =>
          Effect.gen(function* () {
            switch (event._tag) {
              case "Verified":
                if (flags.verify) yield* ui.notice(Flags.verificationLine(event.verification))
                return seen
              case "Confirm": {
                const { manifest, reply } = event
                const described = describeManifest(manifest, flags.listAll)
                const answer = flags.yes
                  ? Effect.as(Effect.forEach(described, ui.info), true)
                  : ui.confirm(
                      described,
                      toStdout ? "Write it to stdout?" : `Save into ${escapeForDisplay(out)}?`,
                    )
                // A transfer that stops meanwhile takes its question back.
                yield* Effect.raceFirst(
                  Effect.flatMap(answer, (yes) => Deferred.succeed(reply, yes)),
                  Effect.exit(Deferred.await(reply)),
                )
                return seen
              }
              case "Skipped":
                yield* skipped.skip(event.file)
                return seen
              case "Started": {
                const { progress, manifest, already } = event
                if (already > 0)
                  yield* ui.info(
                    `Resuming: ${Format.bytes(already)} of ${Format.bytes(progress.totalBytes)} already here (${already} of ${progress.totalBytes} bytes)`,
                  )
                // The progress bars close with the display, before the verified line is printed below them.
                yield* ui.showProgress(progress, manifest)
                // The checkpoint is kept under the transfer's id once it is accepted.
                return { checkpointId: toStdout ? undefined : manifest.transfer, progress }
              }
              default:
                return yield* Peer.showLink(ui, seen, event)
            }
          }),
        (exit, seen) =>
          seen.checkpointId === undefined || !resumable(exit)
            ? Effect.void
            : ui.notice(
                `${Exit.isInterrupted(exit) ? "Interrupted. " : ""}Kept what arrived; the sender can resume with p2pal send --resume ${seen.checkpointId}, then run p2pal recv with the new code and the same --out`,
              ),
      )
      yield* ui.verified()
      if (received.text !== undefined) yield* printText(received.text)
      if (received.renamed.length > 0)
        yield* Effect.forEach(
          [
            `Saved under escaped names (this system cannot hold the sender's):`,
            ...received.renamed.map(
              ({ from, to }) => `  ${escapeForDisplay(to)}  (sent as ${escapeForDisplay(from)})`,
            ),
          ],
          ui.notice,
        )
      if (received.path !== undefined) yield* ui.info(Format.connection(received.path))
      yield* skipped.outcome
    }).pipe(Effect.scoped, Effect.provide(Ui.layer(flags.quiet))),
).pipe(Command.withDescription("receive what a sender offers under a join code"))
