import { layer } from "@effect/vitest"
import { Ids, Manifest, PeerSignal } from "@p2pal/domain"
import type { SkippedFile } from "@p2pal/domain/Errors"
import { encode, HeaderBytes, MaxChunkBytes, MaxFrameBytes, MaxManifestBytes } from "@p2pal/domain/Frames"
import { MaxEntries } from "@p2pal/domain/ManifestPolicy"
import { PeerLink, type SignalPort } from "@p2pal/infra/PeerLink"
import { Hasher } from "@p2pal/transfer/Hasher"
import * as Receiver from "@p2pal/transfer/Receiver"
import { WriteBatchBytes } from "@p2pal/transfer/Wire"
import { Checkpoints } from "@p2pal/transfer/Checkpoints"
import { ConfigProvider, Context, Duration, Effect, Exit, Layer, Queue, Schema, Stream } from "effect"
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { createInterface } from "node:readline"
import { Writable } from "node:stream"
import { fileURLToPath } from "node:url"
import { expect } from "vitest"
import { receiveOptions } from "./ReceiveOptions.js"

/** One step of the rogue's script (see rogue-sender.mjs); byte fields are base64. */
type Step =
  | { readonly manifest: string }
  | { readonly raw: string }
  | { readonly await: string }
  | { readonly chunk: { readonly file: number; readonly offset: number; readonly bytes: string } }
  | { readonly fileEnd: { readonly file: number; readonly size: number; readonly sha256: string } }
  | { readonly skip: { readonly file: number; readonly reason: string } }
  | { readonly drop: true }

/** A frame the receiver sent, as the rogue reports it: payload bytes dropped. */
interface Reply {
  readonly _tag: string
  readonly reason?: string
  readonly message?: string
}

const rogueScript = fileURLToPath(new URL("./rogue-sender.mjs", import.meta.url))
const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64")
const decodeSignal = Schema.decodeUnknownSync(PeerSignal.PeerSignal)

/**
 * The rogue sender as a child process, and a SignalPort to it over its stdin/stdout. It is ended by
 * closing its stdin, and killed (by its own pid) if it does not go.
 */
const rogue = (script: ReadonlyArray<Step>) =>
  Effect.gen(function* () {
    /** The rogue's signals for each of its connections (rounds), as they come. */
    const rounds = new Map<number, Queue.Queue<PeerSignal.PeerSignal>>()
    const signalsOf = (round: number) => {
      const found = rounds.get(round) ?? Effect.runSync(Queue.unbounded<PeerSignal.PeerSignal>())
      rounds.set(round, found)
      return found
    }
    const replies = yield* Queue.unbounded<Reply>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, [rogueScript], { stdio: ["pipe", "pipe", "inherit"] })),
      (child) =>
        Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          const killer = setTimeout(() => child.kill("SIGKILL"), 5_000)
          child.once("exit", () => {
            clearTimeout(killer)
            resume(Effect.void)
          })
          child.stdin.end()
        }),
    )
    // A rogue that already exited shows up as a refused connection or a missing reply, not as EPIPE here.
    child.stdin.on("error", () => {})
    const write = (message: unknown) =>
      Effect.sync(() => void child.stdin.write(JSON.stringify(message) + "\n"))
    createInterface({ input: child.stdout }).on("line", (line) => {
      const message = JSON.parse(line)
      if (message.signal) Queue.unsafeOffer(signalsOf(message.round), decodeSignal(message.signal))
      else if (message.frame) Queue.unsafeOffer(replies, message.frame)
      else if (message.error) Queue.unsafeOffer(replies, { _tag: "RogueCrashed", message: message.error })
    })
    yield* write({ script })
    /** Signals to and from the rogue's connection of `round`. */
    const port = (round: number): SignalPort<never> => ({
      send: (signal) => write({ signal }),
      incoming: Stream.fromQueue(signalsOf(round)),
    })
    /** The next thing the receiver said that is not an Ack. */
    const nextReply = Queue.take(replies).pipe(
      Effect.repeat({ while: (reply) => reply._tag === "Ack" }),
      Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => "the receiver said nothing" }),
      Effect.orDie,
    )
    return { port, nextReply }
  })

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "p2pal-hostile-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
)

