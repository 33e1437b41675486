package admin

import (
	"net/http"
	"net/http/pprof"
)

// mountPprof puts net/http/pprof's handlers on mux, for the admin role
// only, each call audited as admin.pprof. Importing net/http/pprof also
// registers them on http.DefaultServeMux; attachgate never serves that mux
// (every http.Server it runs has its own Handler), so this is the only
// place they are reachable.
func (s *Server) mountPprof(mux *http.ServeMux) {
	// Index also serves the named profiles: /debug/pprof/heap,
	// /debug/pprof/goroutine?debug=2, /debug/pprof/allocs, ...
	mux.HandleFunc("GET /debug/pprof/", s.guard(adminOnly, s.pprofCall(pprof.Index)))
	mux.HandleFunc("GET /debug/pprof/cmdline", s.guard(adminOnly, s.pprofCall(pprof.Cmdline)))
	mux.HandleFunc("GET /debug/pprof/profile", s.guard(adminOnly, s.pprofCall(pprof.Profile)))
	mux.HandleFunc("GET /debug/pprof/trace", s.guard(adminOnly, s.pprofCall(pprof.Trace)))
	// go tool pprof looks symbols up with POST.
	mux.HandleFunc("GET /debug/pprof/symbol", s.guard(adminOnly, s.pprofCall(pprof.Symbol)))
	mux.HandleFunc("POST /debug/pprof/symbol", s.guard(adminOnly, s.pprofCall(pprof.Symbol)))
	mux.HandleFunc("/debug/pprof/", s.guard(anyRole, s.methodNotAllowed("GET, HEAD")))
}

// pprofCall records an admin.pprof event, then runs h.
func (s *Server) pprofCall(h http.HandlerFunc) callHandler {
	return func(w http.ResponseWriter, r *http.Request, c caller) {
		if s.record(r, c.event(TypePprof, r)) != nil {
			s.auditUnavailable(w)
			return
		}
		h(w, r)
	}
}
