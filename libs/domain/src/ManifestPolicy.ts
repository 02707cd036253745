import { Data, Either } from "effect"
import type { Entry, Manifest } from "./Manifest.js"

/**
 * The rules for a hostile manifest (DESIGN.md section 4) that no receiver may break, on any platform:
 * every path is relative, "/"-separated, stays inside the receiver's folder, prints without tricking a
 * terminal, and names each entry once. The sender refuses only these. What a receiver's own platform
 * refuses besides (Windows names, case and Unicode-form collisions) is NameRules.ts; disk rules
 * (symlinked parents, free space, overwrite) belong to the receiver.
 */

/** Re-exported by Manifest.ts; it lives here so that Manifest.ts -> ManifestPolicy.ts has no import cycle. */
export class ManifestError extends Data.TaggedError("ManifestError")<{
  /** The offending entry's path, already escaped for display; undefined when the manifest as a whole fails. */
  readonly entry: string | undefined
  /** A short, stable rule id such as "traversal" or "control-char". */
  readonly rule: string
  readonly message: string
}> {}

/**
 * At least 100,000 (DESIGN.md section 4). A manifest of this many entries takes the receiver 2-3 s to
 * decode and check (README, "What the receiver refuses"; bench/manifest-cost.mjs); every check is linear.
 */
export const MaxEntries = 200_000
export const MaxPathBytes = 1024
export const MaxComponentBytes = 255
export const MaxDepth = 32

