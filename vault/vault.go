// Package vault owns encryption at rest: the key ring of age X25519
// identities (with IDs, so keys can rotate), the blob store that keeps each
// attachment encrypted on disk, and the spool that keeps a message in
// transit encrypted under a key that lives only in memory.
package vault
