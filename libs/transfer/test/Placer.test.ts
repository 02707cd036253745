import { describe, expect, it } from "@effect/vitest"
import { Ids, type Manifest } from "@p2pal/domain"
import { Checkpoints } from "@p2pal/transfer/Checkpoints"
import * as DurableFile from "@p2pal/transfer/DurableFile"
import { Hasher } from "@p2pal/transfer/Hasher"
import * as Placer from "@p2pal/transfer/Placer"
import * as RecvCheckpoint from "@p2pal/transfer/RecvCheckpoint"
import { ConfigProvider, Deferred, Duration, Effect, Exit, Layer, Schema, TestClock } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

const transferId = Schema.decodeSync(Ids.TransferId)("tr_placertest0000001")

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-placer-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)
const names = (dir: string) => Effect.promise(() => fs.readdir(dir).then((n) => n.sort()))
const read = (file: string) => Effect.promise(() => fs.readFile(file))

/** `count` small files f0.bin, f1.bin... under `out`, with a real receiver checkpoint in a store under `home`. */
const setup = (count: number) =>
  Effect.gen(function* () {
    const out = yield* tempDir
    const home = yield* tempDir
    const store = yield* Effect.provide(
      Checkpoints,
      Checkpoints.Default.pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["P2PAL_HOME", home]])))),
      ),
    )
    const contents = Array.from({ length: count }, (_, i) => randomBytes(1000 + i))
    const manifest: Manifest.Manifest = {
      version: 1,
      entries: contents.map((c, i) => ({ _tag: "file", path: `f${i}.bin`, size: c.length })),
    }
    const openTracker = RecvCheckpoint.open(
      { store, ttl: Duration.hours(1) },
      transferId,
      manifest,
      out,
      (e) => path.join(out, e.path),
    )
    return { out, home, contents, openTracker, tracker: yield* openTracker }
  })

/** Receives file `i` whole through DurableFile and hands it to `placer`. */
const receive = (
  out: string,
  tracker: RecvCheckpoint.Tracker,
  save: Effect.Effect<void, never>,
  placer: Placer.Placer,
  i: number,
  bytes: Uint8Array,
) =>
  DurableFile.use(
    {
      target: path.join(out, `f${i}.bin`),
      size: bytes.length,
      overwrite: false,
      checkpoint: { state: tracker.files.get(i)!, save },
      placer,
    },
    (file) => Effect.zipRight(file.append(bytes), Effect.zipRight(file.write, file.place)),
  )

