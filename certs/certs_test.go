package certs

import (
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"github.com/attachgate/attachgate/smtptest"
)

// served returns the DNS name of the certificate a TLS client sees.
func served(t *testing.T, cfg *tls.Config, maxVersion uint16) (string, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
		&tls.Config{InsecureSkipVerify: true, MaxVersion: maxVersion})
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].DNSNames[0], nil
}

// replaceFiles copies src's PEM files over dst's, as a renewal does.
func replaceFiles(t *testing.T, dst, src *smtptest.Cert) {
	t.Helper()
	for _, f := range [][2]string{{src.CertFile, dst.CertFile}, {src.KeyFile, dst.KeyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReloadSwapsCertificate(t *testing.T) {
	old := smtptest.NewCert(t, "old.example.com")
	r, err := Load(old.CertFile, old.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.ServerConfig()
	if name, err := served(t, cfg, 0); err != nil || name != "old.example.com" {
		t.Fatalf("served %q %v", name, err)
	}
	replaceFiles(t, old, smtptest.NewCert(t, "new.example.com"))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if name, err := served(t, cfg, 0); err != nil || name != "new.example.com" {
		t.Fatalf("after reload served %q %v", name, err)
	}
	os.WriteFile(old.KeyFile, []byte("garbage"), 0o600)
	if err := r.Reload(); err == nil {
		t.Fatal("reload of a broken key succeeded")
	}
	if name, err := served(t, cfg, 0); err != nil || name != "new.example.com" {
		t.Fatalf("a failed reload must keep the old certificate, served %q %v", name, err)
	}
}

func TestTLS11Refused(t *testing.T) {
	c := smtptest.NewCert(t, "gw.example.com")
	r, err := Load(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := served(t, r.ServerConfig(), tls.VersionTLS11); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}
}

func TestNilReloaderMeansNoTLS(t *testing.T) {
	var r *Reloader
	if r.ServerConfig() != nil {
		t.Fatal("a nil Reloader gave a TLS configuration")
	}
}
