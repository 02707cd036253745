import { describe, expect, it } from "@effect/vitest"
import { Ids, type Manifest } from "@p2pal/domain"
import { IntegrityFailed, LocalIoFailed, PeerFailed } from "@p2pal/domain/Errors"
import { Checkpoints } from "@p2pal/transfer/Checkpoints"
import * as DurableFile from "@p2pal/transfer/DurableFile"
import { Hasher } from "@p2pal/transfer/Hasher"
import * as RecvCheckpoint from "@p2pal/transfer/RecvCheckpoint"
import { WriteBatchBytes } from "@p2pal/transfer/Wire"
import { Cause, ConfigProvider, Deferred, Duration, Effect, Exit, Fiber, Layer, Schema } from "effect"
import { execFile } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

const MiB = 1024 * 1024
const transferId = Schema.decodeSync(Ids.TransferId)("tr_durablefiletest01")

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-durable-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

const names = (dir: string) => Effect.promise(() => fs.readdir(dir).then((n) => n.sort()))
const sizeOf = (file: string) => Effect.promise(() => fs.stat(file).then((s) => s.size))
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest()

/** `bytes` in pieces of `size`, as chunk frames bring them. */
const chunks = (bytes: Uint8Array, size: number) =>
  Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => bytes.subarray(i * size, (i + 1) * size))

/** A real receiver checkpoint for one file `a.bin` of `size` bytes under `out`, in a store of its own. */
const checkpointFor = (out: string, size: number) =>
  Effect.gen(function* () {
    const home = yield* tempDir
    const store = yield* Effect.provide(
      Checkpoints,
      Checkpoints.Default.pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["P2PAL_HOME", home]])))),
      ),
    )
    const manifest: Manifest.Manifest = { version: 1, entries: [{ _tag: "file", path: "a.bin", size }] }
    const tracker = yield* RecvCheckpoint.open(
      { store, ttl: Duration.hours(1) },
      transferId,
      manifest,
      out,
      () => path.join(out, "a.bin"),
    )
    const state = tracker.files.get(0)!
    /** What the store holds of the file now. */
    const stored = Effect.map(store.load(transferId, "recv"), (c) =>
      c.direction === "recv" ? c.files[0] : undefined,
    )
    return { checkpoint: { state, save: tracker.save }, stored }
  })

/** Appends every piece, as the receiver does, writing whenever a batch is full; then writes the rest. */
const appendAll = (file: DurableFile.DurableFile, pieces: ReadonlyArray<Uint8Array>) =>
  Effect.gen(function* () {
    for (const piece of pieces) yield* file.append(piece)
    yield* file.write
  })

