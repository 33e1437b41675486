// Package certs owns the TLS certificate the SMTP listeners present: loaded
// from PEM files, swapped atomically on Reload (SIGHUP) so renewed
// certificates take effect without dropping connections, and the TLS
// policy (TLS 1.2 minimum).
package certs

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// Reloader holds the current certificate.
type Reloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// Load reads the key pair; it fails when the files do not match or parse.
func Load(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again; on error the old certificate stays.
func (r *Reloader) Reload() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s / %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&c)
	return nil
}

// ServerConfig is the listener configuration: TLS 1.2 or newer, the
// current certificate on every handshake. A nil Reloader gives nil (no TLS).
func (r *Reloader) ServerConfig() *tls.Config {
	if r == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
	}
}
