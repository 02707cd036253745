#!/usr/bin/env node
import { Command } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { isTransferError } from "@p2pal/domain/Errors"
import { PeerLink } from "@p2pal/infra/PeerLink"
import { SignalClient } from "@p2pal/infra/SignalClient"
import { Hasher } from "@p2pal/transfer/Hasher"
import { Cause, Console, Effect, Exit, Layer } from "effect"
import { describe, ExitCode } from "./Failure.js"
import { recv } from "./Recv.js"
import { send } from "./Send.js"

const p2pal = Command.make("p2pal").pipe(
  Command.withDescription("send files and directories straight to another machine over WebRTC"),
  Command.withSubcommands([send, recv]),
)

const cli = Command.run(p2pal, { name: "p2pal", version: "0.1.0" })

const MainLive = Layer.mergeAll(NodeContext.layer, PeerLink.layer, SignalClient.layer, Hasher.layer)

const program = cli(process.argv).pipe(
  Effect.provide(MainLive),
  Effect.exit,
  Effect.flatMap((exit) => {
    if (Exit.isSuccess(exit)) return Effect.succeed(ExitCode.ok)
    if (Cause.isInterruptedOnly(exit.cause)) return Effect.succeed(ExitCode.interrupted)
    const failure = Cause.failureOption(exit.cause)
    if (failure._tag === "Some") {
      // @effect/cli has already printed its own help text for malformed command lines.
      if (!isTransferError(failure.value)) return Effect.succeed(ExitCode.usage)
      const { message, exitCode } = describe(failure.value)
      return Console.error(`p2pal: ${message}`).pipe(Effect.as(exitCode))
    }
    return Console.error(`p2pal: internal error\n${Cause.pretty(exit.cause)}`).pipe(
      Effect.as(ExitCode.internal),
    )
  }),
  Effect.flatMap((code) => Effect.sync(() => process.exit(code))),
)

NodeRuntime.runMain(program, { disableErrorReporting: true })
