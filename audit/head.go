package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// The log is anchored outside the rows an attacker with write access to
// the database (or to Redis) can edit, in two ways:
//
//   - every event carries a MAC: lowercase hex HMAC-SHA256, keyed by the
//     audit key (derived from the key ring's secret, which is not in the
//     database), over the event's hash. Editing an event and re-hashing it
//     and every later event no longer verifies without the key.
//   - after every commit the log writes a signed head, {seq, hash, sig}
//     where sig is the HMAC of "attachgate-audit-head v1 <seq> <hash>", to
//     a file outside the database (Options.HeadPath, storage.dir/audit-head
//     by default in attachgate). Verify compares the database with it:
//     events deleted from the end (or all of them) show as a truncation
//     naming the lost range, and a log that was replaced by an older copy
//     or started over in an emptied Redis shows the same way.
//
// The head only moves forward: several processes (instances sharing
// storage.dir, the CLI) write it under an flock and never replace a higher
// seq with a lower one. Appending refuses while the log ends before the
// head (ErrBehindHead): a sequence number is never given out twice.

// ErrBehindHead is returned by Record and RecordAll when the log ends
// before the head recorded outside it: events were lost (the database was
// replaced by an older or empty one, or Redis came back empty). Nothing
// is appended until an operator recovers the log deliberately
// (`attachgate recover`).
var ErrBehindHead = errors.New("audit log ends before its head recorded outside the database: events were lost")

// AuditKey derives the audit MAC key from the key ring's secret, so the
// secret's other use (signing download URLs) and this one never share a key.
func AuditKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("attachgate audit event MAC v1"))
	return m.Sum(nil)
}

// eventMAC is the MAC of an event with this hash; "" without a key.
func eventMAC(key []byte, hash string) string {
	if len(key) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(hash))
	return hex.EncodeToString(m.Sum(nil))
}

// Head is the newest event as recorded outside the database.
type Head struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
	Sig  string `json:"sig"`
}

func headSig(key []byte, seq int64, hash string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("attachgate-audit-head v1 " + strconv.FormatInt(seq, 10) + " " + hash))
	return hex.EncodeToString(m.Sum(nil))
}

// valid reports whether h's signature is good under key.
func (h Head) valid(key []byte) bool {
	return hmac.Equal([]byte(h.Sig), []byte(headSig(key, h.Seq, h.Hash)))
}

// ReadHead reads the head file at path; ok is false when there is none.
func ReadHead(path string) (h Head, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Head{}, false, nil
	}
	if err != nil {
		return Head{}, false, fmt.Errorf("read audit head %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return Head{}, true, fmt.Errorf("audit head %s: %w", path, err)
	}
	return h, true, nil
}

// headWriter moves the head file forward.
type headWriter struct {
	path string
	key  []byte
}

// advance records (seq, hash) as the head unless the file already holds a
// higher seq. Written to a temp file and renamed, under an flock on
// path+".lock", so readers never see half a head and writers in several
// processes never move it back.
func (w *headWriter) advance(seq int64, hash string) error {
	if w == nil || w.path == "" {
		return nil
	}
	lock, err := os.OpenFile(w.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("audit head: lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if cur, ok, err := ReadHead(w.path); err == nil && ok && cur.Seq >= seq {
		return nil
	}
	data, err := json.Marshal(Head{Seq: seq, Hash: hash, Sig: headSig(w.key, seq, hash)})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(w.path), filepath.Base(w.path)+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("audit head: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), w.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("audit head: %w", err)
	}
	return nil
}

// checkAhead refuses an append after lastSeq when the head outside the
// database is further on.
func (w *headWriter) checkAhead(lastSeq int64) error {
	if w == nil || w.path == "" {
		return nil
	}
	h, ok, err := ReadHead(w.path)
	if err != nil {
		return err
	}
	if ok && h.Seq > lastSeq {
		return fmt.Errorf("%w (log ends at seq %d, head at seq %d in %s)", ErrBehindHead, lastSeq, h.Seq, w.path)
	}
	return nil
}
