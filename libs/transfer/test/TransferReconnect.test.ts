import { describe, expect, it } from "@effect/vitest"
import { Frames, JoinCode } from "@p2pal/domain"
import { PeerFailed } from "@p2pal/domain/Errors"
import { AckWindowBytes } from "@p2pal/transfer/AckWindow"
import { Checkpoints } from "@p2pal/transfer/Checkpoints"
import { Hasher } from "@p2pal/transfer/Hasher"
import * as Sources from "@p2pal/transfer/Sources"
import { Transfer } from "@p2pal/transfer/Transfer"
import { type Sink, TransferEvent } from "@p2pal/transfer/TransferEvent"
import { WriteBatchBytes } from "@p2pal/transfer/Wire"
import {
  Clock,
  ConfigProvider,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Fiber,
  Layer,
  Queue,
  Random,
  TestClock,
} from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as TestPeers from "./TestPeers.js"
import * as TestSignal from "./TestSignal.js"

const MiB = 1024 * 1024
/** Several write batches, and a tail that is not a whole chunk. */
const Size = 3 * MiB + 17
/** What the liveness watchdog would say of the dead path. */
const Silence = "nothing heard from the peer for 5s"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-reconnect-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

/** One side's events as the CLI would get them: every one kept, Confirm answered yes, any waited for. */
const recorder = Effect.gen(function* () {
  const seen: Array<TransferEvent> = []
  const queue = yield* Queue.unbounded<TransferEvent>()
  const sink: Sink = {
    offer: (event) =>
      Effect.gen(function* () {
        seen.push(event)
        if (event._tag === "Confirm") yield* Deferred.succeed(event.reply, true)
        return yield* Queue.offer(queue, event)
      }),
  }
  /** The next event tagged `tag`, skipping others (`seen` keeps them). */
  const next = <T extends TransferEvent["_tag"]>(tag: T) =>
    Effect.gen(function* () {
      while (true) {
        const event = yield* Queue.take(queue)
        if (TransferEvent.$is(tag)(event)) return event
      }
    })
  return { sink, seen, next, tags: () => seen.map((e) => e._tag) }
})

const decode = (sent: TestPeers.Sent) => Either.getOrThrow(Frames.decode(sent.message))

/** A chunk of the file at `offset` or later, about to leave the sender. */
const chunkFrom = (offset: number) => (sent: TestPeers.Sent) => {
  const frame = sent.from === "offerer" ? decode(sent) : undefined
  return frame?._tag === "Chunk" && frame.offset >= offset
}

const isChunk = (frame: Frames.Frame): frame is Extract<Frames.Frame, { _tag: "Chunk" }> =>
  frame._tag === "Chunk"

/** The receiver's first acknowledgement: it has written a batch. */
const firstAck = (sent: TestPeers.Sent) => sent.from === "answerer" && decode(sent)._tag === "Ack"

/**
 * A sender and a receiver of one file, each through the real Transfer service, over the in-memory
 * peer link and signal app; the real Hasher, and a real checkpoint store under a temporary home.
 */
