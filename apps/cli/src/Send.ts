import { Args, Command } from "@effect/cli"
import { DurationText, Manifest } from "@p2pal/domain"
import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import * as Session from "@p2pal/transfer/Session"
import * as Sources from "@p2pal/transfer/Sources"
import { Effect } from "effect"
import * as Flags from "./Flags.js"
import * as Format from "./Format.js"
import * as Skipped from "./Skipped.js"
import { Ui } from "./Ui.js"

const files = Args.text({ name: "file" }).pipe(
  Args.atLeast(1),
  Args.withDescription("files (or, with -r, directories) to send"),
)

const summary = (sources: Sources.Sources, ttl: string) => {
  const { entries } = sources.manifest
  const fileCount = entries.filter((e) => e._tag === "file").length
  const top = entries.filter((e) => !e.path.includes("/"))
  const what =
    top.length === 1
      ? `${top[0]!._tag === "dir" ? "directory" : "file"}: ${escapeForDisplay(top[0]!.path)}`
      : `${top.length} items: ${top.map((e) => escapeForDisplay(e.path)).join(", ")}`
  return `Sending ${what} (${Format.count(fileCount, "file")}, ${Format.bytes(Manifest.totalBytes(sources.manifest))}) — TTL: ${ttl}`
}

export const send = Command.make(
  "send",
  {
    server: Flags.server,
    ttl: Flags.ttl,
    recursive: Flags.recursive,
    yes: Flags.yes,
    quiet: Flags.quiet,
    chunkSize: Flags.chunkSize,
    stun: Flags.stun,
    verify: Flags.verify,
    encrypt: Flags.encrypt,
    skipErrors: Flags.skipErrors,
    files,
  },
  (flags) =>
    Effect.gen(function* () {
      const ui = yield* Ui
      const server = yield* Flags.serverUrl(flags.server)
      const stun = yield* Flags.stunServers(flags.stun)
      const ttl = yield* Flags.parseTtl(flags.ttl)
      const chunkSize = yield* Flags.chunkBytes(flags.chunkSize)
      const skipped = yield* Skipped.tracker("sender")
      const skipUnreadable = flags.skipErrors ? skipped.skip : undefined
      const sources = yield* Sources.collect(flags.files, flags.recursive, skipUnreadable)
      yield* ui.info(summary(sources, DurationText.format(ttl)))
      for (const special of sources.skipped)
        yield* ui.info(`skipping ${escapeForDisplay(special)}: not a regular file or directory`)
      yield* ui.info("Creating transfer...")
      const path = yield* Session.send({
        server,
        stun,
        ttl,
        chunkSize,
        encrypt: flags.encrypt,
        sources,
        skipUnreadable,
        onCode: (code) =>
          ui.quiet
            ? ui.result(code)
            : Effect.zipRight(ui.info(`Join code: ${code}`), ui.info("Waiting for receiver...")),
        onVerified: (verification) =>
          flags.verify ? ui.notice(Flags.verificationLine(verification)) : Effect.void,
        onConnected: (progress) => ui.showProgress(progress, sources.manifest),
        // The progress bars close with this scope, before the verified line is printed below them.
      }).pipe(Effect.scoped)
      yield* ui.verified()
      if (path !== undefined)
        yield* ui.info(
          `Connected directly: ${path.local} <-> ${path.remote}` +
            (path.rttMs === undefined ? "" : `, RTT ${path.rttMs} ms`),
        )
      yield* skipped.outcome
    }).pipe(Effect.scoped, Effect.provide(Ui.layer(flags.quiet))),
).pipe(Command.withDescription("send files or directories; prints a join code for the receiver"))
