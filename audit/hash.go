package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// canonicalVersion is the "v" key of the hashed encoding. Any change to the
// encoding below (keys, order, formats) must bump it, and Verify must keep
// accepting the old version for rows written before the change.
const canonicalVersion = 1

// canonicalEvent fixes the hashed encoding of an event, version 1:
//
// One compact JSON object with exactly these keys, in this order, every key
// always present (no omitempty, so "empty" and "absent" cannot be swapped):
//
//	v seq time type actor client_addr user_agent auth_user helo message_id
//	header_id sender recipients size file_id file_name content_type sha256
//	link_id expires reason reply detail prev_hash
//
// v is 1; seq and size are JSON integers; time and expires are UTC in Go's
// time.RFC3339Nano layout (fraction without trailing zeros, "Z"), expires
// is "" when unset; recipients is an array of strings, [] when none.
// Strings are valid UTF-8 (Record replaces invalid bytes with U+FFFD
// before hashing and storing) and escaped as Go's encoding/json escapes
// them with HTML escaping off. No whitespace, no trailing newline.
//
// Event.Hash is the lowercase hex SHA-256 of these bytes. prev_hash is the
// Hash of the previous event ("" for the very first event, the purge anchor
// after a retention purge), which chains the events together.
type canonicalEvent struct {
	V           int      `json:"v"`
	Seq         int64    `json:"seq"`
	Time        string   `json:"time"`
	Type        string   `json:"type"`
	Actor       string   `json:"actor"`
	ClientAddr  string   `json:"client_addr"`
	UserAgent   string   `json:"user_agent"`
	AuthUser    string   `json:"auth_user"`
	Helo        string   `json:"helo"`
	MessageID   string   `json:"message_id"`
	HeaderID    string   `json:"header_id"`
	Sender      string   `json:"sender"`
	Recipients  []string `json:"recipients"`
	Size        int64    `json:"size"`
	FileID      string   `json:"file_id"`
	FileName    string   `json:"file_name"`
	ContentType string   `json:"content_type"`
	SHA256      string   `json:"sha256"`
	LinkID      string   `json:"link_id"`
	Expires     string   `json:"expires"`
	Reason      string   `json:"reason"`
	Reply       string   `json:"reply"`
	Detail      string   `json:"detail"`
	PrevHash    string   `json:"prev_hash"`
}

// canonicalTime is the one text form of an instant inside the hash and the
// expires column.
func canonicalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func canonicalOf(e *Event) canonicalEvent {
	recipients := e.Recipients
	if recipients == nil {
		recipients = []string{} // nil and empty must hash alike: both read back as []
	}
	return canonicalEvent{
		V:           canonicalVersion,
		Seq:         e.Seq,
		Time:        canonicalTime(e.Time),
		Type:        string(e.Type),
		Actor:       e.Actor,
		ClientAddr:  e.ClientAddr,
		UserAgent:   e.UserAgent,
		AuthUser:    e.AuthUser,
		Helo:        e.Helo,
		MessageID:   e.MessageID,
		HeaderID:    e.HeaderID,
		Sender:      e.Sender,
		Recipients:  recipients,
		Size:        e.Size,
		FileID:      e.FileID,
		FileName:    e.FileName,
		ContentType: e.ContentType,
		SHA256:      e.SHA256,
		LinkID:      e.LinkID,
		Expires:     canonicalTime(e.Expires),
		Reason:      e.Reason,
		Reply:       e.Reply,
		Detail:      e.Detail,
		PrevHash:    e.PrevHash,
	}
}

// canonicalBytes returns the encoding documented on canonicalEvent.
func canonicalBytes(c *canonicalEvent) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "<a@b>" readable for other verifiers; json.Marshal would write \u003c
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode event seq %d: %w", c.Seq, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func canonicalHash(c *canonicalEvent) (string, error) {
	b, err := canonicalBytes(c)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// HashEvent returns the hash an event with these fields (Seq and PrevHash
// included, Hash ignored) must carry. It lets other backends and external
// tools reproduce the chain.
func HashEvent(e Event) (string, error) {
	c := canonicalOf(&e)
	return canonicalHash(&c)
}
