#!/usr/bin/env node
import { createServer } from "node:http"
import { Command, Options } from "@effect/cli"
import { NodeContext, NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { layer as MemoryTransferStore } from "@p2pal/infra/MemoryTransferStore"
import { Cause, Config, Effect, Layer, Logger } from "effect"
import * as Server from "./Server.js"

const port = Options.integer("port").pipe(
  Options.withDescription("TCP port to listen on (0 picks a free one); env PORT"),
  Options.withDefault(8080),
  Options.withFallbackConfig(Config.integer("PORT")),
)

const host = Options.text("host").pipe(
  Options.withDescription("address to listen on; env HOST"),
  Options.withDefault("0.0.0.0"),
  Options.withFallbackConfig(Config.string("HOST")),
)

const signal = Command.make("p2pal-signal", { port, host }, ({ port, host }) =>
  Layer.launch(
    Server.layer.pipe(
      Layer.provide(NodeHttpServer.layer(createServer, { port, host })),
      Layer.provide(MemoryTransferStore),
    ),
  ),
)

const cli = Command.run(signal, { name: "p2pal-signal", version: "0.1.0" })

// Logs and errors go to stderr: stdout carries only the listening line.
cli(process.argv).pipe(
  Effect.tapErrorCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(cause))),
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true }),
)