/** Every entry under `dir`, relative; directories end with "/", symlinks are listed, not followed. */
const scan = (dir: string) =>
  Effect.promise(async () =>
    (await fs.readdir(dir, { recursive: true, withFileTypes: true }))
      .map((e) => path.relative(dir, path.join(e.parentPath, e.name)) + (e.isDirectory() ? "/" : ""))
      .sort(),
  )

const encoder = new TextEncoder()
const manifestOf = (...entries: ReadonlyArray<Manifest.Entry>): Step => ({
  manifest: base64(Manifest.encodeManifest({ version: 1, entries })),
})
/** A manifest the schema itself refuses, so encodeManifest cannot build it. */
const rawManifest = (json: string): Step => ({ manifest: base64(encoder.encode(json)) })
const file = (p: string, size = 1): Manifest.Entry => ({ _tag: "file", path: p, size })
/** The steps that send `data` as file `index`, whole and with its true SHA-256. */
const whole = (index: number, data: Uint8Array): ReadonlyArray<Step> => [
  { chunk: { file: index, offset: 0, bytes: base64(data) } },
  {
    fileEnd: {
      file: index,
      size: data.length,
      sha256: base64(createHash("sha256").update(data).digest()),
    },
  },
]

/** A raw frame: the header (type, a, b, len) and `len` zero bytes, with no checks applied. */
const header = (type: number, a: number, b: number, len: number): Uint8Array => {
  const out = new Uint8Array(HeaderBytes + len)
  const view = new DataView(out.buffer)
  view.setUint8(0, type)
  view.setUint32(1, a)
  view.setBigUint64(5, BigInt(b))
  view.setUint32(13, len)
  return out
}

/** This process's peak resident memory so far, in bytes. */
const peakRss = () => process.resourceUsage().maxRSS * 1024
/** What a bomb may add to the peak: a 1 GiB expansion, or even one of 64 MiB, would go far past it. */
const MaxBombGrowth = 32 * 1024 * 1024

/** A zstd block header (RFC 8878 3.1.1.2): 3 bytes, little-endian. */
const blockHeader = (last: boolean, type: "raw" | "rle", size: number) => {
  const value = (last ? 1 : 0) | ((type === "raw" ? 0 : 1) << 1) | (size << 3)
  return [value & 0xff, (value >> 8) & 0xff, value >> 16]
}
const zstdMagic = [0x28, 0xb5, 0x2f, 0xfd]
/** A zstd frame holding `bytes` in one raw block, its content size declared (single segment, 1-byte size). */
const storedZstd = (bytes: Uint8Array) =>
  new Uint8Array([...zstdMagic, 0x20, bytes.length, ...blockHeader(true, "raw", bytes.length), ...bytes])
/**
 * A zstd bomb: `blocks` RLE blocks of 128 KiB of zeros at 4 bytes each, no content size declared
 * (window 128 KiB): 8192 blocks make 32 KiB that expand to 1 GiB.
 */
const bombZstd = (blocks: number) =>
  new Uint8Array([
    ...zstdMagic,
    0x00,
    0x38,
    ...Array.from({ length: blocks }, (_, i) => [
      ...blockHeader(i === blocks - 1, "rle", 128 * 1024),
      0,
    ]).flat(),
  ])
/** The Zstd frame for file 0 at `offset`, standing for `size` bytes, as the rogue sends it. */
const zstdStep = (offset: number, size: number, bytes: Uint8Array): Step => ({
  raw: base64(encode({ _tag: "Zstd", file: 0, offset, size, bytes })),
})

interface Row {
  readonly name: string
  readonly script: (root: string) => ReadonlyArray<Step>
  /** What is on disk before the rogue connects. */
  readonly setup?: (root: string, out: string) => Promise<void>
  readonly error: "PeerFailed" | "LocalIoFailed"
  /** In the receiver's error message. */
  readonly says: string
  readonly reply: "Reject" | "Error"
  /** In the Reject/Error text the rogue gets back. */
  readonly hears: string
  /** The receiver asked the user and took the transfer before the rogue misbehaved. */
  readonly accepted?: boolean
  /** Files the rogue sent whole before it misbehaved: kept, as from any sender. */
  readonly saved?: ReadonlyArray<string>
  /** A frame that would expand far past its size: the receiver's peak memory must stay where it was. */
  readonly bomb?: boolean
  /** The codecs the receiver offers (all it has if not given). */
  readonly codecs?: ReadonlyArray<"zstd">
  /** The receiver applies Windows' name rules (NameRules), as on Windows or with P2PAL_NAME_RULES=windows. */
  readonly windows?: boolean
}

