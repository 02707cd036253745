import { Schema } from "effect"

/** The public part of a join code: allocated by the signal app, the only part it ever sees. */
export const Nameplate = Schema.String.pipe(Schema.pattern(/^[0-9]{2,6}$/), Schema.brand("Nameplate"))
export type Nameplate = typeof Nameplate.Type

export const TransferId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9_-]{16,64}$/),
  Schema.brand("TransferId"),
)
export type TransferId = typeof TransferId.Type

/** A bearer token scoped to one side of one transfer. */
export const Token = Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_-]{22,64}$/), Schema.brand("Token"))
export type Token = typeof Token.Type

export const Side = Schema.Literal("sender", "receiver")
export type Side = typeof Side.Type
