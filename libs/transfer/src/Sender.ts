// A little over 250 lines: the send loop reads as one, with the ack window, compression and the rate cap in it.
import { Frames, Manifest } from "@p2pal/domain"
import { LocalIoFailed, PeerFailed, type SkippedFile } from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import { Clock, Deferred, Duration, Effect } from "effect"
import * as AckWindow from "./AckWindow.js"
import * as BlockReader from "./BlockReader.js"
import * as Compression from "./Compression.js"
import * as Lookahead from "./Lookahead.js"
import * as Outbox from "./Outbox.js"
import type { Progress } from "./Progress.js"
import type { RateLimit } from "./RateLimit.js"
import { Hasher } from "./Hasher.js"
import * as Payload from "./Payload.js"
import type { Source, Sources } from "./Sources.js"
import * as StreamReader from "./StreamReader.js"
import { frameReader, sendFrame, unexpected } from "./Wire.js"
import { zstd } from "./Zstd.js"

export interface SendOptions {
  /** Payload bytes per chunk frame (at most Frames.MaxChunkBytes). */
  readonly chunkSize: number
  readonly progress: Progress
  /** With `--encrypt`: seal every chunk payload with this key (the manifest says so). */
  readonly payloadKey?: Buffer | undefined
  /**
   * With `--skip-errors`: a file that cannot be read, or changes while it is read, is skipped (the
   * receiver is told) and handed to this, instead of ending the transfer.
   */
  readonly skipUnreadable?: ((file: SkippedFile) => Effect.Effect<void>) | undefined
  /** For the caller's checkpoint: what the receiver has confirmed of each file. */
  readonly acked?: AckedFiles | undefined
  /** `--limit-rate`: the cap on the bytes this side puts on the wire (after compression). */
  readonly limit?: RateLimit | undefined
  /** `--compress` and `--compress-level`; auto at the default level if not given. */
  readonly compress?: Compression.CompressOptions | undefined
}

export interface AckedFiles {
  /** Bytes of each file (by manifest index) the receiver confirmed; the sender fills it in. */
  readonly bytes: Map<number, number>
  /** Runs after each change to `bytes`. */
  readonly onChange: Effect.Effect<void>
  /** Runs each time the receiver accepts the offer. */
  readonly accepted: Effect.Effect<void>
}

/** A file to send: the bytes before `from`, which the receiver holds, are only hashed. */
interface FileToSend extends BlockReader.Options {
  readonly entry: Manifest.Entry & { _tag: "file" }
}

/** A send that returns sooner than this did not wait for the link: it had room for more. */
const LinkWaitNanos = 500_000n
const seconds = (nanos: bigint) => Number(nanos) / 1e9

/** After telling the receiver we stop, how long to wait for it to answer, so the message is not lost in a close. */
const StopGrace = Duration.seconds(5)

/** Refuses a broken ResumeFrom list: the receiver hears why, as the sender's user does. */
const badResume = (channel: Channel, problem: string) => {
  const message = `protocol error: the receiver asked to resume ${problem}`
  return Effect.zipRight(
    Effect.ignore(sendFrame(channel, { _tag: "Error", message })),
    Effect.fail(new PeerFailed({ message })),
  )
}

/**
 * Waits for the receiver's answer to the manifest: its ResumeFrom list, if it holds some of the files
 * already, then Accept. Returns, per file index, the bytes the receiver holds (its size: verified).
 * Each file may be named once, so the list is at most as long as the manifest has files.
 */
const acceptance = (
  channel: Channel,
  nextFrame: Effect.Effect<Frames.Frame, PeerFailed>,
  manifest: Manifest.Manifest,
) =>
  Effect.gen(function* () {
    const offsets = new Map<number, number>()
    const changed = new Set(manifest.changed ?? [])
    while (true) {
      const reply = yield* nextFrame
      if (reply._tag === "Accept") return { offsets, codecs: reply.codecs }
      if (reply._tag === "Reject")
        return yield* new PeerFailed({ message: `the receiver declined: ${reply.reason}` })
      if (reply._tag === "Error")
        return yield* new PeerFailed({ message: `the receiver failed: ${reply.message}` })
      if (reply._tag !== "ResumeFrom") return yield* unexpected(reply, "Accept")
      const { file, offset } = reply
      const entry = manifest.entries[file]
      if (entry?._tag !== "file") return yield* badResume(channel, `file ${file}, which is not in the list`)
      if (offsets.has(file)) return yield* badResume(channel, `${entry.path} twice`)
      if (offset > entry.size)
        return yield* badResume(channel, `${entry.path} at ${offset}, past its ${entry.size} bytes`)
      if (changed.has(file)) return yield* badResume(channel, `${entry.path}, which changed and comes whole`)
      offsets.set(file, offset)
    }
  })