/** Refused while the file list is read: the receiver's error and the sender's Reject carry the same words. */
const refused = (name: string, steps: ReadonlyArray<Step>, says: string): Row => ({
  name,
  script: () => steps,
  error: "PeerFailed",
  says,
  reply: "Reject",
  hears: says,
})

/** What only a receiver with Windows' name rules refuses: a Linux one keeps such names. */
const onWindows = (row: Row): Row => ({ ...row, name: `${row.name} (Windows rules)`, windows: true })

const rows: ReadonlyArray<Row> = [
  refused("traversal ../x", [manifestOf(file("../x"))], '"../x": ".." components are not allowed'),
  {
    // Absolute, and aimed inside the temp root, where the scan below would see it if it were obeyed.
    ...refused("an absolute <root>/etc/x", [], "absolute paths are not allowed"),
    script: (root) => [manifestOf(file(`${root}/etc/x`))],
  },
  onWindows(refused("drive letter C:x", [manifestOf(file("C:x"))], "drive letters are not allowed")),
  onWindows(refused("UNC \\\\server\\share\\x", [manifestOf(file("\\\\server\\share\\x"))], "backslashes")),
  onWindows(refused("backslash traversal ..\\x", [manifestOf(file("..\\x"))], "backslashes")),
  refused(
    "a symlink entry",
    [rawManifest('{"version":1,"entries":[{"_tag":"symlink","path":"link","target":"/etc/passwd"}]}')],
    "the manifest is malformed at entries.0",
  ),
  {
    name: "a parent that is already a symlink inside out",
    setup: async (root, out) => {
      await fs.mkdir(path.join(root, "elsewhere"))
      await fs.mkdir(out)
      await fs.symlink(path.join(root, "elsewhere"), path.join(out, "link"))
    },
    script: () => [manifestOf(file("link/x"))],
    error: "LocalIoFailed",
    says: "is a symlink; refusing to write through it",
    reply: "Reject",
    hears: "the receiver already has link",
  },
  refused("control chars", [manifestOf(file("a\u0001b"))], "control characters are not allowed"),
  refused("an ESC sequence", [manifestOf(file("\u001b[31mred"))], "control characters are not allowed"),
  refused("a bidi override", [manifestOf(file("a\u202etxt.exe"))], "bidi overrides"),
  refused(
    "invalid UTF-8",
    [
      {
        manifest: base64(
          Buffer.from('{"version":1,"entries":[{"_tag":"file","path":"a\xff","size":1}]}', "latin1"),
        ),
      },
    ],
    "the manifest is not valid UTF-8",
  ),
  onWindows(refused("Windows reserved name CON", [manifestOf(file("CON"))], "Windows reserved names")),
  onWindows(refused("trailing dot a.", [manifestOf(file("a."))], "names ending in a dot or a space")),
  onWindows(refused("case-fold collision A / a", [manifestOf(file("A"), file("a"))], "differ only in case")),
  refused(
    "file-vs-dir clash a / a/b",
    [manifestOf(file("a"), file("a/b"))],
    "is both a file and a directory",
  ),
  refused("33 levels", [manifestOf(file(Array(33).fill("d").join("/")))], "more than 32 levels deep"),
  refused(
    "a path over 1024 bytes",
    [manifestOf(file(Array(5).fill("n".repeat(250)).join("/")))],
    "longer than 1024 bytes",
  ),
  refused(
    "one entry over the cap",
    // As JSON, since spreading this many entries into manifestOf would overflow the stack.
    [
      rawManifest(
        JSON.stringify({
          version: 1,
          entries: Array.from({ length: MaxEntries + 1 }, (_, i) => file(`f${i}`, 0)),
        }),
      ),
    ],
    `more than ${MaxEntries.toLocaleString("en-US")} entries (${(MaxEntries + 1).toLocaleString("en-US")} listed)`,
  ),
  refused(
    "a negative size",
    [rawManifest('{"version":1,"entries":[{"_tag":"file","path":"a","size":-1}]}')],
    "the manifest is malformed at entries.0.size",
  ),
  refused(
    "sizes summing above MAX_SAFE_INTEGER",
    [manifestOf(file("a", 2 ** 52), file("b", 2 ** 52))],
    "the total size overflows",
  ),
  {
    name: "a total above the free disk space",
    script: () => [manifestOf(file("huge.bin", 2 ** 52))],
    error: "LocalIoFailed",
    says: "not enough free disk space: the files need 4,503,599,627,370,496 bytes but only",
    reply: "Reject",
    hears: "does not have 4,503,599,627,370,496 bytes of free disk space",
  },
  {
    name: "bytes past the declared size",
    script: () => [
      manifestOf(file("x.bin", 10)),
      { await: "Accept" },
      { chunk: { file: 0, offset: 0, bytes: base64(new Uint8Array(20).fill(7)) } },
    ],
    error: "PeerFailed",
    says: "the sender sent more bytes than declared for x.bin",
    reply: "Error",
    hears: "the sender sent more bytes than declared for x.bin",
    accepted: true,
  },
  {
    name: "a skip for a file the manifest does not have",
    script: () => [manifestOf(file("x.bin", 10)), { await: "Accept" }, { skip: { file: 7, reason: "gone" } }],
    error: "PeerFailed",
    says: "protocol error: skip for file 7 while receiving x.bin",
    reply: "Error",
    hears: "protocol error: skip for file 7 while receiving x.bin",
    accepted: true,
  },
  {
    name: "a skip for a file that already ended",
    script: () => [
      manifestOf(file("a.txt", 3), file("b.txt", 3)),
      { await: "Accept" },
      ...whole(0, encoder.encode("abc")),
      { skip: { file: 0, reason: "gone" } },
    ],
    error: "PeerFailed",
    says: "protocol error: skip for file 0 while receiving b.txt",
    reply: "Error",
    hears: "protocol error: skip for file 0 while receiving b.txt",
    accepted: true,
    saved: ["out/a.txt"],
  },
  {
    name: "a zstd bomb: 32 KiB declared as 1000 bytes that would expand to 1 GiB",
    script: () => [
      manifestOf(file("x.bin", 1100)),
      { await: "Accept" },
      { chunk: { file: 0, offset: 0, bytes: base64(new Uint8Array(100).fill(7)) } },
      zstdStep(100, 1000, bombZstd(8192)),
    ],
    error: "PeerFailed",
    says: "compressed data for x.bin at 100 does not decode to the 1000 bytes it declares",
    reply: "Error",
    hears: "does not decode to the 1000 bytes it declares",
    accepted: true,
    bomb: true,
  },
  {
    name: "a zstd frame whose header declares more than its frame does",
    script: () => {
      const bomb = bombZstd(8)
      // Single segment, 4-byte content size: 1 GiB, where the frame says 1000.
      const header = [...zstdMagic, 0xa0, 0, 0, 0, 0x40]
      return [
        manifestOf(file("x.bin", 1000)),
        { await: "Accept" },
        zstdStep(0, 1000, new Uint8Array([...header, ...bomb.subarray(6)])),
      ]
    },
    error: "PeerFailed",
    says: "does not decode to the 1000 bytes it declares",
    reply: "Error",
    hears: "does not decode to the 1000 bytes it declares",
    accepted: true,
    bomb: true,
  },
  {
    name: "a zstd frame that runs past the file's size",
    script: () => [
      manifestOf(file("x.bin", 10)),
      { await: "Accept" },
      zstdStep(0, 20, storedZstd(new Uint8Array(20).fill(7))),
    ],
    error: "PeerFailed",
    says: "the sender sent more bytes than declared for x.bin",
    reply: "Error",
    hears: "the sender sent more bytes than declared for x.bin",
    accepted: true,
  },
  {
    name: "a corrupt zstd frame",
    script: () => {
      const frame = storedZstd(new Uint8Array(20).fill(7))
      frame[6] = 0xff // the block header: a reserved block type
      return [manifestOf(file("x.bin", 20)), { await: "Accept" }, zstdStep(0, 20, frame)]
    },
    error: "PeerFailed",
    says: "compressed data for x.bin at 0 does not decode to the 20 bytes it declares",
    reply: "Error",
    hears: "does not decode",
    accepted: true,
  },
  {
    name: "a zstd frame to a receiver that offered no codec",
    script: () => [
      manifestOf(file("x.bin", 20)),
      { await: "Accept" },
      zstdStep(0, 20, storedZstd(new Uint8Array(20).fill(7))),
    ],
    error: "PeerFailed",
    says: "the sender sent zstd-compressed data, which this receiver did not offer",
    reply: "Error",
    hears: "which this receiver did not offer",
    accepted: true,
    codecs: [],
  },
  refused(
    "a manifest declared over MaxManifestBytes (refused before allocating it)",
    [{ raw: base64(header(1, MaxManifestBytes + 1, 0, 1)) }],
    `manifest size ${MaxManifestBytes + 1} is outside`,
  ),
  refused(
    "a frame over MaxFrameBytes",
    [{ raw: base64(header(1, 100_000, 0, MaxFrameBytes + 1 - HeaderBytes)) }],
    `larger than the ${MaxFrameBytes}-byte limit`,
  ),
]

