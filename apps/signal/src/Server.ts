import { HttpApiBuilder, type HttpApp, HttpServer, type HttpServerError } from "@effect/platform"
import { NotFound, SignalHttpApi } from "@p2pal/domain/SignalHttpApi"
import type { TransferStore } from "@p2pal/infra/TransferStore"
import { Console, Effect, Layer } from "effect"
import { createTransfer, healthz, joinTransfer, readyz } from "./Api.js"
import { roomForTransfer, WebSockets } from "./Caps.js"
import type { TrustProxy } from "./ClientIp.js"
import * as Log from "./Log.js"
import * as Metrics from "./Metrics.js"
import { relay } from "./Relay.js"
import type { Shutdown } from "./Shutdown.js"

const Handlers = HttpApiBuilder.group(SignalHttpApi, "signal", (handlers) =>
  handlers
    // Raw: their bodies are read by Api.ts (decodeBody says why), then encoded by the builder.
    .handleRaw("create", () => createTransfer(roomForTransfer))
    .handleRaw("join", () => joinTransfer)
    .handle("healthz", () => healthz)
    .handle("readyz", () => readyz),
)

/** `GET /api/ws?token=…`, the relay, beside the declared endpoints; its refusals are encoded as theirs are. */
const WebSocketRoute = HttpApiBuilder.Router.use((router) =>
  Effect.flatMap(Effect.context<WebSockets | Shutdown | TransferStore | TrustProxy>(), (context) =>
    router.get(
      "/api/ws",
      Effect.flatMap(WebSockets, ({ admit }) => admit(relay)).pipe(Effect.provide(context)),
    ),
  ),
)

/** Any other path: the router fails with RouteNotFound (which the builder's types leave out), answered as a 404. */
const NoSuchEndpoint = HttpApiBuilder.middleware(
  SignalHttpApi,
  (app: HttpApp.Default<HttpServerError.RouteNotFound>) =>
    Effect.catchTag(app, "RouteNotFound", () => Effect.fail(new NotFound({ message: "no such endpoint" }))),
)

/** Serves the API, then prints the one stdout line scripts wait for: the address actually bound. */
export const layer = Layer.scopedDiscard(
  Effect.gen(function* () {
    yield* Metrics.register
    // Logged with the response the builder made of a failure (not HttpApiBuilder.serve's middleware,
    // which sees the server's own error handling too: a client that went away would log an error).
    yield* HttpServer.serveEffect(Log.requests(yield* HttpApiBuilder.httpApp))
    const url = yield* HttpServer.addressFormattedWith(Effect.succeed)
    yield* Effect.logInfo("listening").pipe(Effect.annotateLogs({ url }))
    yield* Console.log(`p2pal-signal listening on ${url}`)
  }),
).pipe(
  Layer.provide(
    Layer.mergeAll(
      HttpApiBuilder.middlewareOpenApi({ path: "/api/openapi.json" }),
      WebSocketRoute,
      NoSuchEndpoint,
    ),
  ),
  Layer.provide(HttpApiBuilder.api(SignalHttpApi).pipe(Layer.provide(Handlers))),
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer]),
)
