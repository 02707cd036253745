export * as Progress from "./Progress.js"
export * as Receiver from "./Receiver.js"
export * as Sender from "./Sender.js"
export * as Sources from "./Sources.js"
