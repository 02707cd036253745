import { HttpRouter, HttpServer } from "@effect/platform"
import { Console, Effect, Layer } from "effect"
import { ApiFailure, createTransfer, errorResponse, healthz, joinTransfer, readyz } from "./Api.js"
import { roomForTransfer, WebSockets } from "./Caps.js"
import * as ClientIp from "./ClientIp.js"
import * as Log from "./Log.js"
import * as Metrics from "./Metrics.js"
import { relay } from "./Relay.js"

export const app = HttpRouter.empty.pipe(
  HttpRouter.post("/api/transfer", createTransfer(roomForTransfer)),
  HttpRouter.post("/api/join", joinTransfer),
  HttpRouter.get(
    "/api/ws",
    Effect.flatMap(WebSockets, ({ admit }) => admit(relay)).pipe(
      Effect.catchTag("ApiFailure", errorResponse),
    ),
  ),
  HttpRouter.get("/healthz", healthz),
  HttpRouter.get("/readyz", readyz),
  Effect.catchTag("RouteNotFound", () =>
    errorResponse(new ApiFailure({ error: "not_found", message: "no such endpoint" })),
  ),
  Log.requests,
  ClientIp.middleware,
)

/** Serves `app`, then prints the one stdout line scripts wait for: the address actually bound. */
export const layer = Layer.scopedDiscard(
  Effect.gen(function* () {
    yield* Metrics.register
    yield* HttpServer.serveEffect(app)
    const url = yield* HttpServer.addressFormattedWith(Effect.succeed)
    yield* Effect.logInfo("listening").pipe(Effect.annotateLogs({ url }))
    yield* Console.log(`p2pal-signal listening on ${url}`)
  }),
)
