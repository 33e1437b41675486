package vault

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/google/uuid"
)

const (
	// ageChunkSize is age's STREAM chunk (internal/stream.ChunkSize): the
	// unit of decryption, so reads aligned to it decrypt each chunk once.
	ageChunkSize = 64 << 10
	// fileBufferSize batches age's 64 KiB chunk writes into fewer syscalls.
	fileBufferSize = 256 << 10
	// copyBufferSize is the read size from the caller's stream.
	copyBufferSize = 128 << 10

	blobSuffix = ".age"
	blobTmpDir = "tmp"
	// timeLayoutDir holds the blobs with time-ordered IDs.
	timeLayoutDir = "t"
)

var (
	fileWriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, fileBufferSize) }}
	copyBufferPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}
	chunkPool      = sync.Pool{New: func() any { b := make([]byte, ageChunkSize); return &b }}
)

// validBlobID keeps blob IDs safe to use as file names.
var validBlobID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// BlobStore keeps attachments encrypted with age in a directory tree.
// Blobs whose ID is a time-ordered UUID (version 7, store.NewID) live in
// blobs/t/<6 hex>/<2 hex>/<id>.age, one directory per 65 s of creation
// time (the ID's leading hex digits), so the blobs written at the same
// time are published in one directory and made durable with one
// directory sync per batch (dirsync.go). Other IDs, and v7 blobs written
// before this layout, live in blobs/ab/cd/<id>.age, sharded by a hash of
// the ID; Open and Delete look there too. Several instances may share the
// directory (NFS): every writer uses its own temp file and publishes it
// with one rename.
type BlobStore struct {
	dir    string
	tmpDir string
	ring   *KeyRing
	dirs   dirSyncer

	// Directories with renames PutUnsynced left to SyncPending.
	pendMu  sync.Mutex
	pending map[string]bool
	syncMu  sync.Mutex

	// names is how a published blob's name is made durable; set before
	// the first Put.
	names NameDurability
}

// SetNameDurability chooses how Put makes a blob's name durable
// (SyncDirectories unless told otherwise). Call it before the first Put.
func (s *BlobStore) SetNameDurability(d NameDurability) { s.names = d }

// NameDurability is how Put makes a blob's name durable.
func (s *BlobStore) NameDurability() NameDurability { return s.names }

// BlobInfo describes a stored blob; the caller records it in the store.
type BlobInfo struct {
	ID     string
	KeyID  string // key ring entry the blob is encrypted to
	Size   int64  // plaintext bytes
	SHA256 string // lowercase hex of the plaintext
}

// NewBlobStore opens the blob store in dir (storage.dir/blobs), creating it.
func NewBlobStore(dir string, ring *KeyRing) (*BlobStore, error) {
	if ring == nil {
		return nil, errors.New("new blob store: nil key ring")
	}
	s := &BlobStore{dir: dir, tmpDir: filepath.Join(dir, blobTmpDir), ring: ring}
	if err := os.MkdirAll(s.tmpDir, 0o700); err != nil {
		return nil, fmt.Errorf("new blob store %s: %w", dir, err)
	}
	return s, nil
}

// path returns where blob id is written.
func (s *BlobStore) path(id string) string {
	if u, err := uuid.Parse(id); err == nil && u.Version() == 7 && len(id) == 36 {
		h := strings.ReplaceAll(id[:9], "-", "")
		return filepath.Join(s.dir, timeLayoutDir, h[:6], h[6:8], id+blobSuffix)
	}
	return s.hashPath(id)
}

// hashPath is where a blob lived before the time layout, and where blobs
// with other IDs live.
func (s *BlobStore) hashPath(id string) string {
	sum := sha256.Sum256([]byte(id))
	h := hex.EncodeToString(sum[:2])
	return filepath.Join(s.dir, h[:2], h[2:], id+blobSuffix)
}

// Put encrypts r to the current key and stores it as blob id. The blob
// appears whole or not at all: it is written to a temp file, synced once,
// then renamed into place, and the rename is made durable by a directory
// sync shared with the Puts of the same moment. With FsyncAfterRename a
// new blob is renamed into place first and then synced once, which makes
// its bytes and its name durable (until Put returns, its name may show
// bytes not yet durable; nothing refers to it then). An existing blob
// with the same id is replaced (always the directory-sync way).
func (s *BlobStore) Put(id string, r io.Reader) (info BlobInfo, err error) {
	info, final, named, err := s.put(id, r)
	if err != nil {
		return BlobInfo{}, err
	}
	if named {
		return info, nil
	}
	if err := s.dirs.sync(filepath.Dir(final)); err != nil {
		return BlobInfo{}, fmt.Errorf("store blob %s: %w", id, err)
	}
	return info, nil
}

