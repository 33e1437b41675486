package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// served returns the common name a TLS client sees.
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
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func TestReloadSwapsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "old.example.com")
	r, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.ServerConfig()
	if cn, err := served(t, cfg, 0); err != nil || cn != "old.example.com" {
		t.Fatalf("served %q %v", cn, err)
	}
	writeCert(t, dir, "new.example.com")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if cn, err := served(t, cfg, 0); err != nil || cn != "new.example.com" {
		t.Fatalf("after reload served %q %v", cn, err)
	}
	os.WriteFile(keyFile, []byte("garbage"), 0o600)
	if err := r.Reload(); err == nil {
		t.Fatal("reload of a broken key succeeded")
	}
	if cn, err := served(t, cfg, 0); err != nil || cn != "new.example.com" {
		t.Fatalf("a failed reload must keep the old certificate, served %q %v", cn, err)
	}
}

func TestTLS11Refused(t *testing.T) {
	certFile, keyFile := writeCert(t, t.TempDir(), "gw.example.com")
	r, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := served(t, r.ServerConfig(), tls.VersionTLS11); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}
}
