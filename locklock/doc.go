// Package locklock is the core of the Locklock lock service: lock identities,
// the Engine interface every storage backend implements, the sentinel errors
// callers match with errors.Is, and the Service that every transport shares.
//
// The package imports no storage driver, no HTTP and no dependency-injection
// framework, so it can be embedded anywhere: the HTTP transport, the fx app and
// tests all build on the same Service.
//
// Responsibilities are split so that each guarantee lives in one place:
//
//   - Engines make each check-and-set step atomic (acquire if free, release
//     or refresh if the caller is allowed) and issue fencing tokens that only
//     ever rise for a lock name.
//   - The Service validates requests, applies defaults, hashes secrets, reads
//     the clock once per operation, runs long-poll waits in FIFO order, and
//     sweeps expired locks.
package locklock