// PutUnsynced is Put without the directory sync: the blob is whole and
// its bytes durable, but its name becomes durable only with the next
// SyncPending (with FsyncAfterRename, a new blob's name is durable when
// PutUnsynced returns). The pipeline puts a message's attachments this way and
// calls SyncPending in the transaction that records them, so the
// messages committed together share one sync per directory.
func (s *BlobStore) PutUnsynced(id string, r io.Reader) (BlobInfo, error) {
	info, final, named, err := s.put(id, r)
	if err != nil {
		return BlobInfo{}, err
	}
	if named {
		return info, nil // the name is durable already
	}
	s.pendMu.Lock()
	if s.pending == nil {
		s.pending = map[string]bool{}
	}
	s.pending[filepath.Dir(final)] = true
	s.pendMu.Unlock()
	return info, nil
}

// SyncPending makes the names of every blob PutUnsynced stored before the
// call durable, syncing each directory concerned once.
func (s *BlobStore) SyncPending() error {
	// One sync pass at a time: a pass that took our directories is over
	// when we get the lock.
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.pendMu.Lock()
	dirs := s.pending
	s.pending = nil
	s.pendMu.Unlock()
	var errs []error
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	s.dirs.mu.Lock()
	s.dirs.syncs += len(dirs)
	s.dirs.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sync blob directories: %w", err)
	}
	return nil
}

// put stores the blob; named says its name is durable already (fsync
// after rename), otherwise the caller syncs final's directory.
func (s *BlobStore) put(id string, r io.Reader) (info BlobInfo, final string, named bool, err error) {
	if !validBlobID.MatchString(id) {
		return BlobInfo{}, "", false, fmt.Errorf("store blob %q: invalid id", id)
	}
	tmp, err := os.CreateTemp(s.tmpDir, id+".*.tmp") // O_EXCL, mode 0600
	if err != nil {
		return BlobInfo{}, "", false, fmt.Errorf("store blob %s: %w", id, err)
	}
	published := false
	defer func() {
		if !published {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	keyID, recipient := s.ring.Current()
	bw := fileWriterPool.Get().(*bufio.Writer)
	bw.Reset(tmp)
	defer func() { bw.Reset(nil); fileWriterPool.Put(bw) }()

	enc, err := age.Encrypt(bw, recipient)
	if err != nil {
		return BlobInfo{}, "", false, fmt.Errorf("store blob %s: %w", id, err)
	}
	hash := sha256.New()
	bufp := copyBufferPool.Get().(*[]byte)
	// readerOnly hides WriterTo so CopyBuffer uses our sized buffer.
	size, err := io.CopyBuffer(io.MultiWriter(hash, enc), readerOnly{r}, *bufp)
	copyBufferPool.Put(bufp)
	if err != nil {
		return BlobInfo{}, "", false, fmt.Errorf("store blob %s: %w", id, err)
	}
	if err := enc.Close(); err != nil {
		return BlobInfo{}, "", false, fmt.Errorf("store blob %s: encrypt: %w", id, err)
	}
	if err := bw.Flush(); err != nil {
		return BlobInfo{}, "", false, fmt.Errorf("store blob %s: %w", id, err)
	}
	final = s.path(id)
	// A blob that replaces another takes the directory-sync way: a
	// failed fsync after the rename would have to remove the old one too.
	_, statErr := os.Lstat(final)
	named = s.names == FsyncAfterRename && errors.Is(statErr, fs.ErrNotExist)
	if !named {
		if err := tmp.Sync(); err != nil {
			return BlobInfo{}, "", false, fmt.Errorf("store blob %s: sync: %w", id, err)
		}
		if err := tmp.Close(); err != nil {
			return BlobInfo{}, "", false, fmt.Errorf("store blob %s: %w", id, err)
		}
	}
	if err := mkdirSynced(filepath.Dir(final), s.dir); err != nil {
		return BlobInfo{}, "", false, fmt.Errorf("store blob %s: %w", id, err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return BlobInfo{}, "", false, fmt.Errorf("store blob %s: %w", id, err)
	}
	published = true
	if named {
		// One fsync after the rename makes the bytes and the new name
		// durable (FileSystemKeepsNames). Until it returns nothing
		// refers to the blob, so a failure removes it.
		if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
			tmp.Close()
			os.Remove(final)
			return BlobInfo{}, "", false, fmt.Errorf("store blob %s: sync: %w", id, err)
		}
	}
	return BlobInfo{ID: id, KeyID: keyID, Size: size, SHA256: hex.EncodeToString(hash.Sum(nil))}, final, named, nil
}

// Open opens blob id, encrypted to keyID ("" tries every key in the ring),
// for reading. The final chunk is authenticated before Open returns, so
// Size is trustworthy; every other chunk is authenticated as it is read.
// A missing blob gives an error matching fs.ErrNotExist.
func (s *BlobStore) Open(id, keyID string) (*Blob, error) {
	if !validBlobID.MatchString(id) {
		return nil, fmt.Errorf("open blob %q: invalid id", id)
	}
	var identities []age.Identity
	if keyID == "" {
		identities = s.ring.Identities()
	} else {
		identity, err := s.ring.Identity(keyID)
		if err != nil {
			return nil, fmt.Errorf("open blob %s: %w", id, err)
		}
		identities = []age.Identity{identity}
	}
	b, err := openBlob(s.path(id), identities...)
	if errors.Is(err, fs.ErrNotExist) && s.hashPath(id) != s.path(id) {
		b, err = openBlob(s.hashPath(id), identities...)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", id, err)
	}
	return b, nil
}

// Delete removes blob id; a blob that is already gone is not an error.
func (s *BlobStore) Delete(id string) error {
	if !validBlobID.MatchString(id) {
		return fmt.Errorf("delete blob %q: invalid id", id)
	}
	for _, p := range []string{s.path(id), s.hashPath(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete blob %s: %w", id, err)
		}
	}
	return nil
}

// CleanTemp removes temp files not modified for olderThan, left by a crashed
// Put, and returns how many it removed. Another instance sharing the
// directory may be writing right now; its temp file's mtime stays fresh, so
// pick olderThan well above the longest upload (an hour is plenty).
//
// It looks at the whole temp tree, every instance's temp area included, so
// the leftovers of an instance that never comes back go too.
func (s *BlobStore) CleanTemp(olderThan time.Duration) (int, error) {
	root := filepath.Join(s.dir, blobTmpDir)
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	var errs []error
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".tmp") {
			return nil
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			return nil // gone already, or maybe still being written
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			return nil
		}
		removed++
		return nil
	})
	if err := errors.Join(append(errs, err)...); err != nil {
		return removed, fmt.Errorf("clean blob temp %s: %w", root, err)
	}
	return removed, nil
}

