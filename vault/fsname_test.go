package vault

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestMountType: the file system of a path is that of the longest mount
// point above it, a later mount over the same point hiding the earlier,
// with the kernel's octal escapes in mount points undone.
func TestMountType(t *testing.T) {
	const table = `26 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 26 0:37 / /var rw,relatime shared:5 - xfs /dev/vdb rw
41 40 0:38 / /var/lib/attachgate rw,relatime - nfs4 srv:/mail rw
42 40 0:39 / /var/lib/attachgate rw,relatime - btrfs /dev/vdc rw
43 26 0:40 / /srv/mail\040data rw - tmpfs tmpfs rw
44 26 0:41 / /srvx rw - zfs pool/x rw
`
	for _, tc := range []struct{ path, want string }{
		{"/", "ext4"},
		{"/home/u", "ext4"},
		{"/var", "xfs"},
		{"/var/spool", "xfs"},
		{"/variable", "ext4"}, // a name that only starts like /var
		{"/var/lib/attachgate/blobs", "btrfs"},
		{"/srv/mail data/blobs", "tmpfs"},
		{"/srvx", "zfs"},
	} {
		got, err := mountType(strings.NewReader(table), tc.path)
		if err != nil || got != tc.want {
			t.Errorf("mountType(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
	if _, err := mountType(strings.NewReader("garbage\n"), "/x"); err == nil {
		t.Error("a table without the path's mount gave no error")
	}
}

// TestFileSystemKeepsNamesHere: the test machine's own blob directory is
// classified, and a file system outside the list keeps directory syncs.
func TestFileSystemKeepsNamesHere(t *testing.T) {
	fstype, ok, err := FileSystemKeepsNames(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := fstype == "ext4" || fstype == "xfs" || fstype == "btrfs"
	if ok != want {
		t.Errorf("file system %s: keeps names %v, want %v", fstype, ok, want)
	}
	if fstype, ok, err := FileSystemKeepsNames("/dev/shm"); err == nil && fstype == "tmpfs" && ok {
		t.Error("tmpfs was trusted to keep names without a directory sync")
	}
}

// TestFsyncAfterRename: with names made durable by the file's own fsync,
// blobs land at their final path readable, no directory is synced for
// them, and a blob that replaces another still takes the directory sync.
func TestFsyncAfterRename(t *testing.T) {
	s, _, dir := newTestStore(t)
	s.SetNameDurability(FsyncAfterRename)
	var ids []string
	for i := range 4 {
		id := uuid.Must(uuid.NewV7()).String()
		data := []byte(fmt.Sprint("blob ", i))
		info, err := s.PutUnsynced(id, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readBlob(t, s, id, info.KeyID), data) {
			t.Fatalf("blob %d reads back wrong", i)
		}
		ids = append(ids, id)
	}
	if _, err := s.Put(uuid.Must(uuid.NewV7()).String(), bytes.NewReader([]byte("put"))); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncPending(); err != nil {
		t.Fatal(err)
	}
	if s.dirs.syncs != 0 {
		t.Errorf("%d directory syncs, want none", s.dirs.syncs)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "blobs", "tmp", "*")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}

	// Replacing blob 0: its directory is synced before the name counts.
	info, err := s.PutUnsynced(ids[0], bytes.NewReader([]byte("replaced")))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SyncPending(); err != nil {
		t.Fatal(err)
	}
	if s.dirs.syncs != 1 {
		t.Errorf("%d directory syncs after replacing a blob, want 1", s.dirs.syncs)
	}
	if got := readBlob(t, s, ids[0], info.KeyID); string(got) != "replaced" {
		t.Errorf("replaced blob reads %q", got)
	}
	if _, err := os.Stat(s.path(ids[0])); err != nil {
		t.Fatal(err)
	}
}

// TestMountTypeFollowsTheMountTree: the file system of a path is that of
// the mount the kernel's lookup reaches, not the longest mount point in
// the table. A mount made later over a parent directory hides the deeper
// one (the storage directory that was on ext4 is now on NFS, where an
// fsync after the rename does not make the name durable), and a stacked
// mount may be listed before the mount it covers.
func TestMountTypeFollowsTheMountTree(t *testing.T) {
	const table = `26 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 26 254:16 / /var/lib/attachgate rw,relatime - ext4 /dev/vdb rw
50 26 0:50 / /var rw,relatime - nfs4 srv:/var rw
61 60 0:61 / /srv/ag rw - tmpfs tmpfs rw
60 26 254:32 / /srv/ag rw - xfs /dev/vdc rw
70 26 254:48 / /opt/ag rw - xfs /dev/vdd rw
`
	for _, tc := range []struct{ path, want string }{
		{"/var/lib/attachgate/blobs", "nfs4"}, // /var mounted over the ext4 one
		{"/var/spool", "nfs4"},
		{"/srv/ag/blobs", "tmpfs"}, // tmpfs stacked on xfs, listed first
		{"/opt/ag/blobs", "xfs"},
		{"/home", "ext4"},
	} {
		got, err := mountType(strings.NewReader(table), tc.path)
		if err != nil || got != tc.want {
			t.Errorf("mountType(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
}