/** The receiving end of the rogue's connection of `round`. */
const answer = (port: (round: number) => SignalPort<never>, round: number) =>
  Effect.flatMap(PeerLink, (peers) =>
    peers.connect({
      role: "answerer",
      iceServers: [],
      relayOnly: false,
      signal: port(round),
      openTimeout: "10 seconds",
    }),
  )

const connect = (script: ReadonlyArray<Step>) =>
  Effect.gen(function* () {
    const { port, nextReply } = yield* rogue(script)
    return { channel: yield* answer(port, 0), nextReply }
  })

// One node-datachannel runtime for the file: its cleanup() ends every connection in the process.
layer(Layer.merge(PeerLink.Default, Hasher.Default), { excludeTestServices: true })(
  "a rogue sender in another process, over a real DataChannel",
  (it) => {
    for (const row of rows)
      it.scoped(`refuses ${row.name}, tells the sender, and writes nothing`, () =>
        Effect.gen(function* () {
          const root = yield* tempDir
          const out = path.join(root, "out")
          if (row.setup) yield* Effect.promise(() => row.setup!(root, out))
          const before = yield* scan(root)
          const peakBefore = peakRss()
          const { channel, nextReply } = yield* connect(row.script(root))
          let confirmed = false
          const received = yield* Effect.exit(
            Receiver.receive(
              channel,
              receiveOptions(out, {
                confirm: () => Effect.sync(() => (confirmed = true)),
                codecs: row.codecs,
                windowsNames: row.windows ?? false,
              }),
            ).pipe(
              // A receiver that lets the rogue through would wait for its data forever: fail in good time.
              Effect.timeout("15 seconds"),
            ),
          )
          if (row.accepted)
            expect(yield* nextReply).toEqual({ _tag: "Accept", codecs: row.codecs ?? ["zstd"] })
          const reply = yield* nextReply
          expect(received).toMatchObject({
            cause: { error: { _tag: row.error, message: expect.stringContaining(row.says) } },
          })
          expect(reply).toMatchObject({ _tag: row.reply })
          expect(reply.reason ?? reply.message).toContain(row.hears)
          expect(confirmed).toBe(row.accepted ?? false)
          // Nothing new anywhere under the root, out included; only an accepted transfer creates out itself,
          // and keeps what arrived whole before the rogue misbehaved.
          const created = (yield* scan(root)).filter((entry) => !before.includes(entry))
          expect(created).toEqual([
            ...(row.accepted && !before.includes("out/") ? ["out/"] : []),
            ...(row.saved ?? []),
          ])
          expect(yield* scan(root)).toEqual(expect.arrayContaining(before))
          // The receiver runs in this process: its peak (a high-water mark) must not move by a bomb's worth.
          if (row.bomb) expect(peakRss() - peakBefore).toBeLessThan(MaxBombGrowth)
        }),
      )

    it.scoped("takes a well-behaved file from the same rogue, written without setuid/setgid bits", () =>
      Effect.gen(function* () {
        const out = yield* tempDir
        const data = encoder.encode("hello from another process\n")
        const { channel, nextReply } = yield* connect([
          manifestOf(file("hello.txt", data.length)),
          { await: "Accept" },
          ...whole(0, data),
        ])
        const received = yield* Effect.exit(Receiver.receive(channel, receiveOptions(out)))
        expect(Exit.isSuccess(received)).toBe(true)
        expect(yield* nextReply).toEqual({ _tag: "Accept", codecs: ["zstd"] })
        expect(yield* nextReply).toEqual({ _tag: "Done" })
        const target = path.join(out, "hello.txt")
        expect(yield* Effect.promise(() => fs.readFile(target))).toEqual(Buffer.from(data))
        expect((yield* Effect.promise(() => fs.stat(target))).mode & 0o7000).toBe(0)
        expect(yield* scan(out)).toEqual(["hello.txt"])
      }),
    )

    it.scoped(
      "recv --out -: a pipe whose SHA-256 does not match went to stdout, and is IntegrityFailed saying so",
      () =>
        Effect.gen(function* () {
          const out = yield* tempDir
          const data = encoder.encode("bytes that went out before the end said they were wrong\n")
          const written: Array<Buffer> = []
          const stdout = new Writable({
            write: (chunk: Buffer, _, done) => {
              written.push(chunk)
              done()
            },
          })
          const pipe = Manifest.encodeManifest({ version: 1, entries: [file("stdin", 0)], stream: "pipe" })
          const { channel, nextReply } = yield* connect([
            { manifest: base64(pipe) },
            { await: "Accept" },
            { chunk: { file: 0, offset: 0, bytes: base64(data) } },
            { fileEnd: { file: 0, size: data.length, sha256: base64(new Uint8Array(32)) } },
          ])
          const received = yield* Effect.exit(Receiver.receive(channel, receiveOptions(out, { stdout })))
          expect(received).toMatchObject({
            cause: { error: { _tag: "IntegrityFailed", path: "stdin", toStdout: true } },
          })
          expect(yield* nextReply).toMatchObject({ _tag: "Accept" })
          expect(yield* nextReply).toMatchObject({ _tag: "Error", message: "SHA-256 mismatch for stdin" })
          expect(Buffer.concat(written)).toEqual(Buffer.from(data))
          expect(yield* scan(out)).toEqual([])
        }),
    )

    it.scoped("takes a skip of the file in progress: its temporary file goes, the next file arrives", () =>
      Effect.gen(function* () {
        const out = yield* tempDir
        // Over one write batch, so the receiver has written (and acknowledged) part of it before the skip.
        const count = Math.ceil(WriteBatchBytes / MaxChunkBytes) + 1
        const bytes = base64(new Uint8Array(MaxChunkBytes).fill(7))
        const chunks = Array.from({ length: count }, (_, i): Step => ({
          chunk: { file: 0, offset: i * MaxChunkBytes, bytes },
        }))
        const next = encoder.encode("the file after\n")
        const { channel, nextReply } = yield* connect([
          manifestOf(file("skipped.bin", 2 * count * MaxChunkBytes), file("next.txt", next.length)),
          { await: "Accept" },
          ...chunks,
          { await: "Ack" },
          { skip: { file: 0, reason: "it changed while being sent" } },
          ...whole(1, next),
        ])
        const skipped: Array<SkippedFile> = []
        const received = yield* Effect.exit(
          Receiver.receive(
            channel,
            receiveOptions(out, { onSkipped: (file) => Effect.sync(() => skipped.push(file)) }),
          ),
        )
        expect(Exit.isSuccess(received)).toBe(true)
        expect(yield* nextReply).toEqual({ _tag: "Accept", codecs: ["zstd"] })
        expect(yield* nextReply).toEqual({ _tag: "Done" })
        expect(skipped).toEqual([{ path: "skipped.bin", reason: "it changed while being sent" }])
        expect(yield* scan(out)).toEqual(["next.txt"])
        expect(yield* Effect.promise(() => fs.readFile(path.join(out, "next.txt")))).toEqual(
          Buffer.from(next),
        )
      }),
    )

    /**
     * Two rounds of one rogue: it offers `first` (one 2 MiB file), is accepted, sends a chunk, drops the
     * connection and, on the next, offers `second`. The receiver runs as `recv` does, with a checkpoint
     * store, and takes the second connection as Transfer.receive does after a drop (`accepted`) or, for a
     * `fresh` one, as a new session of recv would (asking the user, who says yes).
     */
    const reconnecting = (first: Manifest.Manifest, second: Manifest.Manifest, fresh = false) =>
      Effect.gen(function* () {
        const root = yield* tempDir
        const out = path.join(root, "out")
        const home = path.join(root, "home")
        const store = Context.get(
          yield* Layer.build(
            Checkpoints.Default.pipe(
              Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["P2PAL_HOME", home]])))),
            ),
          ),
          Checkpoints,
        )
        const checkpoints = { store, ttl: Duration.hours(1) }
        const { port, nextReply } = yield* rogue([
          { manifest: base64(Manifest.encodeManifest(first)) },
          { await: "Accept" },
          { chunk: { file: 0, offset: 0, bytes: base64(new Uint8Array(MaxChunkBytes).fill(7)) } },
          { drop: true },
          { manifest: base64(Manifest.encodeManifest(second)) },
        ])
        const dropped = yield* Effect.exit(
          Receiver.receive(yield* answer(port, 0), receiveOptions(out, { checkpoints })),
        )
        expect(dropped).toMatchObject({ cause: { error: { _tag: "PeerFailed", lost: true } } })
        expect(yield* nextReply).toMatchObject({ _tag: "Accept" })
        // What the first round leaves, as any drop does: the checkpoint, and its temporary file.
        const kept = yield* store.load(first.transfer!, "recv")
        const afterDrop = yield* scan(root)
        const refused = yield* Effect.exit(
          Receiver.receive(
            yield* answer(port, 1),
            receiveOptions(out, { checkpoints, accepted: fresh ? undefined : first }),
          ).pipe(Effect.timeout("15 seconds")),
        )
        const reply = yield* nextReply
        // Nothing more written, and the first round's checkpoint as it was: a resume still builds on it.
        expect(yield* scan(root)).toEqual(afterDrop)
        expect(afterDrop.some((entry) => /^out\/\..+\.p2pal-part$/.test(entry))).toBe(true)
        expect(afterDrop).not.toContain("out/a.bin")
        expect(yield* store.load(first.transfer!, "recv")).toEqual(kept)
        if (second.transfer !== undefined && second.transfer !== first.transfer)
          expect(Exit.isFailure(yield* Effect.exit(store.load(second.transfer, "recv")))).toBe(true)
        return { refused, reply }
      })

    const transferId = (n: number) => Schema.decodeSync(Ids.TransferId)(`rogue-transfer-${n}`.padEnd(22, "x"))
    const twoMiB = (name: string, transfer: Ids.TransferId): Manifest.Manifest => ({
      version: 1,
      entries: [file(name, 2 * 1024 * 1024)],
      transfer,
    })

    // A PeerFailed that is no loss: not reconnected, and recv exits 5 (README, Exit codes).
    it.scoped("refuses a rogue that offers other files after reconnecting, and writes nothing more", () =>
      Effect.gen(function* () {
        const { refused, reply } = yield* reconnecting(
          twoMiB("a.bin", transferId(1)),
          twoMiB("b.bin", transferId(1)),
        )
        const says = "the sender offered other files after reconnecting"
        expect(refused).toMatchObject({ cause: { error: { _tag: "PeerFailed", message: says } } })
        expect(Exit.isFailure(refused) && refused.cause).not.toMatchObject({ error: { lost: true } })
        expect(reply).toMatchObject({ _tag: "Reject", reason: says })
      }),
    )

    it.scoped("refuses a rogue that names another transfer's checkpoint after reconnecting", () =>
      Effect.gen(function* () {
        const { refused, reply } = yield* reconnecting(
          twoMiB("a.bin", transferId(1)),
          twoMiB("a.bin", transferId(2)),
        )
        const says = `the sender named another transfer after reconnecting (${transferId(2)}, not ${transferId(1)})`
        expect(refused).toMatchObject({ cause: { error: { _tag: "PeerFailed", message: says } } })
        expect(Exit.isFailure(refused) && refused.cause).not.toMatchObject({ error: { lost: true } })
        expect(reply).toMatchObject({ _tag: "Reject", reason: says })
      }),
    )

    it.scoped("refuses a new sender that names a transfer this receiver keeps for other files", () =>
      Effect.gen(function* () {
        const { refused, reply } = yield* reconnecting(
          twoMiB("a.bin", transferId(1)),
          twoMiB("b.bin", transferId(1)),
          true,
        )
        const says = `the sender named transfer ${transferId(1)}, of which this receiver keeps a checkpoint for other files`
        expect(refused).toMatchObject({ cause: { error: { _tag: "PeerFailed", message: says } } })
        expect(reply).toMatchObject({ _tag: "Reject", reason: says })
      }),
    )
  },
)