const setup = (size: number) =>
  Effect.gen(function* () {
    const root = yield* tempDir
    const source = path.join(root, "data.bin")
    const out = path.join(root, "out")
    const bytes = randomBytes(size)
    yield* Effect.promise(async () => {
      await fs.writeFile(source, bytes)
      await fs.mkdir(out)
    })
    const peers = yield* TestPeers.make
    const checkpoints = Checkpoints.Default.pipe(
      Layer.provide(
        Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["P2PAL_HOME", path.join(root, "home")]]))),
      ),
    )
    const services = yield* Layer.build(
      Transfer.Default.pipe(
        Layer.provideMerge(Layer.mergeAll(peers.layer, yield* TestSignal.make, checkpoints, Hasher.Default)),
      ),
    )
    const transfer = Context.get(services, Transfer)
    const sources = yield* Sources.collect([source], false)

    /** Starts the sender, then the receiver with the code the sender shows; neither is waited for. */
    const start = (
      reconnect: { readonly maxRetries: number; readonly retryBackoff: Duration.Duration },
      limitRate?: number,
    ) =>
      Effect.gen(function* () {
        const peer = {
          server: "http://signal.test",
          iceServers: [],
          relayOnly: false,
          limitRate,
          ...reconnect,
        }
        const ttl = { checkpointTtl: Duration.hours(1) }
        const sender = yield* recorder
        const receiver = yield* recorder
        // Jitter in the middle of its range: each wait is exactly the backoff, doubled each time.
        const fixedJitter = Effect.withRandom(Random.fixed([0.5]))
        const sending = yield* transfer
          .send(
            {
              ...peer,
              ...ttl,
              ttl: Duration.minutes(10),
              chunkSize: Frames.MaxChunkBytes,
              encrypt: false,
              sources,
              skipUnreadable: false,
              limitRate,
            },
            sender.sink,
          )
          .pipe(fixedJitter, Effect.fork)
        const { code } = yield* sender.next("CodeReady")
        const receiving = yield* transfer
          .receive(
            {
              ...peer,
              ...ttl,
              code: Either.getOrThrow(JoinCode.parse(code)),
              out,
              overwrite: false,
              windowsNames: false,
              renameUnsafe: false,
            },
            receiver.sink,
          )
          .pipe(fixedJitter, Effect.fork)
        return { sender, receiver, sending, receiving }
      })

    const frames = (link: number, from: TestPeers.Role) =>
      peers.sent.filter((s) => s.link === link && s.from === from).map(decode)
    /** The file's bytes that crossed `link`, chunk by chunk. */
    const chunks = (link: number) => frames(link, "offerer").filter(isChunk)
    const transferId = (events: ReadonlyArray<TransferEvent>) => {
      const saved = events.find(TransferEvent.$is("CheckpointSaved"))
      if (saved === undefined) throw new Error("the sender saved no checkpoint")
      return saved.transferId
    }
    const received = Effect.promise(() => fs.readFile(path.join(out, "data.bin")))
    const store = Context.get(services, Checkpoints)
    /** What the receiver's checkpoint holds of the file, and the temporary file it names. */
    const receiverHolds = (id: ReturnType<typeof transferId>) =>
      Effect.gen(function* () {
        const checkpoint = yield* store.load(id, "recv")
        const file = checkpoint.direction === "recv" ? checkpoint.files[0] : undefined
        if (file?.temp === undefined) throw new Error("the receiver's checkpoint names no temporary file")
        const stat = yield* Effect.promise(() => fs.stat(path.join(out, file.temp!)))
        return { durable: file.durable, onDisk: stat.size }
      })
    return { bytes, peers, store, start, frames, chunks, transferId, received, receiverHolds }
  })

const byteCount = (chunks: ReadonlyArray<{ readonly bytes: Uint8Array }>) =>
  chunks.reduce((sum, c) => sum + c.bytes.length, 0)

