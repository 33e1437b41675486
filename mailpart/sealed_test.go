package mailpart

import (
	"os"
	"strings"
	"testing"
)

// A signed S/MIME mail with a PDF, as Thunderbird and Outlook send it.
var smimeSignedWithPDF = crlfText(`From: alice@example.com
To: bob@example.net
Subject: signed report
MIME-Version: 1.0
Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="sig"

This is a cryptographically signed message in MIME format.

--sig
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: text/plain; charset=utf-8

Report attached.
--mix
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--mix--

--sig
Content-Type: application/pkcs7-signature; name="smime.p7s"
Content-Disposition: attachment; filename="smime.p7s"
Content-Transfer-Encoding: base64

MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCC
--sig--
`)

// Issues 9.16 and 9.17: signed, encrypted and automatic mail is recognised,
// and none of its parts is an attachment or a body to rewrite.
func TestWalkFindsMailToPassThrough(t *testing.T) {
	tests := []struct {
		name, msg  string
		nullSender bool
		want       string
	}{
		{"S/MIME signed with PDF", smimeSignedWithPDF, false, PassSigned},
		{"S/MIME opaque signed", crlfText("Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\nContent-Disposition: attachment; filename=smime.p7m\nContent-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHAqCAMIACAQE=\n"), false, PassSigned},
		{"S/MIME encrypted", crlfText("Content-Type: application/x-pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\nContent-Disposition: attachment; filename=smime.p7m\nContent-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\n"), false, PassEncrypted},
		{"S/MIME as octet-stream", crlfText("Content-Type: application/octet-stream; name=smime.p7m\nContent-Transfer-Encoding: base64\n\nMIAG\n"), false, PassEncrypted},
		{"PGP/MIME encrypted", crlfText(`Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=e

--e
Content-Type: application/pgp-encrypted
Content-Description: PGP/MIME version identification

Version: 1
--e
Content-Type: application/octet-stream; name="encrypted.asc"
Content-Disposition: inline; filename="encrypted.asc"

-----BEGIN PGP MESSAGE-----
hQEMA
-----END PGP MESSAGE-----
--e--
`), false, PassEncrypted},
		{"inline PGP signed text", crlfText("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhello\n-----BEGIN PGP SIGNATURE-----\nx\n-----END PGP SIGNATURE-----\n--b\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n--b--\n"), false, PassSigned},
		{"inline PGP message in base64", crlfText("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nLS0tLS1CRUdJTiBQR1AgTUVTU0FHRS0tLS0tCmhRRU1BCg==\n--b\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n--b--\n"), false, PassEncrypted},
		{"auto-replied", crlfText("Auto-Submitted: auto-replied (vacation)\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\naway\n--b\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n--b--\n"), false, PassAutoSubmitted},
		{"null sender", crlfText("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbounce\n--b\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n--b--\n"), true, PassNullSender},
		{"Auto-Submitted: no", crlfText("Auto-Submitted: no\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nhi\n--b\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n--b--\n"), false, ""},
		{"armour quoted mid-line is not inline PGP", crlfText("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nhi\n--b\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n--b--\n"), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parts, sum := walkAll(t, tc.msg, Limits{})
			if got := sum.PassThrough(tc.nullSender); got != tc.want {
				t.Fatalf("PassThrough = %q, want %q", got, tc.want)
			}
			if tc.want != PassSigned && tc.want != PassEncrypted {
				// Not sealed: policies see the attachments.
				if len(parts) != 2 || !parts[1].Attachment {
					t.Errorf("attachment not reported: %+v", parts)
				}
				return
			}
			for _, p := range parts {
				if p.Attachment {
					t.Errorf("part %s (%s) is an attachment in %s mail", p.Path, p.MediaType, tc.want)
				}
			}
			// Rewrite, even when asked to add a notice, leaves the mail
			// as it was but for line ends.
			out := rewriteString(t, tc.msg, nil, testNotice("elsewhere.pdf"))
			if out != tc.msg {
				t.Errorf("rewrite changed %s mail:\n%q\nwant\n%q", tc.want, out, tc.msg)
			}
		})
	}
}

// Corpus bounces are recognised as reports.
func TestCorpusReportsPassThrough(t *testing.T) {
	for _, f := range corpusFiles(t) {
		if !strings.Contains(f, "multipart_report") {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, sum := walkAll(t, string(raw), Limits{})
		if sum.PassThrough(false) != PassReport {
			t.Errorf("%s: PassThrough = %q", f, sum.PassThrough(false))
		}
	}
}

// TestAttachedSealedPartsDoNotSealTheMessage: only the top-level structure
// makes a message signed or encrypted. An attached .p7m is an ordinary
// attachment; a nested multipart/signed is kept whole (nothing inside it
// is an attachment or rewritten) while the rest is handled as usual.
func TestAttachedSealedPartsDoNotSealTheMessage(t *testing.T) {
	const signed = "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=sig\n\n" +
		"--sig\nContent-Type: text/plain\n\nsigned text\n" +
		"--sig\nContent-Type: application/pdf; name=inner.pdf\nContent-Disposition: attachment; filename=inner.pdf\n\n%PDF inner\n" +
		"--sig\nContent-Type: application/pkcs7-signature; name=smime.p7s\n\nMIAG\n--sig--\n"
	tests := []struct {
		name, part  string
		attachments []string // paths reported as attachments
	}{
		{"e-invoice .p7m as octet-stream", "Content-Type: application/octet-stream; name=\"IT0_1.xml.p7m\"\nContent-Disposition: attachment; filename=\"IT0_1.xml.p7m\"\nContent-Transfer-Encoding: base64\n\nMIAG\n", []string{"1.2", "1.3"}},
		{"pkcs7-mime signed-data attachment", "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=invoice.xml.p7m\nContent-Transfer-Encoding: base64\n\nMIAG\n", []string{"1.2", "1.3"}},
		{"pkcs7-mime enveloped attachment", "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=secret.p7m\nContent-Transfer-Encoding: base64\n\nMIAG\n", []string{"1.2", "1.3"}},
		{"nested multipart/signed", signed, []string{"1.2"}},
		{"nested multipart/encrypted", "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=e\n\n--e\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--e\nContent-Type: application/octet-stream; name=encrypted.asc\n\nhQEMA\n--e--\n", []string{"1.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := crlfText("Content-Type: multipart/mixed; boundary=mix\n\n--mix\nContent-Type: text/plain\n\nsee attached\n" +
				"--mix\nContent-Type: application/pdf; name=report.pdf\nContent-Disposition: attachment; filename=report.pdf\n\n%PDF report\n" +
				"--mix\n" + tc.part + "--mix--\n")
			parts, sum := walkAll(t, msg, Limits{})
			if got := sum.PassThrough(false); got != "" || sum.Signed || sum.Encrypted {
				t.Fatalf("PassThrough = %q (signed %v, encrypted %v), want the message rewritable", got, sum.Signed, sum.Encrypted)
			}
			var got []string
			for _, p := range parts {
				if p.Attachment {
					got = append(got, p.Path)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.attachments, " ") {
				t.Errorf("attachments %v, want %v", got, tc.attachments)
			}
			out := rewriteString(t, msg, map[string]bool{"1.2": true}, testNotice("report.pdf"))
			if strings.Contains(out, "%PDF report") {
				t.Errorf("report.pdf not removed:\n%s", out)
			}
			if !strings.Contains(out, crlfText(tc.part)) && len(tc.attachments) == 1 {
				t.Errorf("the sealed unit was not kept byte for byte:\n%s", out)
			}
		})
	}
}
