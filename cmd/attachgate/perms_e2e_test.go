package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/attachgate/attachgate/smtptest"
)

// writeConfigAt writes a daemon config like startDaemon's, with the storage
// directory given, and returns an unstarted daemon for it.
func writeConfigAt(t *testing.T, nextHop, storageDir, extra string) *daemon {
	t.Helper()
	dir := t.TempDir()
	smtpAddr, linkAddr := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`smtp:
  listen: %q
  hostname: "gw.test"
  trusted_networks: ["127.0.0.0/8"]
next_hop:
  address: %q%s
links:
  listen: %q
  base_url: "http://%s"
  default_expiry: "1h"
storage:
  dir: %q
%s`, smtpAddr, nextHop, hopTimeout(nextHop), linkAddr, linkAddr, storageDir, extra)
	cfgPath := filepath.Join(dir, "attachgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &daemon{t: t, dir: dir, config: cfgPath, smtpAddr: smtpAddr, linkURL: "http://" + linkAddr,
		log: &lockedBuffer{}, exited: make(chan error, 1)}
}

// Started under umask 000 on a storage.dir that already existed 0755 and
// holds a database an older version left 0644, the daemon keeps every file
// 0600 and every directory 0700: the database, its -wal and -shm, keys,
// blobs, spool. The attack was a local user reading senders and
// recipients out of a world-readable attachgate.db.
func TestStorageDirIsPrivateWhateverTheUmask(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	storage := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(storage, 0o755); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0)
	if err := os.WriteFile(filepath.Join(storage, "attachgate.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := writeConfigAt(t, hop.Addr, storage, "")
	d.start() // inherits umask 000
	syscall.Umask(old)

	content := make([]byte, 200000)
	rand.Read(content)
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("secret.pdf", content)); err != nil {
		t.Fatalf("send: %v", err)
	}
	// Files of a running daemon: -wal and -shm exist now.
	for _, name := range []string{"attachgate.db", "attachgate.db-wal", "attachgate.db-shm"} {
		if _, err := os.Stat(filepath.Join(storage, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	var blobs int
	err := filepath.WalkDir(storage, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir() && fi.Mode().Perm() != 0o700:
			t.Errorf("directory %s has mode %04o, want 0700", path, fi.Mode().Perm())
		case fi.Mode().IsRegular() && fi.Mode().Perm() != 0o600:
			t.Errorf("file %s has mode %04o, want 0600", path, fi.Mode().Perm())
		}
		if strings.HasSuffix(path, ".age") {
			blobs++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if blobs == 0 {
		t.Error("no blob written: the walk checked nothing of the blob store")
	}
}

// A storage.dir that others can write to is refused at start, naming it.
func TestStorageDirWritableByOthersRefused(t *testing.T) {
	storage := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(storage, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(storage, 0o777); err != nil {
		t.Fatal(err)
	}
	d := writeConfigAt(t, "outbox:"+filepath.Join(t.TempDir(), "outbox"), storage, "")
	// On a refusal serve exits at once; the deadline only ends a serve
	// that wrongly started.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, "serve", "-config", d.config).CombinedOutput()
	if err == nil {
		t.Fatalf("serve started on a world-writable storage.dir:\n%s", out)
	}
	if !strings.Contains(string(out), storage) || !strings.Contains(string(out), "writable by others") {
		t.Errorf("message does not name the directory and the reason:\n%s", out)
	}
	if fi, _ := os.Stat(storage); fi.Mode().Perm() != 0o777 {
		t.Errorf("refused directory's mode changed to %04o", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(storage, "keys")); err == nil {
		t.Error("key ring created in a refused directory")
	}
}
