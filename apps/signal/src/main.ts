#!/usr/bin/env node
import { createServer } from "node:http"
import { Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { NodeContext, NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { layer as MemoryRateLimiter } from "@p2pal/infra/MemoryRateLimiter"
import { layer as MemoryTransferStore } from "@p2pal/infra/MemoryTransferStore"
import type { Limits } from "@p2pal/infra/RateLimiter"
import * as Redis from "@p2pal/infra/Redis"
import { layer as RedisRateLimiter } from "@p2pal/infra/RedisRateLimiter"
import { layer as RedisTransferStore } from "@p2pal/infra/RedisTransferStore"
import { Cause, Config, Effect, Either, Layer, Option } from "effect"
import { Caps, WebSockets } from "./Caps.js"
import { TrustProxy } from "./ClientIp.js"
import { caps, limits, metricsHost, metricsPort, trustProxy, turn } from "./Flags.js"
import { IceServers } from "./IceServers.js"
import * as Log from "./Log.js"
import * as MetricsListener from "./MetricsListener.js"
import * as Server from "./Server.js"
import { Shutdown } from "./Shutdown.js"

/** How long SIGTERM waits for WebSockets to close with "going away" before the server closes. */
const DrainMs = 3_000
/** The process exits by then whatever is still open. */
const ExitDeadlineMs = 10_000

const port = Options.integer("port").pipe(
  Options.withDescription("TCP port to listen on, 0 (picks a free one) to 65535; env PORT; default 8080"),
  Options.filterMap(
    (n) => (n >= 0 && n <= 65535 ? Option.some(n) : Option.none()),
    "p2pal-signal: --port must be between 0 and 65535",
  ),
  Options.withDefault(8080),
  Options.withFallbackConfig(Config.integer("PORT")),
)

const host = Options.text("host").pipe(
  Options.withDescription("address to listen on; env HOST"),
  Options.withDefault("0.0.0.0"),
  Options.withFallbackConfig(Config.string("HOST")),
)

const redis = Options.text("redis").pipe(
  Options.withDescription(
    "Redis URL (redis://[:password@]host:6379[/db]) whose state every instance shares, so any number " +
      "of them can run behind a load balancer; a Redis Cluster as redis+cluster://[:password@]host:port" +
      "[,host:port...]; env REDIS_URL. Without it: one instance, state in memory",
  ),
  Options.withFallbackConfig(Config.string("REDIS_URL")),
  Options.mapEffect((url) =>
    Either.mapBoth(Redis.clusterSeeds(url), {
      onLeft: (expected) => ValidationError.invalidValue(HelpDoc.p(`--redis: ${expected}`)),
      onRight: () => url,
    }),
  ),
  Options.optional,
)

/** Transfers and rate-limit counters: in this process, or in Redis for every instance. */
const stores = (redis: Option.Option<string>, limits: Limits) =>
  Option.match(redis, {
    onNone: () => Layer.merge(MemoryTransferStore, MemoryRateLimiter(limits)),
    onSome: (url) =>
      Layer.merge(RedisTransferStore(), RedisRateLimiter(limits)).pipe(Layer.provide(Redis.layer(url))),
  })

/**
 * A client must send its request line and headers within HeadersTimeoutMs and the whole request (a body is
 * at most 4 KiB) within RequestTimeoutMs of connecting, or its socket is closed: slow clients cannot hold
 * sockets open. Node checks every CheckIntervalMs (30 s by default, which would let them hold on longer).
 */
const HeadersTimeoutMs = 5_000
const RequestTimeoutMs = 10_000
const CheckIntervalMs = 1_000

const signal = Command.make(
  "p2pal-signal",
  { port, host, trustProxy, limits, caps, redis, turn, metricsPort, metricsHost },
  ({ port, host, trustProxy, limits, caps, redis, turn, metricsPort, metricsHost }) =>
    Effect.suspend(() => {
      const server = createServer({
        headersTimeout: HeadersTimeoutMs,
        requestTimeout: RequestTimeoutMs,
        connectionsCheckingInterval: CheckIntervalMs,
      })
      // close() stops accepting at once; open connections go on until they end.
      const stopListening = Effect.sync(() => void server.close())
      return Layer.launch(
        Shutdown.drainOnExit(stopListening, DrainMs).pipe(
          Layer.provide(Server.layer),
          Layer.provide(NodeHttpServer.layer(() => server, { port, host })),
          // Bound before the API port, so its line is on stdout before the listening line scripts wait for.
          Layer.provide(MetricsListener.layer(metricsPort, metricsHost)),
          Layer.provide(WebSockets.layer),
          Layer.provide(Layer.succeed(Caps, caps)),
          Layer.provide(Shutdown.layer),
          Layer.provide(stores(redis, limits)),
          Layer.provide(Layer.succeed(TrustProxy, trustProxy)),
          Layer.provide(
            Option.match(turn, {
              onNone: () => IceServers.none,
              onSome: ({ urls, secret }) => IceServers.turnRest(urls, secret),
            }),
          ),
        ),
      ).pipe(
        // One sentence instead of the stack of a port already taken or not ours to bind.
        Effect.catchTag("ServeError", ({ cause }) => {
          const code = (cause as NodeJS.ErrnoException | undefined)?.code
          const why = code === "EADDRINUSE" ? "the address is already in use" : String(cause)
          return Effect.zipRight(
            Effect.logError(`cannot listen on ${host}:${port}: ${why}; pick another --port or --host`),
            Effect.sync(() => process.exit(1)),
          )
        }),
      )
    }),
)

const cli = Command.run(signal, { name: "p2pal-signal", version: "0.1.0" })

process.once("SIGTERM", () => setTimeout(() => process.exit(1), ExitDeadlineMs).unref())

// Logs and errors go to stderr: stdout carries only the two listening lines (metrics, API).
cli(process.argv).pipe(
  // @effect/cli has printed what is wrong with the command line: a usage error, exit 2.
  Effect.catchIf(ValidationError.isValidationError, () => Effect.sync(() => process.exit(2))),
  Effect.tapErrorCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(cause))),
  Effect.provide(Log.layer),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true }),
)
