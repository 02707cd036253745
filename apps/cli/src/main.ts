#!/usr/bin/env node
import { Command, ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { isTransferError, UsageError } from "@p2pal/domain/Errors"
import { PeerLink } from "@p2pal/infra/PeerLink"
import { SignalClient } from "@p2pal/infra/SignalClient"
import { Checkpoints } from "@p2pal/transfer/Checkpoints"
import { Hasher } from "@p2pal/transfer/Hasher"
import { Transfer } from "@p2pal/transfer/Transfer"
import { Cause, Console, Effect, Exit, Layer, Option, Schema } from "effect"
import { checkpoint } from "./Checkpoint.js"
import { optionsOf, subcommandIn, unknownOption } from "./CommandLine.js"
import { script, Shells } from "./Completions.js"
import { load, locate } from "./ConfigFile.js"
import { describe, ExitCode } from "./Failure.js"
import { cliConsole } from "./Output.js"
import { recv } from "./Recv.js"
import { send } from "./Send.js"
import { configCommand, LoadedConfig, withFileSettings } from "./Settings.js"

const configurable = [
  { name: "send", descriptor: send.descriptor },
  { name: "recv", descriptor: recv.descriptor },
] as const

const p2pal = Command.make("p2pal").pipe(
  Command.withDescription(
    "send files and directories straight to another machine over WebRTC; " +
      "settings come from flags, then environment variables, then the config file (--config FILE, $P2PAL_CONFIG, ~/.p2pal/config.toml)",
  ),
  Command.withSubcommands([send, recv, checkpoint, configCommand(configurable)]),
)

const cli = Command.run(p2pal, { name: "p2pal", version: "0.1.0" })

const MainLive = Transfer.Default.pipe(
  Layer.provideMerge(
    Layer.mergeAll(
      NodeContext.layer,
      PeerLink.Default,
      SignalClient.Default,
      Hasher.Default,
      Checkpoints.Default,
    ),
  ),
)

/** Tells the user how the command ended and picks the exit code. */
const report = (exit: Exit.Exit<void, unknown>): Effect.Effect<number> => {
  if (Exit.isSuccess(exit)) return Effect.succeed(ExitCode.ok)
  if (Cause.isInterruptedOnly(exit.cause)) return Effect.succeed(ExitCode.interrupted)
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some") {
    // @effect/cli has already printed its own help text for malformed command lines.
    if (ValidationError.isValidationError(failure.value)) return Effect.succeed(ExitCode.usage)
    if (isTransferError(failure.value)) {
      const { message, exitCode } = describe(failure.value)
      return Console.error(`p2pal: ${message}`).pipe(Effect.as(exitCode))
    }
  }
  return Console.error(`p2pal: internal error\n${Cause.pretty(exit.cause)}`).pipe(
    Effect.as(ExitCode.internal),
  )
}

/** The shell `--completions SHELL` asks a script for, if it does. */
const completionsFor = (all: ReadonlyArray<string>) => {
  const args = all.includes("--") ? all.slice(0, all.indexOf("--")) : all
  const at = args.findIndex((word) => word === "--completions" || word.startsWith("--completions="))
  const shell = at < 0 ? undefined : args[at]!.includes("=") ? args[at]!.slice(14) : (args[at + 1] ?? "")
  // @effect/cli's help offers `sh` too, for bash.
  return shell === "sh" ? "bash" : shell
}

/**
 * Before @effect/cli sees the command line: `--completions` prints p2pal's own script, the config file is read and checked (a broken one stops every
 * command), an unknown flag stops here (@effect/cli would take it for a file name or the code), and the
 * file's settings join the command line where no flag or environment variable sets them.
 */
const checked = Effect.gen(function* () {
  const shell = completionsFor(process.argv.slice(2))
  if (shell !== undefined)
    return Schema.is(Schema.Literal(...Shells))(shell)
      ? yield* Console.log(script(p2pal, shell))
      : yield* new UsageError({ message: `--completions takes ${Shells.join(", ")}, not ${shell}` })
  const where = locate(process.argv.slice(2), process.env)
  const loaded = yield* load(
    where,
    { send: optionsOf(send.descriptor), recv: optionsOf(recv.descriptor) },
    (line) => Console.error(line),
  )
  const unknown = unknownOption(p2pal, where.args)
  if (Option.isSome(unknown)) return yield* new UsageError({ message: unknown.value })
  const sub = subcommandIn(p2pal, where.args)
  const args =
    sub === undefined
      ? where.args
      : withFileSettings(where.args, { ...sub, options: optionsOf(sub.descriptor) }, loaded, process.env)
  return yield* cli([...process.argv.slice(0, 2), ...args]).pipe(
    Effect.provideService(LoadedConfig, { loaded, env: process.env }),
  )
})

const program = Effect.consoleWith((console) => Effect.withConsole(checked, cliConsole(console))).pipe(
  Effect.provide(MainLive),
  Effect.exit,
  Effect.flatMap(report),
  Effect.flatMap((code) => Effect.sync(() => process.exit(code))),
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  // `program` exits by itself; only a signal (which interrupts it before `report`) or a defect in
  // `report` itself ends up here.
  teardown: (exit, onExit) => {
    if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) return onExit(ExitCode.interrupted)
    if (Exit.isFailure(exit)) process.stderr.write(`p2pal: internal error\n${Cause.pretty(exit.cause)}\n`)
    onExit(ExitCode.internal)
  },
})
