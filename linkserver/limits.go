package linkserver

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// Limits of the link listener. A request must arrive whole within
// ReadTimeout (headers within ReadHeaderTimeout), so a client sending a
// byte a second cannot hold a connection open; headers are capped at
// maxHeaderBytes and every body at maxFormBytes (only the landing form
// has one). Pages must be written within ReadTimeout too; a download
// instead gets a fresh write deadline of StallTimeout before every chunk,
// so it can run for hours while it makes progress, and a client that
// stops reading is cut after StallTimeout.
const (
	defaultReadTimeout  = 30 * time.Second
	defaultIdleTimeout  = 60 * time.Second
	defaultStallTimeout = 60 * time.Second
	readHeaderTimeout   = 10 * time.Second
	maxHeaderBytes      = 16 << 10
	// hstsHeader tells browsers to use https for a year once they saw the
	// link server over https.
	hstsHeader = "max-age=31536000"
)

// HTTPServer returns the http.Server for the link listener with this
// server's handler, timeouts and header cap. tlsConfig, when not nil,
// serves HTTPS (the caller uses ServeTLS with empty file names).
func (s *Server) HTTPServer(tlsConfig *tls.Config) *http.Server {
	rht := readHeaderTimeout
	if s.readTimeout < rht {
		rht = s.readTimeout
	}
	return &http.Server{
		Handler:           s.handler,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: rht,
		ReadTimeout:       s.readTimeout,
		WriteTimeout:      s.pageWriteTimeout,
		IdleTimeout:       s.idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// limitBodies caps every request body and adds HSTS to every answer the
// browser gets over https.
func (s *Server) limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if s.secure(r) {
			w.Header().Set("Strict-Transport-Security", hstsHeader)
		}
		next.ServeHTTP(w, r)
	})
}

// secure reports whether the browser is on https: links.base_url says so,
// or the request came over TLS, directly or via a trusted proxy.
func (s *Server) secure(r *http.Request) bool {
	return s.https || s.isHTTPS(r)
}

// clearReadDeadline lets a download outlive ReadTimeout: once the request
// is read, the server's background read (which notices a client hanging
// up) must not time out and cancel the request mid-stream.
func clearReadDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
}