describe("Transfer over a link that drops (in-process, on the test clock)", () => {
  it.scoped(
    "a drop mid-transfer: both sides wait out the backoff, reconnect, and go on from the receiver's checkpoint",
    () =>
      Effect.gen(function* () {
        const t = yield* setup(Size)
        yield* t.peers.dropWhen(chunkFrom(2 * MiB), Silence)
        const run = yield* t.start({ maxRetries: 3, retryBackoff: Duration.seconds(1) })
        const lost = { _tag: "Reconnecting", attempt: 1, of: 3, why: Silence }
        expect(yield* run.sender.next("Reconnecting")).toMatchObject(lost)
        expect(yield* run.receiver.next("Reconnecting")).toMatchObject(lost)

        yield* TestClock.adjust("999 millis")
        expect(t.peers.attempts("offerer"), "no new round before the backoff has elapsed").toBe(1)
        expect(t.peers.attempts("answerer")).toBe(1)
        yield* TestClock.adjust("1 millis")
        const sent = yield* Fiber.join(run.sending)
        const received = yield* Fiber.join(run.receiving)
        expect(t.peers.attempts("offerer")).toBe(2)
        expect(t.peers.attempts("answerer")).toBe(2)

        // The second connection: the receiver names what it holds, and only the rest comes again.
        const resume = t.frames(1, "answerer").filter((f) => f._tag === "ResumeFrom")
        expect(resume).toEqual([{ _tag: "ResumeFrom", file: 0, offset: expect.any(Number) }])
        const held = resume[0]!._tag === "ResumeFrom" ? resume[0]!.offset : 0
        expect(held).toBeGreaterThanOrEqual(WriteBatchBytes)
        const before = byteCount(t.chunks(0))
        expect(before).toBeLessThan(2 * MiB)
        expect(t.chunks(1)[0]?.offset).toBe(held)
        expect(byteCount(t.chunks(1))).toBe(Size - held)
        // What crossed the first connection past what the receiver kept, and nothing else.
        expect(sent.resent).toBe(before - held)
        expect(sent.resent).toBeGreaterThan(0)

        expect((yield* t.received).equals(t.bytes)).toBe(true)
        expect(sent.path?.local).toBe("test offerer 1")
        expect(received.path?.local).toBe("test answerer 1")
        expect(run.sender.tags()).toEqual([
          "CodeReady",
          "Verified",
          "Started",
          // Kept once the receiver accepted, not before: an attempt that moves nothing leaves nothing.
          "CheckpointSaved",
          "Reconnecting",
          "Reconnected",
        ])
        expect(run.receiver.tags()).toEqual(["Verified", "Confirm", "Started", "Reconnecting", "Reconnected"])
        expect(run.receiver.seen.find(TransferEvent.$is("Started"))?.already).toBe(0)
        // Verified on both sides: neither keeps a checkpoint.
        expect(yield* t.store.list()).toEqual([])
      }),
  )

  it.scoped(
    "the connection lost as the receiver's Done leaves: the sender hears it through the signal app and ends done",
    () =>
      Effect.gen(function* () {
        const t = yield* setup(Size)
        const done = (sent: TestPeers.Sent) => sent.from === "answerer" && decode(sent)._tag === "Done"
        // Done never arrives; the receiver, having sent it, does not know.
        yield* t.peers.dropWhen(done, Silence, ["offerer"])
        const run = yield* t.start({ maxRetries: 3, retryBackoff: Duration.seconds(1) })
        const sent = yield* Fiber.join(run.sending)
        expect(yield* Clock.currentTimeMillis, "no backoff waited, no attempt made").toBe(0)
        expect(t.peers.attempts("offerer")).toBe(1)
        expect(sent.path?.local).toBe("test offerer 0")
        // It waits a while for the sender to hang up, which on the dead link it never hears.
        yield* TestClock.adjust("5 seconds")
        yield* Fiber.join(run.receiving)
        expect((yield* t.received).equals(t.bytes)).toBe(true)
        expect(t.frames(0, "answerer").some((f) => f._tag === "Done")).toBe(false)
        // Both sides are done: neither keeps a checkpoint, and `send --resume` has nothing to redo.
        expect(yield* t.store.list()).toEqual([])
      }),
  )

  it.scoped(
    "gives up after --max-retries failed attempts; the receiver stops too; the checkpoints stay",
    () =>
      Effect.gen(function* () {
        const t = yield* setup(Size)
        yield* t.peers.dropWhen(chunkFrom(2 * MiB), Silence)
        const run = yield* t.start({ maxRetries: 2, retryBackoff: Duration.seconds(1) })
        yield* run.sender.next("Reconnecting")
        yield* run.receiver.next("Reconnecting")
        yield* t.peers.failNext(2)
        yield* TestClock.adjust("1 second")
        expect(t.peers.attempts("offerer")).toBe(2)
        expect(yield* run.sender.next("Reconnecting")).toMatchObject({
          attempt: 2,
          of: 2,
          why: TestPeers.UnreachableMessage,
        })
        yield* TestClock.adjust("1999 millis")
        expect(t.peers.attempts("offerer"), "the second wait is twice the first").toBe(2)
        yield* TestClock.adjust("1 millis")
        expect(yield* Effect.flip(Fiber.join(run.sending))).toEqual(
          new PeerFailed({ message: `${Silence}; gave up after 2 attempts to reconnect`, lost: true }),
        )
        // Told through the signal app: no more time passes, and its own patience is over 15 s.
        expect(yield* Effect.flip(Fiber.join(run.receiving))).toEqual(
          new PeerFailed({ message: "the peer left (the other side gave up reconnecting)", lost: true }),
        )
        expect(t.peers.attempts("offerer")).toBe(3)
        // The failed attempts never signaled: the receiver had no round to follow.
        expect(t.peers.attempts("answerer")).toBe(1)

        const id = t.transferId(run.sender.seen)
        expect((yield* t.store.load(id, "send")).direction).toBe("send")
        const holds = yield* t.receiverHolds(id)
        expect(holds.durable).toBeGreaterThanOrEqual(WriteBatchBytes)
        expect(holds.onDisk).toBeGreaterThanOrEqual(holds.durable)
      }),
  )

  it.scoped("a receiver that stops during the sender's backoff ends the sender at once", () =>
    Effect.gen(function* () {
      const t = yield* setup(Size)
      yield* t.peers.dropWhen(chunkFrom(2 * MiB), Silence)
      const run = yield* t.start({ maxRetries: 3, retryBackoff: Duration.seconds(10) })
      yield* run.sender.next("Reconnecting")
      yield* run.receiver.next("Reconnecting")
      yield* Fiber.interrupt(run.receiving)
      expect(yield* Effect.flip(Fiber.join(run.sending))).toEqual(
        new PeerFailed({ message: "the peer left (the other side stopped the transfer)", lost: true }),
      )
      expect(yield* Clock.currentTimeMillis, "the backoff was not waited out").toBe(0)
      expect(t.peers.attempts("offerer")).toBe(1)
      const id = t.transferId(run.sender.seen)
      expect((yield* t.receiverHolds(id)).durable).toBeGreaterThanOrEqual(WriteBatchBytes)
    }),
  )

  it.scoped(
    "a receiver that has not seen the drop follows the sender's newer round at once, and resumes",
    () =>
      Effect.gen(function* () {
        // Larger than the ack window: with no acknowledgement arriving, the sender cannot finish on the
        // dead link, whatever the receiver does on its side of it.
        const size = AckWindowBytes + Size
        const t = yield* setup(size)
        yield* t.peers.dropWhen(firstAck, Silence, ["offerer"])
        const run = yield* t.start({ maxRetries: 3, retryBackoff: Duration.seconds(1) })
        expect(yield* run.sender.next("Reconnecting")).toMatchObject({ attempt: 1, why: Silence })
        expect(t.peers.attempts("answerer")).toBe(1)
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(run.sending)
        yield* Fiber.join(run.receiving)

        expect(t.peers.attempts("answerer")).toBe(2)
        // It kept what it had written on the old link when the new round overtook it.
        const resume = t.frames(1, "answerer").find((f) => f._tag === "ResumeFrom")
        expect(resume).toMatchObject({ file: 0, offset: expect.any(Number) })
        expect(resume?._tag === "ResumeFrom" ? resume.offset : 0).toBeGreaterThanOrEqual(WriteBatchBytes)
        expect((yield* t.received).equals(t.bytes)).toBe(true)
        expect(run.sender.tags()).toContain("Reconnected")
        // Followed, not reconnected: it never counted an attempt of its own.
        expect(run.receiver.tags()).toEqual(["Verified", "Confirm", "Started"])
      }),
  )

  // On the real clock: the test clock, moved in steps while the disk and the hashing thread work in real
  // time, outran the reconnect rounds.
  it.live(
    "--limit-rate holds across a reconnect: the new link's bytes go at the cap, after one second's burst",
    () =>
      Effect.gen(function* () {
        const t = yield* setup(Size)
        yield* t.peers.dropWhen(chunkFrom(2 * MiB), Silence)
        const run = yield* t.start({ maxRetries: 3, retryBackoff: Duration.millis(200) }, MiB)
        yield* run.sender.next("Reconnected")
        const reconnected = yield* Clock.currentTimeMillis
        yield* Fiber.join(run.sending)
        yield* Fiber.join(run.receiving)
        const elapsed = (yield* Clock.currentTimeMillis) - reconnected
        expect((yield* t.received).equals(t.bytes)).toBe(true)
        expect(t.peers.attempts("offerer")).toBe(2)
        const wire = t.peers.sent
          .filter((s) => s.link === 1 && s.from === "offerer" && chunkFrom(0)(s))
          .reduce((sum, s) => sum + s.message.length, 0)
        expect(wire).toBeGreaterThan(MiB)
        // The bucket filled while the link was down, but holds one second's worth at most.
        expect(elapsed).toBeGreaterThanOrEqual(((wire - MiB) / MiB) * 1000 * 0.97)
        // The rest: the resume itself (hashing what the receiver held) and the final verification.
        expect(elapsed).toBeLessThan((wire / MiB) * 1000 + 1500)
      }).pipe(Effect.scoped),
  )
})
