import { layer } from "@effect/vitest"
import { PeerLink } from "@p2pal/infra/PeerLink"
import { Hasher } from "@p2pal/transfer/Hasher"
import { Progress } from "@p2pal/transfer/Progress"
import * as RateLimit from "@p2pal/transfer/RateLimit"
import * as Receiver from "@p2pal/transfer/Receiver"
import * as Sender from "@p2pal/transfer/Sender"
import * as Sources from "@p2pal/transfer/Sources"
import { Clock, Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { expect } from "vitest"
import { connectPair } from "./Loopback.js"
import { receiveOptions } from "./ReceiveOptions.js"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-throttle-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

const Size = 8 * 1024 * 1024
const Rate = 2 * 1024 * 1024
/** Loopback moves 8 MiB in well under a second: at the cap it takes Size / Rate = 4 s, within 15 %. */
const expectedMs = (Size / Rate) * 1000

/** Moves 8 MiB of random bytes between two real peers, capped on `side`; the wall time it took. */
const throttled = (side: "sender" | "receiver") =>
  Effect.gen(function* () {
    const root = yield* tempDir
    const src = path.join(root, "random.bin")
    const data = randomBytes(Size)
    yield* Effect.promise(() => fs.writeFile(src, data))
    const sources = yield* Sources.collect([src], false)
    const { offerer, answerer } = yield* connectPair
    const limit = yield* RateLimit.make(Rate)
    const start = yield* Clock.currentTimeMillis
    yield* Effect.all(
      [
        Sender.send(offerer, sources, {
          chunkSize: 63 * 1024,
          progress: new Progress(Size),
          limit: side === "sender" ? limit : undefined,
        }),
        Receiver.receive(
          answerer,
          receiveOptions(path.join(root, "out"), { limit: side === "receiver" ? limit : undefined }),
        ),
      ],
      { concurrency: 2 },
    )
    const elapsed = (yield* Clock.currentTimeMillis) - start
    expect(
      (yield* Effect.promise(() => fs.readFile(path.join(root, "out", "random.bin")))).equals(data),
    ).toBe(true)
    return elapsed
  })

// One node-datachannel runtime for the file: its cleanup() ends every connection in the process.
layer(Layer.merge(PeerLink.Default, Hasher.Default), { excludeTestServices: true })(
  "--limit-rate between two real peers",
  (it) => {
    for (const side of ["sender", "receiver"] as const)
      it.scoped(`the ${side}'s cap of 2 MiB/s moves 8 MiB in 4 s, within 15 %`, () =>
        Effect.gen(function* () {
          const elapsed = yield* throttled(side)
          expect(elapsed).toBeGreaterThan(expectedMs * 0.85)
          expect(elapsed).toBeLessThan(expectedMs * 1.15)
        }),
      )
  },
)