const controlChars = /[\u0000-\u001f\u007f-\u009f]/
/** Bidi marks and overrides, zero-width and other invisible characters, BOM. */
const invisibleChars = /[\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/
/** Everything escapeForDisplay rewrites: the above, line/paragraph separators, and every other format char. */
const unprintable = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu

/**
 * Renders a name safe to print on a terminal: control, bidi, zero-width and other invisible characters
 * and lone surrogates become `\u{..}` escapes, and a backslash becomes `\\` so escapes stay unambiguous.
 */
export const escapeForDisplay = (s: string): string =>
  s
    .replace(/\\/g, "\\\\")
    .replace(unprintable, (c) => `\\u{${c.codePointAt(0)!.toString(16).padStart(4, "0")}}`)

const encoder = new TextEncoder()
/**
 * Whether `s` takes more than `max` bytes in UTF-8. A UTF-16 unit never takes more than 3 bytes, so
 * most names are settled without encoding them: that keeps a 100,000-entry manifest cheap to check.
 */
export const longerThan = (s: string, max: number): boolean =>
  s.length * 3 > max && encoder.encode(s).length > max

export interface Rule {
  readonly rule: string
  readonly test: (s: string) => boolean
  readonly message: string
}

/** Rules on a whole path, in order: the first that matches is reported. */
const pathRules: ReadonlyArray<Rule> = [
  { rule: "empty-path", test: (p) => p === "", message: "the path is empty" },
  { rule: "absolute", test: (p) => p.startsWith("/"), message: "absolute paths are not allowed" },
  { rule: "lone-surrogate", test: (p) => loneSurrogate.test(p), message: "the path is not valid Unicode" },
  { rule: "control-char", test: (p) => controlChars.test(p), message: "control characters are not allowed" },
  {
    rule: "invisible-char",
    test: (p) => invisibleChars.test(p),
    message: "bidi overrides and zero-width characters are not allowed",
  },
  {
    rule: "path-too-long",
    test: (p) => longerThan(p, MaxPathBytes),
    message: `the path is longer than ${MaxPathBytes} bytes`,
  },
  {
    rule: "too-deep",
    test: (p) => p.split("/").length > MaxDepth,
    message: `the path is more than ${MaxDepth} levels deep`,
  },
]

/** Rules on each "/"-separated component, in order. */
const componentRules: ReadonlyArray<Rule> = [
  { rule: "empty-component", test: (c) => c === "", message: "empty path components (// or a trailing /)" },
  { rule: "traversal", test: (c) => c === "..", message: '".." components are not allowed' },
  { rule: "dot-component", test: (c) => c === ".", message: '"." components are not allowed' },
  {
    rule: "component-too-long",
    test: (c) => longerThan(c, MaxComponentBytes),
    message: `a name is longer than ${MaxComponentBytes} bytes`,
  },
]

/** Long hostile paths are cut before printing; the cut is marked. */
export const shown = (path: string): string =>
  escapeForDisplay(path.length > 200 ? `${path.slice(0, 200)}...` : path)

export const reject = (path: string | undefined, rule: string, message: string): ManifestError =>
  new ManifestError({
    entry: path === undefined ? undefined : shown(path),
    rule,
    message: path === undefined ? message : `"${shown(path)}": ${message}`,
  })

export const firstBroken = (rules: ReadonlyArray<Rule>, s: string): Rule | undefined =>
  rules.find((r) => r.test(s))

const checkPath = (path: string): ManifestError | undefined => {
  const failed =
    firstBroken(pathRules, path) ??
    path
      .split("/")
      .map((c) => firstBroken(componentRules, c))
      .find((r) => r !== undefined)
  return failed && reject(path, failed.rule, failed.message)
}

interface Node {
  readonly path: string
  readonly kind: Entry["_tag"]
  /** Listed as an entry, rather than only implied as a parent. */
  explicit: boolean
}

/**
 * Duplicates, file-vs-directory clashes and, where `fold` maps several spellings to one name as the
 * receiving file system does, case/NFC collisions, over the tree the entries describe: every entry and
 * every implied parent directory is a node keyed by its folded path, and one key must have one spelling
 * and one kind. Listing a directory that is also implied by a file is fine.
 */
export const checkTree = (
  entries: ReadonlyArray<Entry>,
  fold: (name: string) => string = (name) => name,
): ManifestError | undefined => {
  const nodes = new Map<string, Node>()
  const visit = (path: string, key: string, kind: Node["kind"], explicit: boolean, entry: string) => {
    const node = nodes.get(key)
    if (node === undefined) {
      nodes.set(key, { path, kind, explicit })
      return undefined
    }
    if (node.path !== path)
      return reject(
        entry,
        "collision",
        `"${shown(path)}" and "${shown(node.path)}" differ only in case or Unicode form`,
      )
    if (node.kind !== kind)
      return reject(entry, "file-dir-clash", `"${shown(path)}" is both a file and a directory`)
    if (node.explicit && explicit) return reject(entry, "duplicate", "the path is listed twice")
    node.explicit ||= explicit
    return undefined
  }
  // The previous entry's parent passed already, and visiting it again changes nothing: a folder's
  // files, listed one after another, cost one visit each.
  let parentPath = ""
  let parentKey = ""
  for (const entry of entries) {
    const slash = entry.path.lastIndexOf("/")
    const sameParent = slash > 0 && slash === parentPath.length && entry.path.startsWith(parentPath)
    const parts = (sameParent ? entry.path.slice(slash + 1) : entry.path).split("/")
    let path = sameParent ? parentPath : ""
    let key = sameParent ? parentKey : ""
    for (const [i, part] of parts.entries()) {
      const last = i === parts.length - 1
      if (last) [parentPath, parentKey] = [path, key]
      path = path === "" ? part : `${path}/${part}`
      key = key === "" ? fold(part) : `${key}/${fold(part)}`
      const problem = visit(path, key, last ? entry._tag : "dir", last, entry.path)
      if (problem) return problem
    }
  }
  return undefined
}

/** Applies every rule that holds on any platform; the first violation wins. */
export const check = (m: Manifest): Either.Either<Manifest, ManifestError> => {
  if (m.entries.length > MaxEntries)
    return Either.left(
      reject(
        undefined,
        "too-many-entries",
        `more than ${MaxEntries.toLocaleString("en-US")} entries (${m.entries.length.toLocaleString("en-US")} listed)`,
      ),
    )
  for (const entry of m.entries) {
    const problem = checkPath(entry.path)
    if (problem) return Either.left(problem)
  }
  const clash = checkTree(m.entries)
  if (clash) return Either.left(clash)
  let total = 0
  for (const entry of m.entries) {
    if (entry._tag === "file") total += entry.size
    if (total > Number.MAX_SAFE_INTEGER)
      return Either.left(reject(undefined, "total-too-large", "the total size overflows"))
  }
  return Either.right(m)
}
