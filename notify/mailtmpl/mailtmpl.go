// Package mailtmpl owns the templates of the mail attachgate sends itself:
// the embedded defaults, the admin's override directory
// (notify.templates_dir) and their validation, so a bad override is refused
// when the configuration is loaded, naming the file, and never when a
// notice is due.
//
// Each kind of mail has, per language (en, ja), three files:
//
//	KIND.LANG.subject   text/template, one line: the Subject
//	KIND.LANG.txt       text/template: the text/plain body
//	KIND.LANG.html      html/template: an HTML fragment for the body
//
// and layout.html (html/template) wraps the fragments into one document.
package mailtmpl

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"

	"github.com/attachgate/attachgate/bytesize"
)

//go:embed files/*
var defaults embed.FS

// Languages a template exists in. "both" renders en then ja in one mail.
var Languages = []string{"en", "ja"}

// Kind is one kind of mail with a sample of its data, used to execute every
// template once at load time so a reference to a missing field fails then.
type Kind struct {
	Name   string
	Sample func() any
}

// kinds lists every kind of mail the gateway sends. A new kind adds its
// files under files/ and an entry here.
var kinds = []Kind{
	{Name: "code", Sample: func() any { return sampleCode() }},
	{Name: "dsn", Sample: func() any { return sampleDSN() }},
	{Name: KindReceipt, Sample: func() any { return sampleReceipt() }},
	{Name: "download", Sample: func() any { return sampleDownload() }},
	{Name: "held", Sample: func() any { return sampleHeld() }},
	{Name: "approval", Sample: func() any { return sampleApproval() }},
	{Name: "approval-result", Sample: func() any { return sampleApprovalResult() }},
}

// Kinds returns the names of the known kinds.
func Kinds() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	return names
}

const layoutFile = "layout.html"

var parts = []string{"subject", "txt", "html"}

// FileNames returns every template file name, in a stable order: the names
// an override directory may hold.
func FileNames() []string {
	names := []string{layoutFile}
	for _, k := range kinds {
		for _, lang := range Languages {
			for _, p := range parts {
				names = append(names, k.Name+"."+lang+"."+p)
			}
		}
	}
	return names
}

// Set is a loaded, validated set of templates.
type Set struct {
	loc    *time.Location
	text   map[string]*texttemplate.Template // subject and txt files
	html   map[string]*htmltemplate.Template // html fragments and the layout
	source map[string]string                 // file name -> where it came from
}

// Load parses the embedded templates, replaces those that dir holds (dir
// "" = none) and executes every one with sample data. Times are shown in
// loc. Errors name the file.
func Load(dir string, loc *time.Location) (*Set, error) {
	if loc == nil {
		loc = time.UTC
	}
	s := &Set{loc: loc, text: map[string]*texttemplate.Template{},
		html: map[string]*htmltemplate.Template{}, source: map[string]string{}}
	content := map[string][]byte{}
	for _, name := range FileNames() {
		b, err := defaults.ReadFile("files/" + name)
		if err != nil {
			return nil, fmt.Errorf("embedded template %s: %w", name, err)
		}
		content[name] = b
		s.source[name] = "embedded " + name
	}
	if dir != "" {
		if err := readOverrides(dir, content, s.source); err != nil {
			return nil, err
		}
	}
	funcs := s.funcs()
	for _, name := range FileNames() {
		src := s.source[name]
		if strings.HasSuffix(name, ".html") {
			t, err := htmltemplate.New(name).Funcs(funcs).Option("missingkey=error").Parse(string(content[name]))
			if err != nil {
				return nil, fmt.Errorf("template %s: %w", src, err)
			}
			s.html[name] = t
			continue
		}
		t, err := texttemplate.New(name).Funcs(funcs).Option("missingkey=error").Parse(string(content[name]))
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", src, err)
		}
		s.text[name] = t
	}
	for _, k := range kinds {
		for _, lang := range append(slices.Clone(Languages), "both") {
			if _, err := s.Render(k.Name, lang, k.Sample()); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// readOverrides reads every file of dir into content; a file that is not a
// template name is refused so a typo does not go unnoticed.
func readOverrides(dir string, content map[string][]byte, source map[string]string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("templates directory: %w", err)
	}
	known := FileNames()
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if e.IsDir() || !slices.Contains(known, e.Name()) {
			return fmt.Errorf("template %s: not a template name (want one of %s)", path, strings.Join(known, ", "))
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("template %s: %w", path, err)
		}
		content[e.Name()] = b
		source[e.Name()] = path
	}
	return nil
}