/**
 * The sending side of one transfer: offers the manifest, then streams every file in manifest order,
 * never more than the ack window (AckWindow.ts) ahead of what the receiver has written, and returns once
 * the receiver reports every file verified.
 */
export const send = Effect.fn("Sender.send")(function* (
  channel: Channel,
  sources: Sources,
  options: SendOptions,
) {
  const { payloadKey, chunkSize } = options
  const manifestBytes = Manifest.encodeManifest(
    payloadKey === undefined ? sources.manifest : { ...sources.manifest, encryption: "aes-256-gcm" },
  )
  for (let offset = 0; offset < manifestBytes.length; offset += Frames.MaxChunkBytes) {
    const bytes = manifestBytes.subarray(offset, offset + Frames.MaxChunkBytes)
    yield* sendFrame(channel, { _tag: "ManifestPart", total: manifestBytes.length, offset, bytes })
  }
  const nextFrame = frameReader(channel)
  const { offsets, codecs } = yield* acceptance(channel, nextFrame, sources.manifest)
  const compress = options.compress ?? { mode: "auto", level: Compression.DefaultLevel }
  // Sealed chunks (--encrypt) go as they are: a Zstd frame carries no authentication tag.
  const codec =
    compress.mode !== "none" && payloadKey === undefined && codecs.includes("zstd") ? yield* zstd : undefined

  const { progress, limit } = options
  progress.compressing = codec !== undefined
  progress.limit = limit?.bytesPerSecond
  const speeds = new Compression.Speeds()
  const hasher = yield* Hasher
  const verified = yield* Deferred.make<void, PeerFailed>()
  const held = [...offsets.values()].reduce((sum, offset) => sum + offset, 0)
  const window = AckWindow.make(progress, held, Deferred.await(verified))
  const ackedFiles = options.acked
  for (const [index, offset] of offsets) ackedFiles?.bytes.set(index, offset)
  if (ackedFiles !== undefined) yield* ackedFiles.accepted
  /** Files begun in this session and not yet fully acknowledged: where their new bytes start in the count. */
  const unconfirmed = new Map<
    number,
    { readonly start: number; readonly from: number; readonly size: number }
  >()
  const recordAcked = Effect.suspend(() => {
    if (ackedFiles === undefined) return Effect.void
    for (const [index, { start, from, size }] of unconfirmed) {
      const bytes = from + Math.min(size - from, Math.max(0, progress.bytes - start))
      ackedFiles.bytes.set(index, bytes)
      if (bytes === size) unconfirmed.delete(index)
    }
    return ackedFiles.onChange
  })
  const ackLoop = Effect.gen(function* () {
    while (true) {
      const frame = yield* nextFrame
      if (frame._tag === "Ack") {
        window.ack(frame.bytes)
        yield* recordAcked
      } else if (frame._tag === "Done") return
      else if (frame._tag === "Error")
        return yield* new PeerFailed({ message: `the receiver stopped: ${frame.message}` })
      else return yield* unexpected(frame, "Ack or Done")
    }
  })
  const outbox = Outbox.make(channel)
  yield* ackLoop.pipe(
    Effect.exit,
    Effect.flatMap((exit) => Deferred.done(verified, exit)),
    Effect.forkScoped,
  )
  /** Sends the file from byte `from` on, taking it from `prepared` if it was opened ahead. */
  const sendFile = (file: FileToSend, prepared: () => BlockReader.Prepared | undefined) =>
    Effect.gen(function* () {
      const { index, entry, from } = file
      const { stream } = file.source
      const small = BlockReader.isSmall(file)
      // Every other frame goes after the small files' waiting ones.
      const post = small ? outbox.post : (frames: ReadonlyArray<Uint8Array>) => channel.send(...frames)
      if (!small) yield* outbox.flush
      progress.file = index
      progress.fileBytes = from
      unconfirmed.set(index, { start: progress.sent, from, size: entry.size })
      const hash = hasher.start(entry.size)
      const streamed = stream === undefined ? undefined : yield* StreamReader.open(stream, index, chunkSize)
      const reader = streamed ?? (yield* BlockReader.open({ ...file, hash }, prepared))
      // A stream may wait for its next bytes for ever: a receiver gone meanwhile ends the wait.
      const next =
        streamed === undefined
          ? reader.next
          : Effect.raceFirst(reader.next, Effect.zipRight(Deferred.await(verified), Effect.never))
      const packer = Compression.packer(compress, codec, speeds, index, entry.path, (why) =>
        progress.raw.set(index, why),
      )
      let lastSent = yield* Clock.currentTimeNanos
      while (true) {
        const block = yield* next
        if (block === undefined) break
        const { payloads, start, end } = block
        const packing = yield* Clock.currentTimeNanos
        const frames =
          payloadKey === undefined
            ? packer.pack(block)
            : payloads.map((p, i) => Payload.sealChunk(payloadKey, index, start + i * chunkSize, p))
        const packed = yield* Clock.currentTimeNanos
        if (payloadKey === undefined && frames !== block.frames)
          speeds.compressed(end - start, seconds(packed - packing))
        const wire = frames.reduce((sum, frame) => sum + frame.length, 0)
        yield* window.room(end - start)
        if (limit !== undefined) yield* limit.take(wire)
        yield* post(frames)
        const sent = yield* Clock.currentTimeNanos
        // The sender waited for the link (or the cap): it was busy all the while since the last send.
        if (sent - packed >= LinkWaitNanos) speeds.linkBound(wire, seconds(sent - lastSent))
        lastSent = sent
        progress.wire += wire
        progress.original += end - start
        progress.sent += end - start
        progress.fileBytes += end - start
        // node-datachannel copied each frame on send, so the bytes can move to the hashing thread now.
        hash.absorb(payloads)
      }
      // Every byte was read, but a file changed since it was listed is not the one the receiver was offered.
      yield* reader.unchanged
      const sha256 = yield* hash.digest
      const size = streamed?.size() ?? entry.size
      yield* post([Frames.encode({ _tag: "FileEnd", file: index, size, sha256 })])
    }).pipe(Effect.scoped)

  /** Skips the file (`--skip-errors`), or stops the transfer naming it; the receiver is told either way. */
  const unreadable = (
    index: number,
    entry: Manifest.Entry,
    source: Source,
    reason: string,
  ): Effect.Effect<void, PeerFailed | LocalIoFailed> => {
    const { skipUnreadable } = options
    unconfirmed.delete(index)
    if (skipUnreadable !== undefined)
      return Effect.zipRight(
        outbox.post([Frames.encode({ _tag: "Skip", file: index, reason })]),
        skipUnreadable({ path: source.path, reason }),
      )
    return Effect.zipRight(
      outbox.flush,
      sendFrame(channel, { _tag: "Error", message: `could not send ${entry.path}: ${reason}` }),
    ).pipe(
      // The receiver answers by stopping too; until then the message may still sit in a send buffer.
      Effect.zipRight(Deferred.await(verified).pipe(Effect.raceFirst(channel.closed))),
      Effect.timeout(StopGrace),
      Effect.ignore,
      Effect.zipRight(
        Effect.fail(
          new LocalIoFailed({
            path: source.path,
            message: `${reason}; the transfer was stopped (--skip-errors would send the other files without it)`,
          }),
        ),
      ),
    )
  }

  // Files the receiver verified in an earlier session are left out.
  const files = sources.manifest.entries.flatMap((entry, index) => {
    const source = sources.files.get(index)
    const from = offsets.get(index) ?? 0
    if (entry._tag !== "file" || source === undefined || (offsets.has(index) && from === entry.size))
      return []
    return [{ entry, source, index, size: entry.size, from, chunkSize }]
  })
  yield* Effect.gen(function* () {
    const lookahead = yield* Lookahead.make(files)
    for (const [position, file] of files.entries())
      yield* sendFile(file, () => lookahead.take(position)).pipe(
        Effect.catchTag("Unreadable", ({ reason }) =>
          unreadable(file.index, file.entry, file.source, reason),
        ),
      )
    yield* outbox.flush
  }).pipe(Effect.scoped)
  yield* Deferred.await(verified).pipe(Effect.raceFirst(channel.closed))
  progress.bytes = progress.totalBytes
})
