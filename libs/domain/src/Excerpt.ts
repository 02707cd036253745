import { ParseResult } from "effect"

/**
 * Short excerpts of text that may quote a hostile peer or client, for messages, frames and close reasons
 * that must stay bounded whatever was sent.
 */

const encoder = new TextEncoder()

/**
 * The first `maxBytes` bytes of `text` in UTF-8, cut before a character that would not fit whole. Linear in
 * `maxBytes`, not in the text.
 */
export const utf8Prefix = (text: string, maxBytes: number): Uint8Array => {
  // A character is at least one byte, so the first `maxBytes` characters hold the first `maxBytes` bytes.
  const bytes = encoder.encode(text.length > maxBytes ? text.slice(0, maxBytes) : text)
  if (bytes.length <= maxBytes) return bytes
  let end = maxBytes
  // 10xxxxxx continues the character that starts before it.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--
  return bytes.subarray(0, end)
}

/** At most `maxChars` of `text`, "..." marking a cut; never half a surrogate pair, which is not text. */
export const chars = (text: string, maxChars: number): string => {
  if (text.length <= maxChars) return text
  const end = /[\uD800-\uDBFF]/.test(text.charAt(maxChars - 1)) ? maxChars - 1 : maxChars
  return `${text.slice(0, end)}...`
}

/**
 * The first problem a failed decode found: where ("entries.0.size", or "" for the value itself) and what.
 * The message may quote the value, so cut it with `chars` before showing it.
 */
export const firstIssue = (
  error: ParseResult.ParseError,
): { readonly path: string; readonly message: string } => {
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
  return issue === undefined
    ? { path: "", message: error.message }
    : { path: issue.path.map(String).join("."), message: issue.message }
}
