import type { SentFile } from "@p2pal/domain/Checkpoint"
import { checkSize, type Manifest, MaxPipeBytes, MaxTextMessageBytes } from "@p2pal/domain/Manifest"
import * as ManifestPolicy from "@p2pal/domain/ManifestPolicy"
import { LocalIoFailed, type SkippedFile, UsageError } from "@p2pal/domain/Errors"
import { Effect, Either, Option } from "effect"
import { constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { errnoText, lstat, readFailure } from "./Io.js"
import * as Patterns from "./Patterns.js"
import type { StreamSource } from "./StreamReader.js"

/** Where a file entry comes from, and its modification time when listed: a later one means it changed. */
export interface Source {
  readonly path: string
  readonly mtimeMs: number
  /** Not a file on disk: read once, front to back (`send --text`, `send -`); `path` only names it. */
  readonly stream?: StreamSource | undefined
}

/** What the sender offers: the manifest, and where on disk each file entry comes from (by entry index). */
export interface Sources {
  readonly manifest: Manifest
  readonly files: ReadonlyMap<number, Source>
  /** Entries left out because they are neither regular files nor directories (symlinks, devices, sockets). */
  readonly skipped: ReadonlyArray<string>
  /** Entries `--exclude` left out (a directory counts once, with all it holds). */
  readonly excluded: number
}

type Entry = Manifest["entries"][number]

/**
 * Opens the file and tells its size and modification time. Opening finds an unreadable file before a
 * code is handed out; O_NOFOLLOW and O_NONBLOCK as in the sender, so a link or FIFO swapped in is
 * refused or harmless.
 */
const statFile = async (abs: string) => {
  const handle = await fs.open(abs, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
  try {
    return await handle.stat()
  } finally {
    await handle.close()
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** A name read from disk as text; one that is not UTF-8 no receiver may take (ManifestPolicy). */
const utf8Name = (bytes: Buffer, parent: string) =>
  Effect.try({
    try: () => utf8.decode(bytes),
    catch: () =>
      new UsageError({
        message: `cannot send "${ManifestPolicy.escapeForDisplay(`${parent}/${new TextDecoder().decode(bytes)}`)}": the name is not valid UTF-8; rename it`,
      }),
  })

/**
 * Builds the manifest for `send`: plain files go in by base name; with `recursive`, a directory goes in
 * under its own name with its whole tree. Symlinks are not followed, so nothing outside what the user
 * named can leak into a transfer. A word with wildcards that names nothing on disk is a pattern: each
 * match goes in under its path from the pattern's static base (Patterns.ts). `exclude` globs leave out
 * entries of directories and pattern matches, by their path from what was named or their base name.
 *
 * A file or directory inside that cannot be read ends it, naming the path; with `skipUnreadable`
 * (`--skip-errors`) it is left out and handed to that instead.
 */
export const collect = (
  paths: ReadonlyArray<string>,
  recursive: boolean,
  skipUnreadable?: (file: SkippedFile) => Effect.Effect<void>,
  exclude: ReadonlyArray<string> = [],
) =>
  Effect.gen(function* () {
    const entries: Array<Entry> = []
    const files = new Map<number, Source>()
    const skipped: Array<string> = []
    const seen = new Set<string>()
    const excludes = Patterns.excluder(exclude)
    let unreadable = 0
    let excluded = 0

    /** What `read` gives, or None for a path left out because it cannot be read (`why` says why). */
    const readOrSkip = <A>(abs: string, read: () => Promise<A>, why: (e: unknown) => string = readFailure) =>
      Effect.tryPromise({ try: read, catch: why }).pipe(
        Effect.map(Option.some),
        Effect.catchAll((reason) => {
          if (skipUnreadable === undefined)
            return Effect.fail(
              new LocalIoFailed({
                path: abs,
                message: `${reason}; nothing was sent (--skip-errors sends the rest without it)`,
              }),
            )
          unreadable++
          return Effect.as(skipUnreadable({ path: abs, reason }), Option.none<A>())
        }),
      )

    const add = (entry: Entry, source?: Source) =>
      Effect.gen(function* () {
        if (seen.has(entry.path))
          return yield* new UsageError({
            message: `two inputs would both arrive as "${entry.path}"; rename one`,
          })
        seen.add(entry.path)
        if (source !== undefined) files.set(entries.length, source)
        entries.push(entry)
      })

    /** The folders above a pattern's match, each listed once, as a walk lists them. */
    const addParents = (rel: string) =>
      Effect.forEach(
        rel
          .split("/")
          .slice(0, -1)
          .map((_, i, parts) => parts.slice(0, i + 1).join("/")),
        (dir) => (seen.has(dir) ? Effect.void : add({ _tag: "dir", path: dir })),
        { discard: true },
      )

    /** `inside` is the path from what the user named, which `--exclude` is matched against. */
    const walk = (dir: string, rel: string, inside = ""): Effect.Effect<void, LocalIoFailed | UsageError> =>
      Effect.gen(function* () {
        // As bytes: a name that is not UTF-8 would otherwise come back altered, and name no file.
        const listed = yield* readOrSkip(dir, () =>
          fs.readdir(dir, { withFileTypes: true, encoding: "buffer" }),
        )
        if (Option.isNone(listed)) return
        yield* add({ _tag: "dir", path: rel })
        const children = []
        for (const child of listed.value) {
          const name = yield* utf8Name(child.name, rel)
          children.push({ child, name })
        }
        children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
        for (const { child, name } of children) {
          const abs = path.join(dir, name)
          const childRel = `${rel}/${name}`
          const childInside = inside === "" ? name : `${inside}/${name}`
          if (excludes(childInside)) excluded++
          else if (child.isDirectory()) yield* walk(abs, childRel, childInside)
          else if (child.isFile()) yield* addFile(abs, childRel)
          else skipped.push(abs)
        }
      })

    const addFile = (abs: string, rel: string) =>
      Effect.gen(function* () {
        const stat = yield* readOrSkip(abs, () => statFile(abs))
        if (Option.isSome(stat))
          yield* add(
            { _tag: "file", path: rel, size: stat.value.size },
            { path: abs, mtimeMs: stat.value.mtimeMs },
          )
      })

    const addMatches = ({ base, matches }: Patterns.Expanded) =>
      Effect.forEach(
        matches,
        (rel) =>
          Effect.gen(function* () {
            const abs = path.join(base, rel)
            if (excludes(rel)) return void excluded++
            const stat = yield* readOrSkip(abs, () => fs.lstat(abs), errnoText)
            if (Option.isNone(stat)) return
            yield* addParents(rel)
            if (stat.value.isDirectory()) yield* walk(abs, rel, rel)
            else if (stat.value.isFile()) yield* addFile(abs, rel)
            else skipped.push(abs)
          }),
        { discard: true },
      )

    for (const input of paths) {
      const abs = path.resolve(input)
      // A file whose name looks like a pattern is taken as it is.
      if (Patterns.isPattern(input) && (yield* lstat(abs)) === undefined) {
        yield* addMatches(yield* Patterns.expand(input, recursive))
        continue
      }
      // A named path that is missing is as unreadable as one that cannot be opened.
      const found = yield* readOrSkip(abs, () => fs.lstat(abs), errnoText)
      if (Option.isNone(found)) continue
      const stat = found.value
      const name = path.basename(abs)
      if (stat.isDirectory()) {
        if (!recursive) return yield* new UsageError({ message: `${input} is a directory; send it with -r` })
        yield* walk(abs, name)
      } else if (stat.isFile()) yield* addFile(abs, name)
      else if (stat.isSymbolicLink())
        return yield* new UsageError({
          message: `${input} is a symlink; name the file or directory it points to`,
        })
      else return yield* new UsageError({ message: `${input} is not a regular file or directory` })
    }
    if (entries.length === 0)
      return yield* new UsageError({
        message: unreadable > 0 ? "nothing to send: every file was skipped" : "nothing to send",
      })
    const manifest: Manifest = { version: 1, entries }
    // The receiver applies the same policy; checking here says which name is the problem before anyone waits.
    yield* Either.mapLeft(
      Either.flatMap(ManifestPolicy.check(manifest), checkSize),
      (e) => new UsageError({ message: `cannot send ${e.message}` }),
    )
    return { manifest, files, skipped, excluded } satisfies Sources
  })

/**
 * What `send --resume` offers again: the checkpoint's entries, read from the paths it recorded. A file
 * whose size or modification time differs from the checkpoint's goes in with its size now and is marked
 * changed, so it comes whole; `onChanged` hears of each. A file that cannot be read ends it, naming the path.
 */
export const fromCheckpoint = (
  checkpoint: { readonly manifest: Manifest; readonly files: ReadonlyArray<SentFile> },
  onChanged: (path: string) => Effect.Effect<void>,
) =>
  Effect.gen(function* () {
    const entries = [...checkpoint.manifest.entries]
    const files = new Map<number, Source>()
    const changed: Array<number> = []
    for (const file of checkpoint.files) {
      const stat = yield* Effect.tryPromise({
        try: () => statFile(file.source),
        catch: (e) => new LocalIoFailed({ path: file.source, message: `${readFailure(e)}; cannot resume` }),
      })
      const entry = entries[file.index]!
      if (entry._tag === "file" && (stat.size !== entry.size || stat.mtimeMs !== file.mtimeMs)) {
        entries[file.index] = { ...entry, size: stat.size }
        changed.push(file.index)
        yield* onChanged(file.source)
      }
      files.set(file.index, { path: file.source, mtimeMs: stat.mtimeMs })
    }
    const manifest: Manifest = { version: 1, entries, ...(changed.length > 0 ? { changed } : {}) }
    // The list of changed files makes it longer than the one that was checked when the transfer began.
    yield* Either.mapLeft(
      checkSize(manifest),
      (e) => new UsageError({ message: `cannot resume with ${e.message}` }),
    )
    return { manifest, files, skipped: [], excluded: 0 } satisfies Sources
  })

/** One entry read from `stream`, under `name`: what `send --text` and `send -` offer. */
const streamed = (kind: "text" | "pipe", name: string, size: number, stream: StreamSource) =>
  Effect.gen(function* () {
    const manifest: Manifest = { version: 1, entries: [{ _tag: "file", path: name, size }], stream: kind }
    yield* Either.mapLeft(
      Either.flatMap(ManifestPolicy.check(manifest), checkSize),
      (e) => new UsageError({ message: `cannot send ${e.message}` }),
    )
    const files = new Map([[0, { path: name, mtimeMs: 0, stream }]])
    return { manifest, files, skipped: [], excluded: 0 } satisfies Sources
  })

/** `send --text`: the text, as UTF-8, for the receiver's stdout. */
export const fromText = (text: string) => {
  const bytes = new TextEncoder().encode(text)
  return bytes.length > MaxTextMessageBytes
    ? Effect.fail(
        new UsageError({
          message: `--text takes at most ${MaxTextMessageBytes / 1024} KiB (${bytes.length} bytes given); send a longer text as a file, or pipe it: p2pal send - < file`,
        }),
      )
    : streamed("text", "text", bytes.length, {
        read: async function* () {
          yield bytes
        },
        max: bytes.length,
      })
}

/** `send -`: standard input as one file named `name`, of a size known only at its end. */
export const fromPipe = (name: string, read: () => AsyncIterable<Uint8Array>) =>
  name.includes("/")
    ? Effect.fail(new UsageError({ message: `--name ${name} must be a file name, without "/"` }))
    : streamed("pipe", name, 0, { read, max: MaxPipeBytes })