describe("DurableFile", () => {
  it.scoped(
    "writes the first chunk at once, then batches up to each WriteBatchBytes boundary, at their offsets, hashes what it wrote, and moves it into place only when placed",
    () =>
      Effect.gen(function* () {
        const out = yield* tempDir
        const target = path.join(out, "a.bin")
        const bytes = randomBytes(2 * WriteBatchBytes + 12345)
        yield* DurableFile.use({ target, size: bytes.length, overwrite: false }, (file) =>
          Effect.gen(function* () {
            const [temp] = yield* names(out)
            expect(temp).toMatch(/^\.a\.bin\.[0-9a-f]{8}\.p2pal-part$/)
            const wroteAt: Array<number> = []
            for (const piece of chunks(bytes, 64 * 1024)) {
              if (yield* file.append(piece)) {
                wroteAt.push(file.written)
                expect(yield* sizeOf(path.join(out, temp!))).toBe(file.written)
              }
            }
            expect(wroteAt).toEqual([64 * 1024, WriteBatchBytes, 2 * WriteBatchBytes])
            expect(file.received).toBe(bytes.length)
            expect(yield* file.write).toBe(true)
            expect(yield* file.write).toBe(false)
            expect(file.written).toBe(bytes.length)
            expect(Buffer.from(yield* file.digest)).toEqual(sha256(bytes))
            // Written and verified, but nothing is at the target until it is placed.
            expect(yield* names(out)).toEqual([temp])
            yield* file.place
          }),
        )
        expect(yield* names(out)).toEqual(["a.bin"])
        expect((yield* Effect.promise(() => fs.readFile(target))).equals(bytes)).toBe(true)
      }).pipe(Effect.provide(Hasher.Default)),
  )

  it.scoped(
    "a resume continues after the durable bytes: a torn tail is cut, and the hash covers the whole file",
    () =>
      Effect.gen(function* () {
        const out = yield* tempDir
        const bytes = randomBytes(3 * MiB)
        const durable = MiB + 7
        const { checkpoint } = yield* checkpointFor(out, bytes.length)
        const temp = ".a.bin.0123abcd.p2pal-part"
        // What a crash leaves: the durable bytes, then some that never reached the disk whole.
        yield* Effect.promise(() =>
          fs.writeFile(path.join(out, temp), Buffer.concat([bytes.subarray(0, durable), randomBytes(5000)])),
        )
        Object.assign(checkpoint.state, { temp, durable })
        yield* DurableFile.use(
          { target: path.join(out, "a.bin"), size: bytes.length, overwrite: false, checkpoint },
          (file) =>
            Effect.gen(function* () {
              expect(file.received).toBe(durable)
              expect(yield* sizeOf(path.join(out, temp))).toBe(durable)
              yield* appendAll(file, chunks(bytes.subarray(durable), 60_000))
              expect(Buffer.from(yield* file.digest)).toEqual(sha256(bytes))
              yield* file.place
            }),
        )
        expect(yield* names(out)).toEqual(["a.bin"])
        expect((yield* Effect.promise(() => fs.readFile(path.join(out, "a.bin")))).equals(bytes)).toBe(true)
      }).pipe(Effect.provide(Hasher.Default)),
  )

  it.scoped(
    "flushes in the background as the file grows; the checkpoint follows what is durable and records the file verified before it moves",
    () =>
      Effect.gen(function* () {
        const out = yield* tempDir
        const target = path.join(out, "a.bin")
        const bytes = randomBytes(DurableFile.DurableBytes + 2 * WriteBatchBytes)
        const { checkpoint, stored } = yield* checkpointFor(out, bytes.length)
        yield* DurableFile.use({ target, size: bytes.length, overwrite: false, checkpoint }, (file) =>
          Effect.gen(function* () {
            const temp = checkpoint.state.temp
            const pieces = chunks(bytes, WriteBatchBytes)
            for (const piece of pieces.slice(0, -2)) expect(yield* file.append(piece)).toBe(true)
            // The flush asked for at DurableBytes: once it is done, the next write records it.
            yield* file.flushed
            expect(checkpoint.state.durable).toBe(0)
            yield* file.append(pieces.at(-2)!)
            expect(checkpoint.state.durable).toBe(DurableFile.DurableBytes)
            expect(yield* stored).toEqual({
              index: 0,
              temp,
              durable: DurableFile.DurableBytes,
              verified: false,
            })
            // The rest is written, not yet flushed: the checkpoint stays where the disk is.
            yield* file.append(pieces.at(-1)!)
            expect(file.written).toBe(bytes.length)
            expect((yield* stored)?.durable).toBe(DurableFile.DurableBytes)
            yield* file.place
            // Recorded under its temporary name, the move a resume finishes if the receiver stops now.
            expect(yield* stored).toEqual({ index: 0, temp, durable: bytes.length, verified: true })
            expect(checkpoint.state).toEqual({ temp: undefined, durable: bytes.length, verified: true })
          }),
        )
        expect(yield* names(out)).toEqual(["a.bin"])
      }).pipe(Effect.provide(Hasher.Default)),
  )

  describe("the temporary file, when the transfer stops", () => {
    /** Writes 2 MiB + a bit of a 3 MiB file, then ends as `stop` does; tells what is left and what is stored. */
    const stopWith = <E>(stop: Effect.Effect<never, E>, withCheckpoint: boolean) =>
      Effect.gen(function* () {
        const out = yield* tempDir
        const size = 3 * MiB
        const { checkpoint, stored } = yield* checkpointFor(out, size)
        const written = yield* Deferred.make<void>()
        const running = yield* Effect.fork(
          DurableFile.use(
            {
              target: path.join(out, "a.bin"),
              size,
              overwrite: false,
              checkpoint: withCheckpoint ? checkpoint : undefined,
            },
            (file) =>
              Effect.gen(function* () {
                yield* appendAll(file, chunks(randomBytes(2 * MiB + 100), 64 * 1024))
                yield* Deferred.succeed(written, undefined)
                return yield* stop
              }),
          ),
        )
        yield* Deferred.await(written)
        const exit = yield* Fiber.interrupt(running)
        const left = yield* names(out)
        return {
          exit,
          left,
          sizes: yield* Effect.forEach(left, (n) => sizeOf(path.join(out, n))),
          stored,
          checkpoint,
        }
      }).pipe(Effect.provide(Hasher.Default))

    it.scoped(
      "Ctrl+C (interruption) with a checkpoint: kept, synced, and recorded with what was written",
      () =>
        Effect.gen(function* () {
          const { exit, left, sizes, stored, checkpoint } = yield* stopWith(Effect.never, true)
          expect(Exit.isInterrupted(exit)).toBe(true)
          expect(left).toEqual([checkpoint.state.temp])
          expect(sizes).toEqual([2 * MiB + 100])
          expect(yield* stored).toEqual({
            index: 0,
            temp: checkpoint.state.temp,
            durable: 2 * MiB + 100,
            verified: false,
          })
        }),
    )

    it.scoped("a lost peer with a checkpoint: kept and recorded", () =>
      Effect.gen(function* () {
        const lost = new PeerFailed({ message: "the peer closed the connection", lost: true })
        const { exit, left, stored, checkpoint } = yield* stopWith(Effect.fail(lost), true)
        expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toBe(lost)
        expect(left).toEqual([checkpoint.state.temp])
        expect((yield* stored)?.durable).toBe(2 * MiB + 100)
      }),
    )

    it.scoped("any other failure (a bad hash, a peer breaking the protocol): removed", () =>
      Effect.gen(function* () {
        const bad = new IntegrityFailed({ path: "a.bin" })
        const { exit, left } = yield* stopWith(Effect.fail(bad), true)
        expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toBe(bad)
        expect(left).toEqual([])
      }),
    )

    it.scoped("Ctrl+C without a checkpoint: removed", () =>
      Effect.gen(function* () {
        const { exit, left } = yield* stopWith(Effect.never, false)
        expect(Exit.isInterrupted(exit)).toBe(true)
        expect(left).toEqual([])
      }),
    )

    it.scoped("a file the sender skipped: removed, and the checkpoint forgets it", () =>
      Effect.gen(function* () {
        const out = yield* tempDir
        const { checkpoint } = yield* checkpointFor(out, 3 * MiB)
        yield* DurableFile.use(
          { target: path.join(out, "a.bin"), size: 3 * MiB, overwrite: false, checkpoint },
          (file) => Effect.zipRight(appendAll(file, [randomBytes(MiB + 1)]), file.discard),
        ).pipe(Effect.provide(Hasher.Default))
        expect(yield* names(out)).toEqual([])
        expect(checkpoint.state).toEqual({ temp: undefined, durable: 0, verified: false })
      }),
    )
  })

  /** A real full disk: a tmpfs smaller than the file, which only root can mount. */
  const canMount = process.getuid?.() === 0
  it.scopedLive.skipIf(!canMount && process.env.CI !== "true")(
    canMount
      ? "a write the disk refuses (full) fails as LocalIoFailed naming the file, and the temporary file is removed"
      : "SKIPPED: mounting a small tmpfs to fill up needs root",
    () =>
      Effect.gen(function* () {
        expect(canMount, "run as root: the test mounts a 1 MiB tmpfs").toBe(true)
        const out = yield* tempDir
        yield* Effect.acquireRelease(
          Effect.promise(() => promisify(execFile)("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", out])),
          () => Effect.promise(() => promisify(execFile)("umount", [out])),
        )
        const target = path.join(out, "a.bin")
        const error = yield* DurableFile.use({ target, size: 4 * MiB, overwrite: false }, (file) =>
          appendAll(file, chunks(randomBytes(4 * MiB), 64 * 1024)),
        ).pipe(Effect.provide(Hasher.Default), Effect.flip)
        expect(error).toBeInstanceOf(LocalIoFailed)
        expect(error).toMatchObject({
          path: target,
          message: expect.stringMatching(/ENOSPC/),
          diskFull: true,
        })
        expect(yield* names(out)).toEqual([])
      }),
  )
})
