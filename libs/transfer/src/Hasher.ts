import { Deferred, Effect } from "effect"
import { createHash } from "node:crypto"
import type { FileHandle } from "node:fs/promises"
import { Worker } from "node:worker_threads"

export type Request =
  | {
      readonly kind: "update"
      readonly id: number
      readonly parts: ReadonlyArray<{ buffer: ArrayBuffer; offset: number; length: number }>
    }
  | { readonly kind: "digest"; readonly id: number }

export type Response =
  | { readonly kind: "digest"; readonly id: number; readonly digest: Uint8Array }
  /** Memory of an update, hashed and handed back for reuse. */
  | { readonly kind: "returned"; readonly buffers: ReadonlyArray<ArrayBuffer> }

/** SHA-256 of one file, fed in order as its bytes stream past. */
export interface FileHash {
  /**
   * Hands the bytes to the hashing thread. Their memory moves there: the caller must not touch these
   * views, or anything else sharing their ArrayBuffers, afterwards.
   */
  readonly absorb: (views: ReadonlyArray<Uint8Array>) => void
  readonly digest: Effect.Effect<Uint8Array>
}

/** Blocks kept for reuse: enough for the reads and writes in flight between two hashing turns. */
const PoolSize = 32
/** Blocks are sized up to a multiple of this, so batches of slightly different sizes share them. */
const BlockGranule = 256 * 1024

/**
 * Files up to this size are hashed on the calling thread: a few microseconds of hashing, where handing
 * the bytes to the worker and waiting for its digest costs more than that per file (thousands of small files).
 */
const InlineBytes = 64 * 1024

/** SHA-256 on a worker thread, so hashing runs beside the disk and the network instead of between them. */
export class Hasher extends Effect.Service<Hasher>()("@p2pal/transfer/Hasher", {
  scoped: Effect.gen(function* () {
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() => new Worker(new URL("./HashWorker.js", import.meta.url))),
      (w) => Effect.promise(() => w.terminate()),
    )
    worker.unref()
    const waiting = new Map<number, Deferred.Deferred<Uint8Array>>()
    const pool: Array<ArrayBuffer> = []
    worker.on("message", (response: Response) => {
      if (response.kind === "returned") {
        pool.push(...response.buffers.slice(0, PoolSize - pool.length))
        return
      }
      const deferred = waiting.get(response.id)
      waiting.delete(response.id)
      if (deferred !== undefined) Deferred.unsafeDone(deferred, Effect.succeed(response.digest))
    })
    // A dead worker would leave every digest waiting forever: fail them, and any asked for later.
    let died: unknown
    const die = (error: unknown) => {
      died ??= error
      for (const deferred of waiting.values()) Deferred.unsafeDone(deferred, Effect.die(died))
      waiting.clear()
    }
    worker.on("error", die)
    worker.on("exit", (code) => die(new Error(`the hashing thread exited (code ${code})`)))
    let nextId = 0
    return {
      /**
       * Uninitialised memory for bytes that will be absorbed, recycled from earlier absorbs when it can
       * be: fresh memory costs a page fault per 4 KiB on first touch, which showed up as several percent
       * of a transfer's CPU.
       */
      allocate: (size: number): Buffer => {
        const pooled = pool.pop()
        if (pooled !== undefined && pooled.byteLength >= size) return Buffer.from(pooled, 0, size)
        return Buffer.allocUnsafeSlow(Math.ceil(size / BlockGranule) * BlockGranule).subarray(0, size)
      },
      /** A hash for a file of `size` bytes (as declared: it only picks where the hashing runs). */
      start: (size: number): FileHash => {
        if (size <= InlineBytes) {
          const hash = createHash("sha256")
          return {
            absorb: (views) => {
              for (const v of views) hash.update(v)
              // Hashed already: the memory is free for the next allocate, as the worker would hand it back.
              for (const buffer of new Set(views.map((v) => v.buffer as ArrayBuffer)))
                if (pool.length < PoolSize) pool.push(buffer)
            },
            digest: Effect.sync(() => new Uint8Array(hash.digest())),
          }
        }
        const id = nextId++
        return {
          absorb: (views) => {
            const request: Request = {
              kind: "update",
              id,
              parts: views.map((v) => ({
                buffer: v.buffer as ArrayBuffer,
                offset: v.byteOffset,
                length: v.byteLength,
              })),
            }
            worker.postMessage(request, [...new Set(views.map((v) => v.buffer as ArrayBuffer))])
          },
          digest: Effect.gen(function* () {
            if (died !== undefined) return yield* Effect.die(died)
            const deferred = yield* Deferred.make<Uint8Array>()
            waiting.set(id, deferred)
            worker.postMessage({ kind: "digest", id } satisfies Request)
            return yield* Deferred.await(deferred)
          }),
        }
      },
    }
  }),
}) {}

/** Bytes read per call by `absorbPrefix`. */
const PrefixReadBytes = 1024 * 1024

/**
 * Feeds the first `length` bytes of an open file to `hash`: the part of a file a resumed transfer does
 * not move again, so its SHA-256 still covers the whole file. Rejects if the file is shorter.
 */
export const absorbPrefix = async (
  hasher: Hasher,
  hash: FileHash,
  handle: FileHandle,
  length: number,
): Promise<void> => {
  for (let at = 0; at < length;) {
    const block = hasher.allocate(Math.min(PrefixReadBytes, length - at))
    const { bytesRead } = await handle.read(block, 0, block.length, at)
    if (bytesRead !== block.length) throw new Error(`it holds fewer than the ${length} bytes to resume from`)
    hash.absorb([block])
    at += bytesRead
  }
}
