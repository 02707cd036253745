import { layer } from "@effect/vitest"
import { type Channel, PeerLink } from "@p2pal/infra/PeerLink"
import * as Receiver from "@p2pal/transfer/Receiver"
import * as Sender from "@p2pal/transfer/Sender"
import * as Sources from "@p2pal/transfer/Sources"
import { Progress } from "@p2pal/transfer/Progress"
import { Effect, Exit, Layer } from "effect"
import { Hasher } from "@p2pal/transfer/Hasher"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { expect } from "vitest"
import { connectPair } from "./Loopback.js"
import { receiveOptions } from "./ReceiveOptions.js"
import { frameReader, sendFrame, WriteBatchBytes } from "@p2pal/transfer/Wire"
import { Manifest } from "@p2pal/domain"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-transfer-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

// One node-datachannel runtime for the file: its cleanup() ends every connection in the process.
layer(Layer.merge(PeerLink.Default, Hasher.Default), { excludeTestServices: true })(
  "transfers between two real peers",
  (it) => {
    it.scoped("moves a directory tree between two real peers, byte for byte", () =>
      Effect.gen(function* () {
        const root = yield* tempDir
        const src = path.join(root, "src", "tree")
        const out = path.join(root, "out")
        yield* Effect.promise(async () => {
          await fs.mkdir(path.join(src, "nested", "deeper"), { recursive: true })
          await fs.mkdir(path.join(src, "empty dir"), { recursive: true })
          await fs.writeFile(path.join(src, "nested", "deeper", "big.bin"), randomBytes(3 * 1024 * 1024 + 17))
          await fs.writeFile(path.join(src, "empty.txt"), "")
          await fs.writeFile(path.join(src, "naïve café.txt"), "bonjour\n")
        })
        const sources = yield* Sources.collect([src], true)
        const { offerer, answerer } = yield* connectPair
        const progress = new Progress(0)
        yield* Effect.all(
          [
            Sender.send(offerer, sources, { chunkSize: 63 * 1024, progress }),
            Receiver.receive(answerer, receiveOptions(out)),
          ],
          { concurrency: 2 },
        )
        for (const rel of ["nested/deeper/big.bin", "empty.txt", "naïve café.txt"]) {
          const [a, b] = yield* Effect.promise(() =>
            Promise.all([fs.readFile(path.join(src, rel)), fs.readFile(path.join(out, "tree", rel))]),
          )
          expect(b.equals(a)).toBe(true)
        }
        expect(
          (yield* Effect.promise(() => fs.stat(path.join(out, "tree", "empty dir")))).isDirectory(),
        ).toBe(true)
        expect(yield* Effect.promise(() => fs.readdir(path.join(out, "tree", "nested", "deeper")))).toEqual([
          "big.bin",
        ])
      }),
    )

    it.scoped("refuses to overwrite an existing file and writes nothing", () =>
      Effect.gen(function* () {
        const root = yield* tempDir
        const file = path.join(root, "report.txt")
        const out = path.join(root, "out")
        yield* Effect.promise(async () => {
          await fs.writeFile(file, "new contents")
          await fs.mkdir(out)
          await fs.writeFile(path.join(out, "report.txt"), "precious")
        })
        const sources = yield* Sources.collect([file], false)
        const { offerer, answerer } = yield* connectPair
        const [sent, received] = yield* Effect.all(
          [
            Effect.exit(Sender.send(offerer, sources, { chunkSize: 1024, progress: new Progress(0) })),
            Effect.exit(Receiver.receive(answerer, receiveOptions(out))),
          ],
          { concurrency: 2 },
        )
        expect(Exit.isFailure(sent) && Exit.isFailure(received)).toBe(true)
        expect(received).toMatchObject({ cause: { error: { _tag: "LocalIoFailed" } } })
        expect(yield* Effect.promise(() => fs.readFile(path.join(out, "report.txt"), "utf8"))).toBe(
          "precious",
        )
        expect(yield* Effect.promise(() => fs.readdir(out))).toEqual(["report.txt"])
      }),
    )

    it.scoped("rejects a file whose SHA-256 does not match, naming it, and leaves nothing behind", () =>
      Effect.gen(function* () {
        const out = yield* tempDir
        const { offerer, answerer } = yield* connectPair
        const manifest = Manifest.encodeManifest({
          version: 1,
          entries: [{ _tag: "file", path: "tampered.bin", size: 4 }],
        })
        const rogue = Effect.gen(function* () {
          yield* sendFrame(offerer, {
            _tag: "ManifestPart",
            total: manifest.length,
            offset: 0,
            bytes: manifest,
          })
          const nextFrame = frameReader(offerer)
          expect((yield* nextFrame)._tag).toBe("Accept")
          yield* sendFrame(offerer, {
            _tag: "Chunk",
            file: 0,
            offset: 0,
            bytes: new Uint8Array([1, 2, 3, 4]),
          })
          yield* sendFrame(offerer, { _tag: "FileEnd", file: 0, size: 4, sha256: new Uint8Array(32) })
          return yield* nextFrame.pipe(Effect.repeat({ while: (frame) => frame._tag === "Ack" }))
        })
        const [reply, received] = yield* Effect.all(
          [rogue, Effect.exit(Receiver.receive(answerer, receiveOptions(out)))],
          {
            concurrency: 2,
          },
        )
        expect(reply).toMatchObject({ _tag: "Error", message: expect.stringContaining("tampered.bin") })
        expect(received).toMatchObject({
          cause: { error: { _tag: "IntegrityFailed", path: "tampered.bin" } },
        })
        expect(yield* Effect.promise(() => fs.readdir(out))).toEqual([])
      }),
    )

    /** Every entry under `dir`, relative, directories ending with "/": what a transfer left on disk. */
    const scan = (dir: string) =>
      Effect.promise(async () =>
        (await fs.readdir(dir, { recursive: true, withFileTypes: true }))
          .map((e) => path.relative(dir, path.join(e.parentPath, e.name)) + (e.isDirectory() ? "/" : ""))
          .sort(),
      )

    /** A rogue sender's manifest, sent raw: the receiver decodes it as if it came from anyone. */
    const sendManifest = (channel: Channel, entries: ReadonlyArray<Manifest.Entry>) => {
      const bytes = Manifest.encodeManifest({ version: 1, entries })
      return sendFrame(channel, { _tag: "ManifestPart", total: bytes.length, offset: 0, bytes })
    }

    const hostile: ReadonlyArray<{
      readonly name: string
      readonly entries: (root: string) => ReadonlyArray<Manifest.Entry>
      readonly rule: string
    }> = [
      {
        name: "a .. path",
        entries: () => [
          { _tag: "file", path: "fine.txt", size: 1 },
          { _tag: "file", path: "../escape.txt", size: 1 },
        ],
        rule: '"../escape.txt": ".." components are not allowed',
      },
      {
        name: "an absolute path",
        // Absolute, and pointing right next to the out dir: where it would land if it were obeyed.
        entries: (root) => [{ _tag: "file", path: `${root}/absolute.txt`, size: 1 }],
        rule: "absolute paths are not allowed",
      },
    ]
    for (const { name, entries, rule } of hostile)
      it.scoped(`refuses a manifest with ${name} before touching the disk, and tells the sender`, () =>
        Effect.gen(function* () {
          const root = yield* tempDir
          const out = path.join(root, "out")
          const { offerer, answerer } = yield* connectPair
          let confirmed = false
          const rogue = Effect.gen(function* () {
            yield* sendManifest(offerer, entries(root))
            return yield* frameReader(offerer)
          })
          const [reply, received] = yield* Effect.all(
            [
              rogue,
              Effect.exit(
                Receiver.receive(
                  answerer,
                  receiveOptions(out, { confirm: () => Effect.sync(() => (confirmed = true)) }),
                ),
              ),
            ],
            { concurrency: 2 },
          )
          expect(reply._tag).toBe("Reject")
          expect(received).toMatchObject({
            cause: { error: { _tag: "PeerFailed", message: expect.stringContaining(rule) } },
          })
          expect(confirmed).toBe(false)
          // Nothing in the out dir (not even the dir itself) nor beside it, where an escape would land.
          expect(yield* scan(root)).toEqual([])
        }),
      )

    it.scoped("stops a sender that sends more bytes than it declared: no file, no temporary file", () =>
      Effect.gen(function* () {
        const out = yield* tempDir
        const { offerer, answerer } = yield* connectPair
        // Over one write batch, so part of the file is on disk (in its temporary) when the excess comes.
        const size = WriteBatchBytes + 10
        const chunk = 63 * 1024
        const rogue = Effect.gen(function* () {
          yield* sendManifest(offerer, [{ _tag: "file", path: "over.bin", size }])
          const nextFrame = frameReader(offerer)
          expect((yield* nextFrame)._tag).toBe("Accept")
          const data = randomBytes(size + 1)
          for (let offset = 0; offset < size; offset += chunk)
            yield* sendFrame(offerer, {
              _tag: "Chunk",
              file: 0,
              offset,
              bytes: data.subarray(offset, Math.min(offset + chunk, size)),
            })
          // The receiver acknowledges what it wrote: the temporary file now holds real bytes.
          const ack = yield* nextFrame
          expect(ack).toMatchObject({ _tag: "Ack", bytes: expect.any(Number) })
          expect(yield* scan(out)).toEqual([expect.stringMatching(/^\.over\.bin\.[0-9a-f]+\.p2pal-part$/)])
          // One byte past the declared size.
          yield* sendFrame(offerer, { _tag: "Chunk", file: 0, offset: size, bytes: data.subarray(size) })
        })
        const [, received] = yield* Effect.all(
          [rogue, Effect.exit(Receiver.receive(answerer, receiveOptions(out)))],
          { concurrency: 2 },
        )
        expect(received).toMatchObject({
          cause: {
            error: {
              _tag: "PeerFailed",
              message: expect.stringContaining("sent more bytes than declared for over.bin"),
            },
          },
        })
        expect(yield* scan(out)).toEqual([])
      }),
    )

    /** Sends `text` (compressible) as log.txt to a receiver offering `codecs`; the sender's counters. */
    const sendText = (codecs: ReadonlyArray<"zstd"> | undefined) =>
      Effect.gen(function* () {
        const root = yield* tempDir
        const src = path.join(root, "log.txt")
        const out = path.join(root, "out")
        const text = Buffer.from("GET /index.html 200 0.004s\n".repeat(200_000))
        yield* Effect.promise(() => fs.writeFile(src, text))
        const sources = yield* Sources.collect([src], false)
        const { offerer, answerer } = yield* connectPair
        const progress = new Progress(0)
        yield* Effect.all(
          [
            Sender.send(offerer, sources, { chunkSize: 63 * 1024, progress }),
            Receiver.receive(answerer, receiveOptions(out, { codecs })),
          ],
          { concurrency: 2 },
        )
        expect((yield* Effect.promise(() => fs.readFile(path.join(out, "log.txt")))).equals(text)).toBe(true)
        return progress
      })

    it.scoped("compresses file bytes for a receiver that offers zstd, and the file arrives whole", () =>
      Effect.gen(function* () {
        const progress = yield* sendText(undefined)
        expect(progress.compressing).toBe(true)
        expect(progress.original).toBe(5_400_000)
        expect(progress.wire).toBeLessThan(progress.original / 20)
      }),
    )

    it.scoped("sends raw frames to a receiver that offers no codec", () =>
      Effect.gen(function* () {
        const progress = yield* sendText([])
        expect(progress.compressing).toBe(false)
        expect(progress.wire).toBeGreaterThan(progress.original)
      }),
    )
  },
)
