package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/attachgate/attachgate/certs"
	"github.com/attachgate/attachgate/config"
)

// certsReloader is the listener certificate; nil when TLS is off.
type certsReloader = certs.Reloader

func loadCerts(c *config.Config) (*certs.Reloader, error) {
	r, err := certs.Load(c.SMTP.TLS.CertFile, c.SMTP.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("smtp.tls: %w", err)
	}
	return r, nil
}

// nextHopTLS builds the client TLS policy for next_hop.tls.
func nextHopTLS(c *config.Config) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.NextHop.ServerName,
		InsecureSkipVerify: c.NextHop.InsecureSkipVerify, // labs only, documented
	}
	if c.NextHop.CAFile != "" {
		pem, err := os.ReadFile(c.NextHop.CAFile)
		if err != nil {
			return nil, fmt.Errorf("next_hop.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("next_hop.ca_file %s: no PEM certificates", c.NextHop.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
