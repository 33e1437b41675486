package main

import (
	"context"
	"log/slog"
)

// idKeyHandler renames an attribute keyed "msg" to "id". Components log
// the message a line is about as "msg" (slog.With("msg", id)), which is
// also the key of the line's own text: JSON lines got the key twice and a
// parser kept only one of them. The ID is what the per-message line calls
// "id" (README, "Logs").
type idKeyHandler struct{ slog.Handler }

func (h idKeyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return idKeyHandler{h.Handler.WithAttrs(renameMsgKey(attrs))}
}

func (h idKeyHandler) WithGroup(name string) slog.Handler {
	return idKeyHandler{h.Handler.WithGroup(name)}
}

func (h idKeyHandler) Handle(ctx context.Context, r slog.Record) error {
	clash := false
	r.Attrs(func(a slog.Attr) bool {
		clash = a.Key == slog.MessageKey
		return !clash
	})
	if !clash {
		return h.Handler.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(renameMsgKey([]slog.Attr{a})...)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func renameMsgKey(attrs []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		if a.Key == slog.MessageKey {
			a.Key = "id"
		}
		out[i] = a
	}
	return out
}
