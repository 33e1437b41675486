package vault

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"filippo.io/age"
)

const (
	spoolPrefix = "spool-"
	spoolSuffix = ".age"
)

// Spool holds one SMTP transaction's message on disk, encrypted with age
// under a file key generated for this spool alone and kept only in memory
// (no public-key wrapping: that cost five X25519 operations per message):
// after a crash the file is unreadable, and CleanSpool deletes it at
// start-up.
//
// Write and Close are for the single writer; after Close, Open may be
// called any number of times, concurrently.
type Spool struct {
	mu       sync.Mutex
	path     string
	identity age.Identity // yields the file key held in memory
	f        *os.File
	bw       *bufio.Writer
	enc      io.WriteCloser
	size     int64
	err      error // first write error, returned by every later call
	closed   bool
	removed  bool
}

// NewSpool creates a spool file in dir (created 0700 if missing). Spool
// directories belong to one instance: CleanSpool empties them wholesale.
func NewSpool(dir string) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("new spool in %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, spoolPrefix+"*"+spoolSuffix) // O_EXCL, mode 0600
	if err != nil {
		return nil, fmt.Errorf("new spool in %s: %w", dir, err)
	}
	bw := fileWriterPool.Get().(*bufio.Writer)
	bw.Reset(f)
	key := &spoolKey{}
	enc, err := age.Encrypt(bw, key)
	if err != nil {
		bw.Reset(nil)
		fileWriterPool.Put(bw)
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("new spool %s: %w", f.Name(), err)
	}
	return &Spool{path: f.Name(), identity: age.NewInjectedFileKeyIdentity(key.fileKey), f: f, bw: bw, enc: enc}, nil
}

// spoolKey is the spool's age recipient: it keeps the file key age
// generated in memory instead of wrapping it to a public key, and writes
// an empty stanza. No X25519 per message; a spool is as unreadable after a
// crash as before, because its key only ever lived in this process.
type spoolKey struct{ fileKey []byte }

const spoolStanzaType = "attachgate-spool"

func (k *spoolKey) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	k.fileKey = append([]byte(nil), fileKey...)
	return []*age.Stanza{{Type: spoolStanzaType}}, nil
}

// Write appends plaintext to the spool.
func (s *Spool) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return 0, s.err
	case s.closed:
		return 0, fmt.Errorf("write spool %s: already closed", s.path)
	}
	n, err := s.enc.Write(p)
	s.size += int64(n)
	if err != nil {
		s.err = fmt.Errorf("write spool %s: %w", s.path, err)
		return n, s.err
	}
	return n, nil
}

// Close finishes the encrypted stream and flushes it to the file. It does
// not sync: a spool is worthless after a crash (its key is gone), so the
// sender's MTA keeps the message until we answer. Close is idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.err
	}
	s.closed = true
	if s.removed {
		return s.err
	}
	err := s.enc.Close()
	if err == nil {
		err = s.bw.Flush()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.releaseWriter()
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("close spool %s: %w", s.path, err)
	}
	return s.err
}

// Size returns the plaintext bytes written so far.
func (s *Spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Open returns a fresh reader over the plaintext from the start. The reader
// is a *Blob; OpenReaderAt returns it with that type.
func (s *Spool) Open() (io.ReadCloser, error) {
	return s.OpenReaderAt()
}

// OpenReaderAt returns a fresh random-access reader over the plaintext, for
// parsers that work on offsets. Only after Close.
func (s *Spool) OpenReaderAt() (*Blob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.removed:
		return nil, fmt.Errorf("open spool %s: removed", s.path)
	case !s.closed:
		return nil, fmt.Errorf("open spool %s: still being written (call Close first)", s.path)
	case s.err != nil:
		return nil, s.err
	}
	b, err := openBlob(s.path, s.identity)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	return b, nil
}

// Remove closes and deletes the spool file and forgets its key. Readers
// already open keep working until closed. Remove is idempotent.
func (s *Spool) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return nil
	}
	s.removed = true
	if !s.closed {
		s.closed = true
		s.f.Close() // discard: nobody will read it
		s.releaseWriter()
	}
	s.identity = nil
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove spool %s: %w", s.path, err)
	}
	return nil
}

func (s *Spool) releaseWriter() {
	if s.bw != nil {
		s.bw.Reset(nil)
		fileWriterPool.Put(s.bw)
		s.bw = nil
	}
}

// CleanSpool deletes every spool file left in dir by an earlier run (their
// keys died with it) and returns how many. A missing dir is not an error.
func CleanSpool(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clean spool %s: %w", dir, err)
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, spoolPrefix) || !strings.HasSuffix(name, spoolSuffix) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("clean spool %s: %w", dir, err)
	}
	return removed, nil
}
