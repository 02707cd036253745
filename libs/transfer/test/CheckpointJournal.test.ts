import { describe, expect, it } from "@effect/vitest"
import { Checkpoint, Ids, type Manifest } from "@p2pal/domain"
import { Checkpoints } from "@p2pal/transfer/Checkpoints"
import * as RecvCheckpoint from "@p2pal/transfer/RecvCheckpoint"
import { ConfigProvider, Duration, Effect, Either, Layer, Schema, TestClock } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

const Ttl = Duration.toMillis(Checkpoint.DefaultTtl)
const A = Schema.decodeSync(Ids.TransferId)("tr_aaaaaaaaaaaaaaaa")
const B = Schema.decodeSync(Ids.TransferId)("tr_bbbbbbbbbbbbbbbb")
const Size = 4096

/** `count` files of `Size` bytes in folders of 100. */
const manifestOf = (count: number): Manifest.Manifest => ({
  version: 1,
  entries: Array.from({ length: count }, (_, i) => ({
    _tag: "file" as const,
    path: `folder-${Math.floor(i / 100)}/file-${i}.txt`,
    size: Size,
  })),
})

const receiving = (transferId: Ids.TransferId, count: number): Checkpoint.Checkpoint => ({
  direction: "recv",
  version: 1,
  transferId,
  createdAt: 0,
  updatedAt: 0,
  expiresAt: Ttl,
  manifest: manifestOf(count),
  out: "/srv/in",
  files: Array.from({ length: count }, (_, index) => ({ index, durable: 0, verified: false })),
})

const sending = (transferId: Ids.TransferId, count: number): Checkpoint.Checkpoint => ({
  direction: "send",
  version: 1,
  transferId,
  createdAt: 0,
  updatedAt: 0,
  expiresAt: Ttl,
  manifest: manifestOf(count),
  files: Array.from({ length: count }, (_, index) => ({
    index,
    source: `/srv/out/file-${index}.txt`,
    mtimeMs: 0,
    acked: 0,
  })),
})

/** File `index` verified, saved at `at`. */
const verified = (index: number, at = 1): Checkpoint.Update => ({
  direction: "recv",
  updatedAt: at,
  expiresAt: at + Ttl,
  files: [{ index, temp: `.file-${index}.txt.00ff00ff.p2pal-part`, durable: Size, verified: true }],
})

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-journal-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

/** The real store in a fresh home of its own, removed after the test. */
const freshStore = Effect.flatMap(tempDir, (home) =>
  Effect.provide(
    Checkpoints,
    Checkpoints.Default.pipe(
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["P2PAL_HOME", home]])))),
    ),
  ),
)

/** What a failed load tells: the damage found, or the error's tag. */
const detailOf = (e: { readonly _tag: string }) => ("detail" in e ? e.detail : e._tag)

const names = (dir: string) => Effect.promise(() => fs.readdir(dir).then((n) => n.sort()))
const sizeOf = (file: string) =>
  Effect.promise(() =>
    fs.stat(file).then(
      (s) => s.size,
      () => 0,
    ),
  )
const appendRaw = (file: string, text: string) => Effect.promise(() => fs.appendFile(file, text))
const readLines = (file: string) =>
  Effect.promise(() => fs.readFile(file, "utf8").then((text) => text.split("\n")))
const writeLines = (file: string, lines: ReadonlyArray<string>) =>
  Effect.promise(() => fs.writeFile(file, lines.join("\n")))

/** What loading must give after `updates` over `base`, written out by hand. */
const withVerified = (base: Checkpoint.Checkpoint, indices: ReadonlyArray<number>, at: number) =>
  base.direction === "recv"
    ? {
        ...base,
        updatedAt: at,
        expiresAt: at + Ttl,
        files: base.files.map((f) =>
          indices.includes(f.index) ? verified(f.index).files[0]! : f,
        ) as Array<Checkpoint.ReceivedFile>,
      }
    : base

