export * as Ids from "./Ids.js"
export * as SignalApi from "./SignalApi.js"
export * as TransferState from "./TransferState.js"
