import { layer } from "@effect/vitest"
import type { Frames } from "@p2pal/domain"
import { PeerLink } from "@p2pal/infra/PeerLink"
import { Hasher } from "@p2pal/transfer/Hasher"
import { Progress } from "@p2pal/transfer/Progress"
import * as Sender from "@p2pal/transfer/Sender"
import * as Sources from "@p2pal/transfer/Sources"
import { frameReader, sendFrame } from "@p2pal/transfer/Wire"
import { Effect, Exit, Layer } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { expect } from "vitest"
import { connectPair } from "./Loopback.js"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-hostile-receiver-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

/** A directory "d" holding a.bin (10 bytes) and b.bin (20 bytes): entries 0 (d), 1 and 2. */
const sourcesIn = (root: string) =>
  Effect.gen(function* () {
    const dir = path.join(root, "d")
    const a = randomBytes(10)
    const b = randomBytes(20)
    yield* Effect.promise(async () => {
      await fs.mkdir(dir)
      await fs.writeFile(path.join(dir, "a.bin"), a)
      await fs.writeFile(path.join(dir, "b.bin"), b)
    })
    return { sources: yield* Sources.collect([dir], true), b }
  })

/**
 * Reads the manifest, answers with `replies`, and returns what the sender sends up to its first FileEnd
 * or Error; after a FileEnd it reports the transfer verified, so the sender ends too.
 */
const rogueReceiver = (channel: Parameters<typeof frameReader>[0], replies: ReadonlyArray<Frames.Frame>) =>
  Effect.gen(function* () {
    const nextFrame = frameReader(channel)
    let frame = yield* nextFrame
    while (frame._tag === "ManifestPart" && frame.offset + frame.bytes.length < frame.total)
      frame = yield* nextFrame
    for (const reply of replies) yield* sendFrame(channel, reply)
    const heard: Array<Frames.Frame> = []
    while (heard.at(-1)?._tag !== "FileEnd" && heard.at(-1)?._tag !== "Error") heard.push(yield* nextFrame)
    if (heard.at(-1)?._tag === "FileEnd") yield* sendFrame(channel, { _tag: "Done" })
    return heard
  })

const rows: ReadonlyArray<{
  readonly name: string
  readonly replies: ReadonlyArray<Frames.Frame>
  readonly changed?: ReadonlyArray<number>
  readonly says: string
}> = [
  {
    name: "a file index past the manifest",
    replies: [{ _tag: "ResumeFrom", file: 7, offset: 1 }],
    says: "file 7, which is not in the list",
  },
  {
    name: "a directory's index",
    replies: [{ _tag: "ResumeFrom", file: 0, offset: 0 }],
    says: "file 0, which is not in the list",
  },
  {
    name: "an offset past the file's size",
    replies: [{ _tag: "ResumeFrom", file: 1, offset: 11 }],
    says: "d/a.bin at 11, past its 10 bytes",
  },
  {
    name: "the same file twice",
    replies: [
      { _tag: "ResumeFrom", file: 1, offset: 10 },
      { _tag: "ResumeFrom", file: 1, offset: 10 },
    ],
    says: "d/a.bin twice",
  },
  {
    name: "a file the sender marked changed",
    replies: [{ _tag: "ResumeFrom", file: 2, offset: 5 }],
    changed: [2],
    says: "d/b.bin, which changed and comes whole",
  },
]

// One node-datachannel runtime for the file: its cleanup() ends every connection in the process.
layer(Layer.merge(PeerLink.Default, Hasher.Default), { excludeTestServices: true })(
  "a hostile receiver's ResumeFrom list",
  (it) => {
    for (const row of rows)
      it.scoped(`the sender refuses ${row.name}, tells the receiver and sends no data`, () =>
        Effect.gen(function* () {
          const { sources } = yield* sourcesIn(yield* tempDir)
          const offered =
            row.changed === undefined
              ? sources
              : { ...sources, manifest: { ...sources.manifest, changed: row.changed } }
          const { offerer, answerer } = yield* connectPair
          const [sent, heard] = yield* Effect.all(
            [
              Effect.exit(Sender.send(offerer, offered, { chunkSize: 1024, progress: new Progress(0) })),
              rogueReceiver(answerer, [...row.replies, { _tag: "Accept", codecs: [] }]),
            ],
            { concurrency: 2 },
          )
          const message = `protocol error: the receiver asked to resume ${row.says}`
          expect(sent).toMatchObject({ cause: { error: { _tag: "PeerFailed", message } } })
          expect(heard).toEqual([{ _tag: "Error", message }])
        }),
      )

    it.scoped(
      "sends a file from the offset asked for, with the whole file's SHA-256, and skips a verified one",
      () =>
        Effect.gen(function* () {
          const { sources, b } = yield* sourcesIn(yield* tempDir)
          const { offerer, answerer } = yield* connectPair
          const [sent, heard] = yield* Effect.all(
            [
              Effect.exit(Sender.send(offerer, sources, { chunkSize: 1024, progress: new Progress(0) })),
              rogueReceiver(answerer, [
                { _tag: "ResumeFrom", file: 1, offset: 10 },
                { _tag: "ResumeFrom", file: 2, offset: 15 },
                { _tag: "Accept", codecs: [] },
              ]),
            ],
            { concurrency: 2 },
          )
          expect(Exit.isSuccess(sent)).toBe(true)
          expect(heard).toEqual([
            { _tag: "Chunk", file: 2, offset: 15, bytes: b.subarray(15) },
            {
              _tag: "FileEnd",
              file: 2,
              size: 20,
              sha256: createHash("sha256").update(b).digest(),
            },
          ])
        }),
    )
  },
)
