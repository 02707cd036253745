#!/usr/bin/env node
import { createServer } from "node:http"
import { Command, Options } from "@effect/cli"
import { NodeContext, NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { layer as MemoryRateLimiter } from "@p2pal/infra/MemoryRateLimiter"
import { layer as MemoryTransferStore } from "@p2pal/infra/MemoryTransferStore"
import { Cause, Config, Effect, Layer } from "effect"
import { TrustProxy } from "./ClientIp.js"
import { limits, trustProxy } from "./Flags.js"
import * as Log from "./Log.js"
import * as Server from "./Server.js"
import { Shutdown } from "./Shutdown.js"

/** How long SIGTERM waits for WebSockets to close with "going away" before the server closes. */
const DrainMs = 3_000
/** The process exits by then whatever is still open. */
const ExitDeadlineMs = 10_000

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

const signal = Command.make("p2pal-signal", { port, host, trustProxy, limits }, ({ port, host, trustProxy, limits }) =>
  Layer.launch(
    Shutdown.drainOnExit(DrainMs).pipe(
      Layer.provide(Server.layer),
      Layer.provide(NodeHttpServer.layer(createServer, { port, host })),
      Layer.provide(Shutdown.layer),
      Layer.provide(MemoryTransferStore),
      Layer.provide(MemoryRateLimiter(limits)),
      Layer.provide(Layer.succeed(TrustProxy, trustProxy)),
    ),
  ),
)

const cli = Command.run(signal, { name: "p2pal-signal", version: "0.1.0" })

process.once("SIGTERM", () => setTimeout(() => process.exit(1), ExitDeadlineMs).unref())

// Logs and errors go to stderr: stdout carries only the listening line.
cli(process.argv).pipe(
  Effect.tapErrorCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(cause))),
  Effect.provide(Log.layer),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true }),
)
