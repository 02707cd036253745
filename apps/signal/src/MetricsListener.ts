import { createServer, type Server } from "node:http"
import { Console, Effect, Layer } from "effect"
import * as Metrics from "./Metrics.js"

/** The metrics listener could not bind its address. */
const bind = (port: number, host: string) =>
  Effect.async<Server, Error>((resume) => {
    const server = createServer((request, response) => {
      if (request.method !== "GET" || request.url?.split("?", 1)[0] !== "/metrics")
        return void response.writeHead(404).end()
      // The metric registry is global: any runtime reads the same values.
      Effect.runPromise(Metrics.text).then((body) =>
        response.writeHead(200, { "content-type": Metrics.ContentType }).end(body),
      )
    })
    server.once("error", (cause) => resume(Effect.fail(cause)))
    server.listen(port, host, () => resume(Effect.succeed(server)))
  })

const close = (server: Server) =>
  Effect.async<void>((resume) => {
    server.close(() => resume(Effect.void))
    server.closeAllConnections()
  })

/**
 * `GET /metrics` on a listener of its own, away from the public API port (a scraper on this host, or a
 * private network with --metrics-host). Prints `p2pal-signal metrics on URL` on stdout once bound.
 */
export const layer = (port: number, host: string) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const server = yield* Effect.acquireRelease(bind(port, host), close).pipe(
        Effect.catchAll((cause) =>
          Effect.zipRight(
            Effect.logError(
              `cannot listen for metrics on ${host}:${port}: ${cause.message}; pick another --metrics-port`,
            ),
            Effect.sync(() => process.exit(1)),
          ),
        ),
      )
      const address = server.address()
      const bound = typeof address === "object" && address !== null ? address.port : port
      const url = `http://${host.includes(":") ? `[${host}]` : host}:${bound}/metrics`
      yield* Effect.logInfo("metrics listening").pipe(Effect.annotateLogs({ url }))
      yield* Console.log(`p2pal-signal metrics on ${url}`)
    }),
  )
