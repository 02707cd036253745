import { HttpRouter, HttpServer } from "@effect/platform"
import { Console, Effect, Layer } from "effect"
import { ApiFailure, createTransfer, errorResponse, healthz, joinTransfer, readyz } from "./Api.js"
import { relay } from "./Relay.js"

export const app = HttpRouter.empty.pipe(
  HttpRouter.post("/api/transfer", createTransfer),
  HttpRouter.post("/api/join", joinTransfer),
  HttpRouter.get("/api/ws", relay),
  HttpRouter.get("/healthz", healthz),
  HttpRouter.get("/readyz", readyz),
  Effect.catchTag("RouteNotFound", () =>
    errorResponse(new ApiFailure({ error: "not_found", message: "no such endpoint" })),
  ),
)

/** Serves `app`, then prints the one stdout line scripts wait for: the address actually bound. */
export const layer = Layer.scopedDiscard(
  Effect.gen(function* () {
    yield* HttpServer.serveEffect(app)
    const url = yield* HttpServer.addressFormattedWith(Effect.succeed)
    yield* Console.log(`p2pal-signal listening on ${url}`)
  }),
)
