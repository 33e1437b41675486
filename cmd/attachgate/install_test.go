package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeInstall runs `make install` into a fresh DESTDIR and returns it.
func makeInstall(t *testing.T, vars ...string) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make missing")
	}
	root := t.TempDir()
	args := append([]string{"-C", "../..", "--no-print-directory", "install", "DESTDIR=" + root,
		"BIN=" + filepath.Join(t.TempDir(), "attachgate")}, vars...)
	out, err := exec.Command("make", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	return root
}

// verifyUnit runs systemd-analyze verify and security on the unit inside
// root. Both read unit files only; no running systemd is needed. The
// unit's dependencies (sysinit.target, ...) resolve against a copy of the
// host's units put into root.
func verifyUnit(t *testing.T, root, unit string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze missing: make deps installs systemd")
		}
		t.Skip("systemd-analyze not installed (make deps installs systemd)")
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy the host's units: %v\n%s", err, out)
	}
	// ExecReload's /bin/kill, as on a merged-/usr Debian.
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	if out, err := exec.Command("cp", "/usr/bin/kill", filepath.Join(root, "usr/bin/kill")).CombinedOutput(); err != nil {
		t.Fatalf("copy kill: %v\n%s", err, out)
	}
	out, err := exec.Command(analyze, "verify", "--root="+root, "--man=no", unit).CombinedOutput()
	// verify exits 0 on unknown keys and bad values too: it only warns.
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=yes", "--root="+root, "--threshold=25", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure above 2.5 (%v)\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("Overall exposure level for attachgate.service")) {
		t.Fatalf("systemd-analyze security did not rate the unit:\n%s", out)
	}
}

// TestInstallAndVerifyUnit: make install puts the binary, unit, sysusers
// entry, example configuration and README in place with the right modes;
// the installed binary accepts the example configuration; a second install
// keeps an edited configuration; the installed unit passes systemd-analyze
// verify without a warning and rates "OK" in systemd-analyze security.
func TestInstallAndVerifyUnit(t *testing.T) {
	root := makeInstall(t)
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"usr/local/bin/attachgate", 0o755},
		{"etc/systemd/system/attachgate.service", 0o644},
		{"etc/sysusers.d/attachgate.conf", 0o644},
		{"etc/attachgate", 0o750 | os.ModeDir},
		{"etc/attachgate/attachgate.yaml", 0o640},
		{"usr/local/share/doc/attachgate/README.md", 0o644},
	} {
		fi, err := os.Stat(filepath.Join(root, f.path))
		if err != nil {
			t.Fatalf("not installed: %v", err)
		}
		if fi.Mode()&(os.ModePerm|os.ModeDir) != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, fi.Mode(), f.mode)
		}
	}
	bin := filepath.Join(root, "usr/local/bin/attachgate")
	cfg := filepath.Join(root, "etc/attachgate/attachgate.yaml")
	if out, err := exec.Command(bin, "check-config", "-config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("the example configuration does not load: %v\n%s", err, out)
	}
	unit := filepath.Join(root, "etc/systemd/system/attachgate.service")
	data, _ := os.ReadFile(unit)
	for _, want := range []string{"ExecStart=/usr/local/bin/attachgate serve -config /etc/attachgate/attachgate.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "PrivateTmp=yes", "SystemCallFilter=@system-service",
		"ReadWritePaths=/var/lib/attachgate", "User=attachgate"} {
		if !strings.Contains(string(data), want+"\n") {
			t.Errorf("unit lacks %q", want)
		}
	}

	// A second install over an edited configuration keeps it.
	edited := []byte("# edited by the admin\n")
	os.WriteFile(cfg, edited, 0o640)
	args := []string{"-C", "../..", "--no-print-directory", "install", "DESTDIR=" + root, "BIN=" + filepath.Join(t.TempDir(), "attachgate")}
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		t.Fatalf("second make install: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(cfg); !bytes.Equal(got, edited) {
		t.Fatal("make install overwrote an existing configuration")
	}

	verifyUnit(t, root, unit)
}

// TestInstallPrefix: PREFIX moves the binary and the unit follows it, and
// that unit verifies too.
func TestInstallPrefix(t *testing.T) {
	root := makeInstall(t, "PREFIX=/opt/attachgate")
	if _, err := os.Stat(filepath.Join(root, "opt/attachgate/bin/attachgate")); err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(root, "etc/systemd/system/attachgate.service")
	data, _ := os.ReadFile(unit)
	if !strings.Contains(string(data), "ExecStart=/opt/attachgate/bin/attachgate serve") ||
		strings.Contains(string(data), "/usr/local/bin") {
		t.Fatalf("unit does not follow PREFIX:\n%s", data)
	}
	verifyUnit(t, root, unit)
}
