import { describe, expect, it } from "@effect/vitest"
import { Checkpoint, Ids } from "@p2pal/domain"
import { Checkpoints } from "@p2pal/transfer/Checkpoints"
import {
  ConfigProvider,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  Layer,
  Option,
  Schema,
  TestClock,
} from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

const Ttl = Duration.toMillis(Checkpoint.DefaultTtl)
const asTransferId = Schema.decodeSync(Ids.TransferId)
/** In the order a sorted listing shows them. */
const A = asTransferId("tr_aaaaaaaaaaaaaaaa")
const B = asTransferId("tr_bbbbbbbbbbbbbbbb")
const C = asTransferId("tr_cccccccccccccccc")

const manifest = { version: 1, entries: [{ _tag: "file", path: "a.bin", size: 100 }] } as const

const sending = (transferId: Ids.TransferId, acked = 40, expiresAt = Ttl): Checkpoint.Checkpoint => ({
  direction: "send",
  version: 1,
  transferId,
  createdAt: 0,
  updatedAt: 0,
  expiresAt,
  manifest,
  files: [{ index: 0, source: "/srv/a.bin", mtimeMs: 0, acked }],
})

const receiving = (transferId: Ids.TransferId, expiresAt = Ttl): Checkpoint.Checkpoint => ({
  direction: "recv",
  version: 1,
  transferId,
  createdAt: 0,
  updatedAt: 0,
  expiresAt,
  manifest,
  out: "/srv/in",
  files: [{ index: 0, temp: ".a.bin.00ff00ff.p2pal-part", durable: 40, verified: false }],
})

const tempHome = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-checkpoints-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

/** The real store, reading P2PAL_HOME from `env`. */
const storeWith = (env: ReadonlyArray<[string, string]>) =>
  Effect.provide(
    Checkpoints,
    Checkpoints.Default.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(env))))),
  )

/** A store in a fresh home of its own, removed after the test. */
const freshStore = Effect.flatMap(tempHome, (home) => storeWith([["P2PAL_HOME", home]]))

const names = (dir: string) => Effect.promise(() => fs.readdir(dir).then((n) => n.sort()))
const write = (file: string, content: string | Uint8Array) =>
  Effect.promise(() => fs.writeFile(file, content))