// Rendered is one mail's text, ready for the composer.
type Rendered struct {
	Subject string // one line, no control characters
	Text    string // lines end in "\n"
	HTML    string // a whole document
}

// Render fills the templates of kind in lang (en, ja or both) with data.
func (s *Set) Render(kind, lang string, data any) (Rendered, error) {
	if !slices.Contains(Kinds(), kind) {
		return Rendered{}, fmt.Errorf("unknown mail kind %q", kind)
	}
	langs := []string{lang}
	switch lang {
	case "en", "ja":
	case "both", "":
		langs, lang = Languages, "both"
	default:
		return Rendered{}, fmt.Errorf("unknown language %q (want en, ja or both)", lang)
	}
	var subjects, texts []string
	var sections []htmltemplate.HTML
	for _, l := range langs {
		base := kind + "." + l + "."
		subj, err := s.execText(base+"subject", data)
		if err != nil {
			return Rendered{}, err
		}
		subj = oneLine(subj)
		if subj == "" {
			return Rendered{}, fmt.Errorf("template %s: renders an empty subject", s.source[base+"subject"])
		}
		subjects = append(subjects, subj)
		text, err := s.execText(base+"txt", data)
		if err != nil {
			return Rendered{}, err
		}
		texts = append(texts, strings.TrimRight(text, "\n")+"\n")
		var hb bytes.Buffer
		if err := s.html[base+"html"].Execute(&hb, data); err != nil {
			return Rendered{}, fmt.Errorf("template %s: %w", s.source[base+"html"], err)
		}
		// The fragment was escaped by html/template itself.
		sections = append(sections, htmltemplate.HTML(hb.String()))
	}
	var doc bytes.Buffer
	layoutData := struct {
		Lang     string
		Title    string
		Sections []htmltemplate.HTML
	}{Lang: lang, Title: strings.Join(subjects, " / "), Sections: sections}
	if lang == "both" {
		layoutData.Lang = "en"
	}
	if err := s.html[layoutFile].Execute(&doc, layoutData); err != nil {
		return Rendered{}, fmt.Errorf("template %s: %w", s.source[layoutFile], err)
	}
	return Rendered{
		Subject: strings.Join(subjects, " / "),
		Text:    strings.Join(texts, "\n----------------------------------------\n\n"),
		HTML:    doc.String(),
	}, nil
}

func (s *Set) execText(name string, data any) (string, error) {
	var b bytes.Buffer
	if err := s.text[name].Execute(&b, data); err != nil {
		return "", fmt.Errorf("template %s: %w", s.source[name], err)
	}
	return b.String(), nil
}

func (s *Set) funcs() map[string]any {
	return map[string]any{
		// datetime shows a time with date, time and zone in the
		// configured zone: "2026-12-02 19:10 JST (+09:00)".
		"datetime": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.In(s.loc).Format("2006-01-02 15:04 MST (-07:00)")
		},
		// size shows a byte count as "1.5 MiB (1,572,864 bytes)"; the unit
		// word is the template's.
		"size":    bytesize.Human,
		"digits":  bytesize.Grouped,
		"oneline": oneLine,
	}
}

// oneLine keeps a value from breaking a line or faking one.
func oneLine(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s))
}

// ErrNoSuchFile is returned by Default for a name that is not a template.
var ErrNoSuchFile = errors.New("no such template file")

// Default returns the embedded text of a template file, a starting point
// for an override.
func Default(name string) ([]byte, error) {
	if !slices.Contains(FileNames(), name) {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchFile, name)
	}
	return fs.ReadFile(defaults, "files/"+name)
}
