import { layer } from "@effect/vitest"
import { PeerLink } from "@p2pal/infra/PeerLink"
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
import { frameReader, sendFrame } from "@p2pal/transfer/Wire"
import { Manifest } from "@p2pal/domain"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-transfer-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

const receiveOptions = (
  out: string,
  overrides: Partial<Receiver.ReceiveOptions> = {},
): Receiver.ReceiveOptions => ({
  out,
  overwrite: false,
  confirm: () => Effect.succeed(true),
  onStart: () => Effect.void,
  ...overrides,
})

// One node-datachannel runtime for the file: its cleanup() ends every connection in the process.
layer(Layer.merge(PeerLink.layer, Hasher.layer), { excludeTestServices: true })(
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
  },
)