// Blob is the decrypted plaintext of a stored blob. It implements
// io.ReadSeeker (hand it to http.ServeContent for Range requests),
// io.ReaderAt (safe for concurrent use) and io.WriterTo. Read and Seek share
// one position and are not safe for concurrent use.
type Blob struct {
	f    *os.File
	ra   io.ReaderAt // plaintext view from age.DecryptReaderAt
	size int64

	cache atomic.Pointer[plainChunk] // last chunk decrypted by ReadAt

	off    int64   // Read/Seek position
	chunk  *[]byte // Read's private decrypted chunk, from chunkPool
	bufOff int64   // plaintext offset of chunk's first byte
	bufLen int     // valid bytes in chunk; 0 = empty
	closed bool
}

func openBlob(path string, identities ...age.Identity) (*Blob, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	// DecryptReaderAt authenticates the final chunk first, unlike
	// age.Decrypt, which hands out plaintext before it knows the stream is
	// whole.
	ra, size, err := age.DecryptReaderAt(f, fi.Size(), identities...)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("decrypt %s: %w", path, err)
	}
	return &Blob{f: f, ra: ra, size: size}, nil
}

// Size returns the plaintext size.
func (b *Blob) Size() int64 { return b.size }

// ReadAt reads plaintext at off. It is safe for concurrent use. Whole
// aligned chunks go straight through age; partial ones are served from a
// shared cache of the last decrypted chunk, because age allocates and
// decrypts a full 64 KiB chunk on every ReadAt call, which makes small
// reads (a parser over a bufio.Reader) cost a chunk each.
func (b *Blob) ReadAt(p []byte, off int64) (int, error) {
	if b.closed {
		return 0, os.ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("read blob at %d: negative offset", off)
	}
	want := len(p)
	n := 0
	for n < want && off < b.size {
		rest := p[n:]
		if off%ageChunkSize == 0 && len(rest) >= ageChunkSize {
			whole := min(int64(len(rest))/ageChunkSize*ageChunkSize, b.size-off)
			m, err := b.ra.ReadAt(rest[:whole], off)
			n += m
			off += int64(m)
			if err != nil && !(err == io.EOF && int64(m) == whole) {
				return n, fmt.Errorf("read blob at %d: %w", off, err)
			}
			continue
		}
		c, err := b.sharedChunk(off)
		if err != nil {
			return n, err
		}
		m := copy(rest, c.data[off-c.off:])
		n += m
		off += int64(m)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// plainChunk is one decrypted chunk starting at plaintext offset off.
type plainChunk struct {
	off  int64
	data []byte
}

// sharedChunk returns the decrypted chunk holding off from the ReadAt cache,
// decrypting it on a miss. Cached chunks are never written after Store, so
// concurrent readers can share them.
func (b *Blob) sharedChunk(off int64) (*plainChunk, error) {
	start := off - off%ageChunkSize
	if c := b.cache.Load(); c != nil && c.off == start {
		return c, nil
	}
	data := make([]byte, min(ageChunkSize, b.size-start))
	m, err := b.ra.ReadAt(data, start)
	if m == len(data) && err == io.EOF {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("read blob at %d: %w", start, err)
	}
	c := &plainChunk{off: start, data: data}
	b.cache.Store(c)
	return c, nil
}

// Read reads plaintext from the current position. Reads smaller than a
// chunk are served from one decrypted chunk: age allocates a chunk per
// ReadAt call, so this keeps allocation to one per chunk, not one per read.
func (b *Blob) Read(p []byte) (int, error) {
	if b.closed {
		return 0, os.ErrClosed
	}
	if b.off >= b.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !b.buffered(b.off) {
		if b.off%ageChunkSize == 0 && len(p) >= ageChunkSize {
			// Whole chunks decrypt straight into p.
			n, err := b.ReadAt(p[:len(p)/ageChunkSize*ageChunkSize], b.off)
			b.off += int64(n)
			if err == io.EOF && n > 0 {
				err = nil
			}
			return n, err
		}
		if err := b.fill(b.off); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*b.chunk)[b.off-b.bufOff:b.bufLen])
	b.off += int64(n)
	return n, nil
}

// buffered reports whether off is in Read's private chunk.
func (b *Blob) buffered(off int64) bool {
	return b.bufLen > 0 && off >= b.bufOff && off < b.bufOff+int64(b.bufLen)
}

// fill decrypts the chunk holding off into b.chunk.
func (b *Blob) fill(off int64) error {
	if b.chunk == nil {
		b.chunk = chunkPool.Get().(*[]byte)
	}
	start := off - off%ageChunkSize
	want := int(min(ageChunkSize, b.size-start))
	n, err := b.ra.ReadAt((*b.chunk)[:want], start)
	if n == want && err == io.EOF {
		err = nil
	}
	if err != nil {
		b.bufLen = 0
		return fmt.Errorf("read blob at %d: %w", start, err)
	}
	b.bufOff, b.bufLen = start, n
	return nil
}

// Seek sets the position for Read.
func (b *Blob) Seek(offset int64, whence int) (int64, error) {
	if b.closed {
		return 0, os.ErrClosed
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = b.off + offset
	case io.SeekEnd:
		abs = b.size + offset
	default:
		return 0, fmt.Errorf("seek blob: invalid whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("seek blob: negative position %d", abs)
	}
	b.off = abs
	return abs, nil
}

// WriteTo writes the plaintext from the current position to w, a chunk at
// a time (io.Copy uses it).
func (b *Blob) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for b.off < b.size {
		if !b.buffered(b.off) {
			if b.closed {
				return total, os.ErrClosed
			}
			if err := b.fill(b.off); err != nil {
				return total, err
			}
		}
		n, err := w.Write((*b.chunk)[b.off-b.bufOff : b.bufLen])
		b.off += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Close releases the file. Close is idempotent.
func (b *Blob) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.chunk != nil {
		chunkPool.Put(b.chunk)
		b.chunk, b.bufLen = nil, 0
	}
	return b.f.Close()
}

// readerOnly hides any WriterTo of the wrapped reader.
type readerOnly struct{ io.Reader }

// mkdirSynced creates dir (and parents up to root) if missing and syncs the
// parents of what it created, so a published blob's path survives a crash.
func mkdirSynced(dir, root string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	// Find the topmost missing directory to know which parents to sync.
	top := dir
	for {
		parent := filepath.Dir(top)
		if parent == root || parent == top {
			break
		}
		if _, err := os.Stat(parent); err == nil {
			break
		}
		top = parent
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
		if d == top {
			return nil
		}
	}
}

// syncDir makes renames and creates in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	// Some filesystems cannot sync directories; nothing more we can do there.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
