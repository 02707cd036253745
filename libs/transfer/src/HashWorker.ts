import { createHash, type Hash } from "node:crypto"
import { parentPort } from "node:worker_threads"
import type { Request, Response } from "./Hasher.js"

/** Runs SHA-256 off the main thread, so hashing overlaps with the network and disk work there. */
const hashes = new Map<number, Hash>()
parentPort!.on("message", (request: Request) => {
  if (request.kind === "update") {
    let hash = hashes.get(request.id)
    if (hash === undefined) hashes.set(request.id, (hash = createHash("sha256")))
    for (const part of request.parts) hash.update(new Uint8Array(part.buffer, part.offset, part.length))
    const buffers = [...new Set(request.parts.map((part) => part.buffer))]
    parentPort!.postMessage({ kind: "returned", buffers } satisfies Response, buffers)
  } else {
    const digest = new Uint8Array((hashes.get(request.id) ?? createHash("sha256")).digest())
    hashes.delete(request.id)
    parentPort!.postMessage({ kind: "digest", id: request.id, digest } satisfies Response, [digest.buffer])
  }
})
