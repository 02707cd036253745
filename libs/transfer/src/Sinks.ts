import { LocalIoFailed } from "@p2pal/domain/Errors"
import { Effect, type Scope } from "effect"
import { createHash } from "node:crypto"
import type { Writable } from "node:stream"
import type { DurableFile } from "./DurableFile.js"
import type { Hasher } from "./Hasher.js"

/**
 * Where a received stream goes instead of a durable file: the same interface, so the receiver checks
 * its chunks, its size and its SHA-256 the same way. Hashed as it arrives, on this thread.
 */
export type Opener = <A, E, R>(
  body: (file: DurableFile) => Effect.Effect<A, E, R>,
) => Effect.Effect<A, E | LocalIoFailed, Exclude<R, Scope.Scope> | Hasher>

const sink = (
  append: (bytes: Uint8Array) => Effect.Effect<void, LocalIoFailed>,
  place: (digest: Uint8Array) => void,
): DurableFile => {
  const hash = createHash("sha256")
  let received = 0
  let digest: Uint8Array | undefined
  const file: DurableFile = {
    get received() {
      return received
    },
    get written() {
      return received
    },
    append: (bytes) =>
      Effect.suspend(() => {
        received += bytes.length
        hash.update(bytes)
        return Effect.as(append(bytes), true)
      }),
    write: Effect.succeed(false),
    flushed: Effect.void,
    digest: Effect.sync(() => (digest ??= new Uint8Array(hash.digest()))),
    place: Effect.suspend(() => Effect.sync(() => place(digest!))),
    discard: Effect.void,
  }
  return file
}

/** `send --text`: the bytes kept in memory (the manifest holds them to 64 KiB), handed to `done` once verified. */
export const toMemory =
  (done: (bytes: Uint8Array) => void): Opener =>
  (body) =>
    Effect.suspend(() => {
      const pieces: Array<Uint8Array> = []
      return Effect.scoped(
        body(
          sink(
            (bytes) => Effect.sync(() => void pieces.push(Uint8Array.from(bytes))),
            () => done(Buffer.concat(pieces)),
          ),
        ),
      )
    })

/**
 * `recv --out -`: each chunk written to `out` before the next is taken, so a slow reader holds back the
 * acknowledgements and with them the sender. Nothing can be taken back: a bad SHA-256 is only reported.
 */
export const toWritable =
  (out: Writable, name: string): Opener =>
  (body) =>
    Effect.scoped(
      body(
        sink(
          (bytes) =>
            Effect.async<void, LocalIoFailed>((resume) => {
              out.write(bytes, (error) =>
                resume(
                  error
                    ? Effect.fail(new LocalIoFailed({ path: name, message: error.message }))
                    : Effect.void,
                ),
              )
            }),
          () => undefined,
        ),
      ),
    )
