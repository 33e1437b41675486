package mailtmpl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEmbeddedDefaultsLoad(t *testing.T) {
	s, err := Load("", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Kinds() {
		for _, lang := range []string{"en", "ja", "both"} {
			r, err := s.Render(k, lang, sampleFor(k))
			if err != nil {
				t.Fatalf("%s/%s: %v", k, lang, err)
			}
			if r.Subject == "" || r.Text == "" || !strings.Contains(r.HTML, "<html") {
				t.Errorf("%s/%s rendered %+v", k, lang, r)
			}
		}
	}
}

func sampleFor(kind string) any {
	for _, k := range kinds {
		if k.Name == kind {
			return k.Sample()
		}
	}
	return nil
}

func TestOverrides(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string // "" = loads
		check   func(t *testing.T, s *Set)
	}{
		{name: "subject replaced", files: map[string]string{"code.en.subject": "Code {{.Code}} from Corp IT\n"},
			check: func(t *testing.T, s *Set) {
				r, err := s.Render("code", "en", sampleCode())
				if err != nil || r.Subject != "Code 12345678 from Corp IT" {
					t.Errorf("subject %q (%v)", r.Subject, err)
				}
				if !strings.Contains(r.Text, "Enter it on the download page") {
					t.Errorf("text not the embedded default any more")
				}
			}},
		{name: "html override escapes", files: map[string]string{"code.en.html": `<p title="{{.Subject}}">{{.Sender}}</p>`},
			check: func(t *testing.T, s *Set) {
				d := sampleCode()
				d.Sender, d.Subject = `<b>x</b>`, `" onmouseover="alert(1)`
				r, err := s.Render("code", "en", d)
				if err != nil || strings.Contains(r.HTML, "<b>x</b>") || strings.Contains(r.HTML, `" onmouseover`) {
					t.Errorf("html not escaped (%v):\n%s", err, r.HTML)
				}
			}},
		{name: "syntax error", files: map[string]string{"dsn.ja.txt": "{{if .Failed}}unclosed"}, wantErr: "dsn.ja.txt"},
		{name: "missing field", files: map[string]string{"code.ja.txt": "{{.Codes}}"}, wantErr: "code.ja.txt"},
		{name: "unknown function", files: map[string]string{"layout.html": "{{shout .Title}}"}, wantErr: "layout.html"},
		{name: "empty subject", files: map[string]string{"dsn.en.subject": "{{if false}}x{{end}}\n"}, wantErr: "dsn.en.subject"},
		{name: "misspelt file name", files: map[string]string{"code.en.text": "x"}, wantErr: "code.en.text"},
		{name: "unknown language", files: map[string]string{"code.fr.txt": "x"}, wantErr: "code.fr.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Load(dir, time.UTC)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, tt.wantErr)) {
					t.Fatalf("err = %v, want one naming %s", err, filepath.Join(dir, tt.wantErr))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing"), time.UTC); err == nil {
		t.Errorf("a missing directory loads")
	}
}

func TestDefaultIsAStartingPoint(t *testing.T) {
	for _, name := range FileNames() {
		b, err := Default(name)
		if err != nil || len(b) == 0 {
			t.Errorf("Default(%s) = %d bytes, %v", name, len(b), err)
		}
	}
	if _, err := Default("../go.mod"); err == nil {
		t.Errorf("Default reads outside the templates")
	}
}
