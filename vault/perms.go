package vault

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Modes of everything under storage.dir: senders, recipients, file names
// and encrypted blobs are for the gateway's user alone.
const (
	PrivateFileMode fs.FileMode = 0o600
	PrivateDirMode  fs.FileMode = 0o700
)

// SecureDataDir prepares storage.dir before anything is opened in it. It
// refuses a directory that others can write to (they could swap the key
// ring, the database or a blob), creates it 0700 when missing, and sets
// every directory under it (itself included) to 0700 and every regular
// file to 0600, whatever the umask they were created under and whether the
// directory existed before. Symbolic links are left alone and not followed.
func SecureDataDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, PrivateDirMode); err != nil {
			return fmt.Errorf("storage.dir %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("storage.dir %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("storage.dir %s: not a directory", dir)
	case fi.Mode().Perm()&0o002 != 0:
		return fmt.Errorf("storage.dir %s has mode %04o: it is writable by others, who could replace the keys, the database or the blobs; chmod 700 %s (attachgate refuses to start)",
			dir, fi.Mode().Perm(), dir)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != dir {
				return nil // removed while we walk (another instance's temp file)
			}
			return err
		}
		var want fs.FileMode
		switch {
		case d.IsDir():
			want = PrivateDirMode
		case d.Type().IsRegular():
			want = PrivateFileMode
		default:
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if info.Mode().Perm() == want {
			return nil
		}
		if err := os.Chmod(path, want); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage.dir %s: set modes 0700/0600: %w", dir, err)
	}
	return nil
}
