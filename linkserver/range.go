package linkserver

import (
	"slices"
	"strconv"
	"strings"
)

// maxRanges caps the ranges of one request. Each part of a multipart
// answer costs some 100 bytes of headers, so 75,000 one-byte ranges of a
// 1 MB file once produced 11 MB; real clients (resuming browsers,
// download managers) send one range or a handful.
const maxRanges = 32

// rangesAcceptable reports whether the Range header of a file of size
// bytes may be served as asked. A request with more than maxRanges
// ranges, or with ranges that overlap, is answered as nginx answers one it
// declines: the whole file, once, with 200. So is a header that does not
// parse or names another unit (RFC 9110, section 14.2: ignore it);
// http.ServeContent would answer those with a plain-text 416 whose body a
// browser could save as the file. Ranges that all lie past the end stay
// acceptable here and get ServeContent's 416 with Content-Range.
func rangesAcceptable(header string, size int64) bool {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok {
		return false
	}
	type span struct{ start, end int64 } // inclusive
	var spans []span
	count := 0
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		count++
		if count > maxRanges {
			return false
		}
		first, last, ok := strings.Cut(part, "-")
		if !ok {
			return false
		}
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		var sp span
		if first == "" {
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n < 0 {
				return false
			}
			if n == 0 {
				continue // unsatisfiable; ServeContent decides
			}
			sp = span{max(size-n, 0), size - 1}
		} else {
			start, err := strconv.ParseInt(first, 10, 64)
			if err != nil || start < 0 {
				return false
			}
			end := size - 1
			if last != "" {
				if end, err = strconv.ParseInt(last, 10, 64); err != nil || end < start {
					return false
				}
				end = min(end, size-1)
			}
			if start >= size {
				continue // unsatisfiable; ServeContent skips it
			}
			sp = span{start, end}
		}
		spans = append(spans, sp)
	}
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	for i := 1; i < len(spans); i++ {
		if spans[i].start <= spans[i-1].end {
			return false
		}
	}
	return true
}