describe("checkpoint journal", () => {
  it.scoped("a save writes the checkpoint whole, appends then add lines, and loading replays them", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      const base = receiving(A, 3)
      const journal = yield* store.save(base)
      expect(yield* names(store.dir)).toEqual([`${A}.recv.json`])
      yield* journal.append(verified(0, 5))
      yield* journal.append(verified(2, 7))
      expect(yield* names(store.dir)).toEqual([`${A}.recv.journal`, `${A}.recv.json`])
      // The head, then one line per append, each ended.
      expect(yield* readLines(path.join(store.dir, `${A}.recv.journal`))).toHaveLength(4)
      expect(yield* store.load(A, "recv")).toEqual(withVerified(base, [0, 2], 7))
      // A later state of a file replaces the earlier one, an absent temp included.
      yield* journal.append({
        direction: "recv",
        updatedAt: 8,
        expiresAt: 8 + Ttl,
        files: [{ index: 2, durable: 0, verified: false }],
      })
      expect(yield* store.load(A, "recv")).toEqual({ ...withVerified(base, [0], 8), updatedAt: 8 })
      // Saved whole again: the journal goes.
      yield* store.save(base)
      expect(yield* names(store.dir)).toEqual([`${A}.recv.json`])
      expect(yield* store.load(A, "recv")).toEqual(base)
    }),
  )

  it.scoped("a sender's journal carries only the acknowledged bytes", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      const base = sending(A, 2)
      const journal = yield* store.save(base)
      yield* journal.append({
        direction: "send",
        updatedAt: 3,
        expiresAt: 3 + Ttl,
        files: [{ index: 1, acked: 100 }],
      })
      const loaded = yield* store.load(A, "send")
      expect(loaded).toEqual({
        ...base,
        updatedAt: 3,
        expiresAt: 3 + Ttl,
        files: [base.files[0], { ...base.files[1], acked: 100 }],
      })
      expect(Checkpoint.progress(loaded).bytesDone).toBe(100)
    }),
  )

  it.scoped("ignores a torn last line: a crash in the middle of an append", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      const base = receiving(A, 3)
      const journal = yield* store.save(base)
      yield* journal.append(verified(0, 5))
      const file = path.join(store.dir, `${A}.recv.journal`)
      yield* appendRaw(file, '{"direction":"recv","updatedAt":9,"expi')
      expect(yield* store.load(A, "recv")).toEqual(withVerified(base, [0], 5))
      // A torn head: the journal had only just started.
      yield* writeLines(path.join(store.dir, `${A}.recv.journal`), ['{"base":"00'])
      expect(yield* store.load(A, "recv")).toEqual(base)
    }),
  )

  it.scoped(
    "reports a damaged line before the last one as a damaged checkpoint, with the journal's path",
    () =>
      Effect.gen(function* () {
        const store = yield* freshStore
        const journal = yield* store.save(receiving(A, 3))
        yield* journal.append(verified(0))
        yield* journal.append(verified(1))
        const file = path.join(store.dir, `${A}.recv.journal`)
        const [head, first, second] = yield* readLines(file)
        const damagedWith = (line: string) =>
          Effect.gen(function* () {
            yield* writeLines(file, [head!, line, second!, ""])
            return yield* Effect.flip(store.load(A, "recv"))
          })
        expect(yield* damagedWith(first!.slice(0, 20))).toMatchObject({
          _tag: "CheckpointCorrupt",
          transferId: A,
          direction: "recv",
          path: file,
          detail: "journal line 2: not valid JSON",
        })
        // Well formed, but about a file the manifest does not have, or in a state the rules forbid.
        expect(detailOf(yield* damagedWith(first!.replace('"index":0', '"index":3')))).toBe(
          "journal line 2: an update that at files.0: names entry 3, not a file of the manifest",
        )
        expect(
          detailOf(yield* damagedWith(first!.replace(`"durable":${Size}`, `"durable":${Size + 1}`))),
        ).toBe(
          `journal line 2: an update that at files.0: counts ${Size + 1} bytes done and complete of a ${Size}-byte file`,
        )
        expect(
          detailOf(yield* damagedWith(first!.replace('"direction":"recv"', '"direction":"send"'))),
        ).toMatch(/^journal line 2: not a valid update/)
        // `list` shows it as damaged, never as usable.
        expect(yield* store.list()).toEqual([Either.left(expect.objectContaining({ path: file }))])
        yield* writeLines(file, ["{}", first!, ""])
        expect(detailOf(yield* Effect.flip(store.load(A, "recv")))).toMatch(
          /^journal line 1: not a journal head/,
        )
      }),
  )

  it.scoped("ignores a journal that follows another checkpoint: what a crash during a rewrite leaves", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      const journal = yield* store.save(receiving(A, 3))
      yield* journal.append(verified(0))
      const file = path.join(store.dir, `${A}.recv.journal`)
      const left = yield* readLines(file)
      const rewritten = withVerified(receiving(A, 3), [1], 2)
      yield* store.save(rewritten)
      yield* writeLines(file, left)
      expect(yield* store.load(A, "recv")).toEqual(rewritten)
    }),
  )

  it.scoped("rewrites the checkpoint whole once the journal would outgrow it, keeping every state", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      const base = receiving(A, 10)
      const journal = yield* store.save(base)
      const baseBytes = yield* sizeOf(path.join(store.dir, `${A}.recv.json`))
      let rewrites = 0
      let before = baseBytes
      for (let at = 1; at <= 200; at++) {
        yield* journal.append(verified(at % 10, at))
        const json = yield* sizeOf(path.join(store.dir, `${A}.recv.json`))
        const onDisk = json + (yield* sizeOf(path.join(store.dir, `${A}.recv.journal`)))
        expect(onDisk).toBeLessThan(2 * json)
        if (json !== before) rewrites++
        before = json
      }
      expect(rewrites).toBeGreaterThan(1)
      expect(yield* store.load(A, "recv")).toEqual(withVerified(base, [...Array(10).keys()], 200))
    }),
  )

  it.scoped(
    "after an append that failed, the next one writes the checkpoint whole, the failed update in it",
    () =>
      Effect.gen(function* () {
        const store = yield* freshStore
        const base = receiving(A, 3)
        const journal = yield* store.save(base)
        yield* journal.append(verified(0, 1))
        const file = path.join(store.dir, `${A}.recv.journal`)
        // Something in the journal's way: the append fails.
        yield* Effect.promise(() => fs.rm(file))
        yield* Effect.promise(() => fs.mkdir(file))
        expect((yield* Effect.flip(journal.append(verified(1, 2))))._tag).toBe("CheckpointIo")
        yield* Effect.promise(() => fs.rmdir(file))
        yield* journal.append(verified(2, 3))
        expect(yield* names(store.dir)).toEqual([`${A}.recv.json`])
        expect(yield* store.load(A, "recv")).toEqual(withVerified(base, [0, 1, 2], 3))
      }),
  )

  it.scoped("appends as many bytes per save of one file for 10 files as for 10,000", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      const growth = (transferId: Ids.TransferId, count: number) =>
        Effect.gen(function* () {
          const journal = yield* store.save(receiving(transferId, count))
          const file = path.join(store.dir, `${transferId}.recv.journal`)
          // The first append starts the journal with its head.
          yield* journal.append(verified(1, 1))
          const sizes = [yield* sizeOf(file)]
          for (let at = 2; at <= 6; at++) {
            yield* journal.append(verified(at, at))
            sizes.push(yield* sizeOf(file))
          }
          return sizes.slice(1).map((size, i) => size - sizes[i]!)
        })
      const small = yield* growth(A, 10)
      const large = yield* growth(B, 10_000)
      expect(small).toEqual(large)
      expect(Math.max(...large)).toBeLessThan(200)
    }),
  )

  it.scoped("remove, clean and clean-all take the journal along; clean removes a journal left alone", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      const journalA = yield* store.save(receiving(A, 3))
      yield* journalA.append(verified(0))
      const journalB = yield* store.save(sending(B, 3))
      yield* journalB.append({
        direction: "send",
        updatedAt: 1,
        expiresAt: 1 + Ttl,
        files: [{ index: 0, acked: 1 }],
      })
      expect(yield* store.remove(A)).toEqual(["recv"])
      expect(yield* names(store.dir)).toEqual([`${B}.send.journal`, `${B}.send.json`])
      // A journal whose checkpoint is gone (a removal that stopped half way) is garbage.
      yield* writeLines(path.join(store.dir, `${A}.recv.journal`), ['{"base":"00"}', ""])
      expect(yield* store.list()).toHaveLength(1)
      expect(yield* store.clean()).toBe(0)
      expect(yield* names(store.dir)).toEqual([`${B}.send.journal`, `${B}.send.json`])
      // Expired by the journal's times, not the first ones: appended at 1, it expires at 1 + Ttl.
      yield* TestClock.adjust(Ttl)
      expect(yield* store.clean()).toBe(0)
      yield* TestClock.adjust(1)
      expect(yield* store.clean()).toBe(1)
      expect(yield* names(store.dir)).toEqual([])
      const again = yield* store.save(receiving(A, 3))
      yield* again.append(verified(0))
      expect(yield* store.cleanAll()).toBe(1)
      expect(yield* names(store.dir)).toEqual([])
    }),
  )

  it.scoped(
    "the receiver's checkpoint stays under twice its size over a whole transfer of 2,000 files",
    () =>
      Effect.gen(function* () {
        const store = yield* freshStore
        const out = yield* tempDir
        const count = 2000
        const manifest = manifestOf(count)
        const open = RecvCheckpoint.open({ store, ttl: Duration.hours(1) }, A, manifest, out, (entry) =>
          path.join(out, entry.path),
        )
        const tracker = yield* open
        yield* tracker.save
        const json = path.join(store.dir, `${A}.recv.json`)
        const journal = path.join(store.dir, `${A}.recv.journal`)
        let largest = 0
        for (const [index, state] of tracker.files) {
          // As the durable file does: a temporary name, bytes made durable, then verified.
          state.temp = `.file-${index}.txt.0000abcd.p2pal-part`
          state.durable = RecvCheckpoint.durableOf(Size / 2, Size)
          yield* tracker.save
          Object.assign(state, { durable: Size, verified: true })
          yield* tracker.save
          largest = Math.max(largest, (yield* sizeOf(json)) + (yield* sizeOf(journal)))
        }
        const base = yield* sizeOf(json)
        expect(largest).toBeLessThan(2 * base)
        const loaded = yield* store.load(A, "recv")
        expect(
          loaded.direction === "recv" && loaded.files.every((f) => f.verified && f.durable === Size),
        ).toBe(true)
        // Removed, then saved again: written whole, not appended to a journal with no checkpoint.
        yield* tracker.remove
        yield* tracker.save
        expect(yield* names(store.dir)).toEqual([`${A}.recv.json`])
      }),
    60_000,
  )
})