describe("Placer", () => {
  it.scoped(
    "places a full group with one save, made while every file is still under its temporary name",
    () =>
      Effect.gen(function* () {
        const { out, contents, tracker } = yield* setup(3)
        /** What the disk held at each save. */
        const atSave: Array<ReadonlyArray<string>> = []
        const save = Effect.zipRight(
          Effect.flatMap(names(out), (n) => Effect.sync(() => atSave.push(n))),
          Effect.orDie(tracker.save),
        )
        const placer = yield* Placer.make(save, { files: 3, bytes: 1 << 30, delay: Duration.hours(1) })
        for (const [i, bytes] of contents.entries()) yield* receive(out, tracker, save, placer, i, bytes)
        // The third file filled the group: it is placed in the background, and `drain` waits for it.
        yield* placer.drain
        expect(atSave).toHaveLength(1)
        expect(atSave[0]!.every((name) => name.endsWith(".p2pal-part"))).toBe(true)
        expect(atSave[0]).toHaveLength(3)
        expect(yield* names(out)).toEqual(["f0.bin", "f1.bin", "f2.bin"])
        for (const [i, bytes] of contents.entries())
          expect(yield* read(path.join(out, `f${i}.bin`))).toEqual(bytes)
        for (const state of tracker.files.values())
          expect(state).toMatchObject({ temp: undefined, verified: true })
      }).pipe(Effect.provide(Hasher.Default)),
  )

  it.scoped("places a group that is not full once its first file has waited the delay", () =>
    Effect.gen(function* () {
      const { out, contents, tracker } = yield* setup(1)
      const saved = yield* Deferred.make<void>()
      const save = Effect.zipRight(Effect.orDie(tracker.save), Deferred.succeed(saved, undefined))
      const placer = yield* Placer.make(save, { files: 100, bytes: 1 << 30, delay: Duration.millis(200) })
      yield* receive(out, tracker, save, placer, 0, contents[0]!)
      expect(yield* Deferred.isDone(saved)).toBe(false)
      yield* TestClock.adjust(Duration.millis(200))
      yield* Deferred.await(saved)
      yield* placer.drain
      expect(yield* names(out)).toEqual(["f0.bin"])
    }).pipe(Effect.provide(Hasher.Default)),
  )

  it.scoped("places what waits when its scope closes, as on Ctrl+C", () =>
    Effect.gen(function* () {
      const { out, contents, tracker } = yield* setup(2)
      const save = Effect.orDie(tracker.save)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const placer = yield* Placer.make(save, { files: 100, bytes: 1 << 30, delay: Duration.hours(1) })
          for (const [i, bytes] of contents.entries()) yield* receive(out, tracker, save, placer, i, bytes)
          expect((yield* names(out)).every((name) => name.endsWith(".p2pal-part"))).toBe(true)
        }),
      )
      expect(yield* names(out)).toEqual(["f0.bin", "f1.bin"])
      for (const state of tracker.files.values())
        expect(state).toMatchObject({ temp: undefined, verified: true })
    }).pipe(Effect.provide(Hasher.Default)),
  )

  it.scoped("a receiver stopped between a group's save and its moves leaves what a resume finishes", () =>
    Effect.gen(function* () {
      const { out, home, contents, tracker, openTracker } = yield* setup(3)
      const crash = yield* tempDir
      // Right after the save, the disk is copied as a crash would leave it: recorded, not yet moved.
      const save = Effect.zipRight(
        Effect.orDie(tracker.save),
        Effect.promise(async () => {
          await fs.cp(out, path.join(crash, "out"), { recursive: true })
          await fs.cp(home, path.join(crash, "home"), { recursive: true })
        }),
      )
      const placer = yield* Placer.make(save, { files: 3, bytes: 1 << 30, delay: Duration.hours(1) })
      for (const [i, bytes] of contents.entries()) yield* receive(out, tracker, save, placer, i, bytes)
      yield* placer.drain
      // Back to the crash: the files under their temporary names only, the checkpoint as saved then.
      for (const dir of ["out", "home"] as const) {
        const live = dir === "out" ? out : home
        yield* Effect.promise(async () => {
          await fs.rm(live, { recursive: true })
          await fs.cp(path.join(crash, dir), live, { recursive: true })
        })
      }
      expect((yield* names(out)).every((name) => name.endsWith(".p2pal-part"))).toBe(true)
      const resumed = yield* openTracker
      expect([...resumed.placedBefore].sort()).toEqual([0, 1, 2])
      expect(resumed.resumeFrom).toEqual(contents.map((c, i) => [i, c.length]))
      expect(yield* names(out)).toEqual(["f0.bin", "f1.bin", "f2.bin"])
      for (const [i, bytes] of contents.entries())
        expect(yield* read(path.join(out, `f${i}.bin`))).toEqual(bytes)
    }).pipe(Effect.provide(Hasher.Default)),
  )

  it.scoped(
    "a move that fails fails the group: the others are placed, that one is forgotten and removed",
    () =>
      Effect.gen(function* () {
        const { out, contents, tracker, openTracker } = yield* setup(3)
        // Someone else's file appeared at the second target meanwhile: it is never clobbered.
        yield* Effect.promise(() => fs.writeFile(path.join(out, "f1.bin"), "theirs"))
        const save = Effect.orDie(tracker.save)
        const placer = yield* Placer.make(save, { files: 3, bytes: 1 << 30, delay: Duration.hours(1) })
        for (const [i, bytes] of contents.entries()) yield* receive(out, tracker, save, placer, i, bytes)
        const drained = yield* Effect.exit(placer.drain)
        expect(Exit.isFailure(drained)).toBe(true)
        expect(String(drained)).toContain("LocalIoFailed")
        // Once a group failed, the receiver takes no more files.
        expect(Exit.isFailure(yield* Effect.exit(placer.room))).toBe(true)
        expect(yield* names(out)).toEqual(["f0.bin", "f1.bin", "f2.bin"])
        expect((yield* read(path.join(out, "f1.bin"))).toString()).toBe("theirs")
        expect(tracker.files.get(1)).toEqual({ temp: undefined, durable: 0, verified: false })
        // A resume (after a save) keeps the two placed and receives the third again.
        yield* save
        const resumed = yield* openTracker
        expect([...resumed.placedBefore].sort()).toEqual([0, 2])
        expect(resumed.files.get(1)).toEqual({ temp: undefined, durable: 0, verified: false })
      }).pipe(Effect.provide(Hasher.Default)),
  )
})
