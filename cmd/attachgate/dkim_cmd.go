package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/attachgate/attachgate/dkim"
)

// runDKIM is `attachgate dkim keygen`: a new signing key, written 0600,
// and the DNS TXT record that publishes it.
func runDKIM(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "keygen" {
		fmt.Fprintln(stderr, "usage: attachgate dkim keygen -domain DOMAIN -selector SELECTOR [-type rsa|ed25519] [-out FILE]")
		return 2
	}
	fs := flag.NewFlagSet("dkim keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	domain := fs.String("domain", "", "signing domain (d=), the domain of the From addresses")
	selector := fs.String("selector", "", "selector (s=), e.g. s1 or 2026a")
	typ := fs.String("type", dkim.RSA, "key type: rsa (2048 bits, verified everywhere) or ed25519")
	out := fs.String("out", "", "private key file to create (default DOMAIN.SELECTOR.pem)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "attachgate dkim keygen: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *domain == "" || *selector == "" {
		fmt.Fprintln(stderr, "attachgate dkim keygen: -domain and -selector are required")
		return 2
	}
	if *typ != dkim.RSA && *typ != dkim.Ed25519 {
		fmt.Fprintf(stderr, "attachgate dkim keygen: -type: want rsa or ed25519, got %q\n", *typ)
		return 2
	}
	if err := dkim.CheckNames(*domain, *selector); err != nil {
		fmt.Fprintf(stderr, "attachgate dkim keygen: -%v\n", err)
		return 2
	}
	path := *out
	if path == "" {
		path = *domain + "." + *selector + ".pem"
	}
	pemData, key, err := dkim.GenerateKey(*typ)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate dkim keygen: %v\n", err)
		return 1
	}
	txt, err := dkim.TXTValue(key)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate dkim keygen: %v\n", err)
		return 1
	}
	if err := writeNewFile(path, pemData); err != nil {
		fmt.Fprintf(stderr, "attachgate dkim keygen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s (mode 0600); publish this DNS record:\n\n%s\n\n", path, dkim.ZoneRecord(*domain, *selector, txt))
	fmt.Fprintf(stdout, "then add to the configuration and send SIGHUP:\n\ndkim:\n  - domain: %s\n    selector: %s\n    key_file: %s\n", *domain, *selector, path)
	return 0
}

// writeNewFile creates path with mode 0600 and refuses to overwrite: a
// key already published in DNS must not be lost by a second keygen.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: not overwriting a key (choose another -out or selector)", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
