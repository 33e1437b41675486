package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
)

// Algorithms GenerateKey knows.
const (
	RSA     = "rsa"     // RSA-2048: verified by every receiver
	Ed25519 = "ed25519" // RFC 8463: small, not yet verified everywhere
)

// GenerateKey makes a new private key (rsa: 2048 bits) and returns it as
// PKCS#8 PEM.
func GenerateKey(algorithm string) ([]byte, crypto.Signer, error) {
	var key crypto.Signer
	switch algorithm {
	case RSA:
		k, err := rsa.GenerateKey(rand.Reader, MinRSABits)
		if err != nil {
			return nil, nil, fmt.Errorf("generate RSA key: %w", err)
		}
		key = k
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("generate Ed25519 key: %w", err)
		}
		key = k
	default:
		return nil, nil, fmt.Errorf("unknown key type %q (want rsa or ed25519)", algorithm)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), key, nil
}

// TXTValue is the DNS TXT record value publishing key's public half:
// "v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo>" or "v=DKIM1; k=ed25519;
// p=<raw 32 bytes>".
func TXTValue(key crypto.Signer) (string, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("encode public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	default:
		return "", fmt.Errorf("unsupported key type %T", pub)
	}
}

// ZoneRecord is the TXT record as a zone-file line, its value split into
// quoted strings of at most 255 bytes (one TXT string's limit; resolvers
// join them).
func ZoneRecord(domain, selector, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	name := selector + "._domainkey." + strings.TrimSuffix(domain, ".") + "."
	if len(parts) == 1 {
		return fmt.Sprintf("%s IN TXT %s", name, parts[0])
	}
	return fmt.Sprintf("%s IN TXT ( %s )", name, strings.Join(parts, " "))
}