describe("Checkpoints", () => {
  it.scoped("saves and loads back both directions, one file each and nothing else", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      yield* store.save(sending(A))
      yield* store.save(receiving(A))
      expect(yield* store.load(A, "send")).toEqual(sending(A))
      expect(yield* store.load(A, "recv")).toEqual(receiving(A))
      expect(yield* names(store.dir)).toEqual([`${A}.recv.json`, `${A}.send.json`])
    }),
  )

  it.scoped("keeps its directory 0700 and its files 0600, creating missing parents", () =>
    Effect.gen(function* () {
      const home = path.join(yield* tempHome, "not", "there")
      const store = yield* storeWith([["P2PAL_HOME", home]])
      yield* store.save(sending(A))
      const mode = (p: string) => Effect.promise(() => fs.stat(p).then((s) => s.mode & 0o777))
      expect(store.dir).toBe(path.join(home, "checkpoints"))
      expect(yield* mode(store.dir)).toBe(0o700)
      expect(yield* mode(home)).toBe(0o700)
      expect(yield* mode(path.join(store.dir, `${A}.send.json`))).toBe(0o600)
    }),
  )

  it.effect("lives under ~/.p2pal when P2PAL_HOME is unset or empty", () =>
    Effect.gen(function* () {
      const expected = path.join(os.homedir(), ".p2pal", "checkpoints")
      expect((yield* storeWith([])).dir).toBe(expected)
      expect((yield* storeWith([["P2PAL_HOME", ""]])).dir).toBe(expected)
    }),
  )

  it.scoped("never shows a reader half a checkpoint while saves replace it", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      yield* store.save(sending(A, 0))
      const file = path.join(store.dir, `${A}.send.json`)
      const seen = new Set<number>()
      const reader = yield* Effect.promise(() => fs.readFile(file)).pipe(
        Effect.flatMap((bytes) =>
          Either.match(Checkpoint.decodeJson(bytes), {
            onLeft: (detail) => Effect.dieMessage(`a reader saw a damaged checkpoint: ${detail}`),
            onRight: (c) => Effect.sync(() => seen.add(c.direction === "send" ? c.files[0]!.acked : -1)),
          }),
        ),
        Effect.forever,
        Effect.fork,
      )
      for (let acked = 1; acked <= 100; acked++) yield* store.save(sending(A, acked))
      expect(Option.isNone(yield* Fiber.poll(reader))).toBe(true)
      yield* Fiber.interrupt(reader)
      expect(seen.size).toBeGreaterThan(1)
      expect([...seen].every((acked) => acked >= 0 && acked <= 100)).toBe(true)
      expect(yield* store.load(A, "send")).toEqual(sending(A, 100))
      expect(yield* names(store.dir)).toEqual([`${A}.send.json`])
    }),
  )

  it.scoped("removes its temp file when a save fails", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      yield* store.save(receiving(A))
      // A directory where the checkpoint should go: the rename over it fails.
      yield* Effect.promise(() =>
        fs.mkdir(path.join(store.dir, `${A}.send.json`, "in-the-way"), { recursive: true }),
      )
      const error = yield* Effect.flip(store.save(sending(A)))
      expect(error._tag).toBe("CheckpointIo")
      expect(yield* names(store.dir)).toEqual([`${A}.recv.json`, `${A}.send.json`])
    }),
  )

  it.scoped("lists damaged and truncated files as such, with their paths, next to the good ones", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      yield* store.save(sending(B))
      const whole = Checkpoint.encodeJson(receiving(C))
      yield* write(path.join(store.dir, `${A}.send.json`), "{garbage")
      yield* write(path.join(store.dir, `${C}.recv.json`), whole.subarray(0, whole.length / 2))
      // Copied by hand under another id: valid JSON, but resuming it would resume the wrong transfer.
      yield* write(path.join(store.dir, `${C}.send.json`), Checkpoint.encodeJson(sending(B)))
      yield* write(path.join(store.dir, "notes.txt"), "not a checkpoint")
      const listed = yield* store.list()
      expect(listed.map(Either.map((c) => `${c.transferId}.${c.direction}`))).toEqual([
        Either.left(
          expect.objectContaining({
            _tag: "CheckpointCorrupt",
            transferId: A,
            direction: "send",
            path: path.join(store.dir, `${A}.send.json`),
            detail: "not valid JSON",
          }),
        ),
        Either.right(`${B}.send`),
        Either.left(
          expect.objectContaining({ path: path.join(store.dir, `${C}.recv.json`), detail: "not valid JSON" }),
        ),
        Either.left(
          expect.objectContaining({
            path: path.join(store.dir, `${C}.send.json`),
            detail: `it holds the send checkpoint of ${B}`,
          }),
        ),
      ])
      const loaded = yield* Effect.exit(store.load(A, "send"))
      expect(Exit.isFailure(loaded) && Exit.causeOption(loaded)).toMatchObject(
        Option.some({ error: { _tag: "CheckpointCorrupt", transferId: A } }),
      )
    }),
  )

  it.scoped("ignores a temp file a crashed save left, and clean removes it once it is stale", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      yield* store.save(sending(A))
      const stale = path.join(store.dir, `${A}.send.json.tmp-0123456789abcdef`)
      const fresh = path.join(store.dir, `${B}.recv.json.tmp-fedcba9876543210`)
      yield* write(stale, '{"direction": "se')
      yield* Effect.promise(() => fs.utimes(stale, 0, 0))
      // Possibly a save under way in another process, right now.
      yield* write(fresh, "{")
      expect(yield* store.list()).toEqual([Either.right(sending(A))])
      yield* TestClock.adjust("2 minutes")
      expect(yield* store.clean()).toBe(0)
      expect(yield* names(store.dir)).toEqual([`${A}.send.json`, path.basename(fresh)])
    }),
  )

  it.scoped("clean removes only what has expired by the clock, and never a damaged file", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      yield* store.save(sending(A, 40, Ttl))
      yield* store.save(receiving(B, 2 * Ttl))
      yield* write(path.join(store.dir, `${C}.send.json`), "")
      expect(yield* store.clean()).toBe(0)
      yield* TestClock.adjust(Checkpoint.DefaultTtl)
      expect(yield* store.clean()).toBe(1)
      expect(yield* names(store.dir)).toEqual([`${B}.recv.json`, `${C}.send.json`])
      yield* TestClock.adjust(Checkpoint.DefaultTtl)
      expect(yield* store.clean()).toBe(1)
      expect(yield* names(store.dir)).toEqual([`${C}.send.json`])
    }),
  )

  it.scoped("cleanAll removes every checkpoint, damaged ones and temp files included", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      yield* store.save(sending(A))
      yield* store.save(receiving(A))
      yield* write(path.join(store.dir, `${B}.send.json`), "{")
      yield* write(path.join(store.dir, `${C}.recv.json.tmp-00ff`), "{")
      expect(yield* store.cleanAll()).toBe(3)
      expect(yield* names(store.dir)).toEqual([])
    }),
  )

  it.scoped(
    "remove takes one direction or both with its dead temp files, and fails when there is nothing to remove",
    () =>
      Effect.gen(function* () {
        const store = yield* freshStore
        yield* store.save(sending(A))
        yield* store.save(receiving(A))
        yield* store.save(sending(B))
        // Left by a save that a SIGKILL cut short, in an earlier run of the same transfer.
        yield* write(path.join(store.dir, `${A}.send.json.tmp-00ff`), '{"direction": "se')
        yield* write(path.join(store.dir, `${B}.send.json.tmp-0aff`), "{")
        expect(yield* store.remove(A, "send")).toEqual(["send"])
        expect(yield* names(store.dir)).toEqual([
          `${A}.recv.json`,
          `${B}.send.json`,
          `${B}.send.json.tmp-0aff`,
        ])
        expect(yield* store.remove(A)).toEqual(["recv"])
        expect(yield* Effect.flip(store.remove(A))).toMatchObject({
          _tag: "CheckpointNotFound",
          transferId: A,
        })
        expect(yield* Effect.flip(store.load(A, "recv"))).toMatchObject({ _tag: "CheckpointNotFound" })
        expect(yield* store.list()).toEqual([Either.right(sending(B))])
      }),
  )

  it.scoped("has nothing to list or clean before the first save", () =>
    Effect.gen(function* () {
      const store = yield* freshStore
      expect(yield* store.list()).toEqual([])
      expect(yield* store.clean()).toBe(0)
      expect(yield* store.cleanAll()).toBe(0)
    }),
  )
})
