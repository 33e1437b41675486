package vault

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// NameDurability says how a published blob's name is made durable.
type NameDurability int

const (
	// SyncDirectories syncs the directory a blob is renamed into (once per
	// batch of blobs): POSIX's way, correct on every file system.
	SyncDirectories NameDurability = iota
	// FsyncAfterRename renames the blob into place first and fsyncs the
	// file after: one fsync makes its bytes and its new name durable on
	// file systems that promise that (FileSystemKeepsNames), which is
	// what Postfix relies on for its queue files.
	FsyncAfterRename
)

func (d NameDurability) String() string {
	if d == FsyncAfterRename {
		return "fsync after rename"
	}
	return "directory sync"
}

// FileSystemKeepsNames reports the type of the file system dir lives on
// (Linux, from /proc/self/mountinfo) and whether an fsync of a file after
// its rename also makes the new name durable there:
//
//   - ext4: with a journal, fsync commits the journal transaction that
//     holds the rename (the rename updates the inode, so the inode's
//     commit covers it); without one (as on this project's CI machine),
//     fsync of a newly created file syncs the directory it now lives in
//     (ext4_sync_parent);
//   - xfs: fsync forces the log up to the inode's last change, the rename
//     included;
//   - btrfs: fsync logs the inode's new name in the log tree.
//
// Anything else (NFS, tmpfs, overlay, ZFS, an unreadable mount table)
// gives false: the caller keeps directory syncs.
func FileSystemKeepsNames(dir string) (fstype string, ok bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, fmt.Errorf("file system of %s: %w", dir, err)
	}
	defer f.Close()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, fmt.Errorf("file system of %s: %w", dir, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	fstype, err = mountType(f, abs)
	if err != nil {
		return "", false, fmt.Errorf("file system of %s: %w", dir, err)
	}
	switch fstype {
	case "ext4", "xfs", "btrfs":
		return fstype, true, nil
	}
	return fstype, false, nil
}

// mountType returns the file system type of the mount holding path (an
// absolute, symlink-free path), read from a mountinfo table. It resolves
// path the way the kernel does, down the mount tree by parent IDs: from
// the root mount, into the child mount met first along path (the one with
// the shortest mount point), and into a mount stacked on that one, until
// none is left. The longest mount point alone is not enough: a mount made
// later over a parent directory hides the deeper one, and the table's
// order is not the order of mounting (a stacked mount may be listed
// before the one it covers).
func mountType(r io.Reader, path string) (string, error) {
	type mount struct{ id, parent, point, fstype string }
	var mounts []mount
	ids := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - type source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		mounts = append(mounts, mount{id: fields[0], parent: fields[1], point: unescapeMountinfo(fields[4]), fstype: fields[sep+1]})
		ids[fields[0]] = true
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	// The root: a mount on / whose parent is not in the table (outside
	// this namespace or chroot).
	cur := -1
	for i, m := range mounts {
		if m.point == "/" && (!ids[m.parent] || m.parent == m.id) {
			cur = i
			break
		}
	}
	if cur < 0 || !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("no mount holds %s", path)
	}
	for range mounts { // a bound, in case the table loops
		next := -1
		for i, m := range mounts {
			if i == cur || m.parent != mounts[cur].id || !within(path, m.point) {
				continue
			}
			// The first one met on the way down; of siblings on the same
			// point, the one listed last.
			if next < 0 || len(m.point) <= len(mounts[next].point) {
				next = i
			}
		}
		if next < 0 {
			break
		}
		cur = next
	}
	return mounts[cur].fstype, nil
}

// within reports whether path is mount point mp or below it.
func within(path, mp string) bool {
	if mp == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == mp || strings.HasPrefix(path, mp+"/")
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) the kernel
// writes in mount points.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
