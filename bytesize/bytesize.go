// Package bytesize owns how attachgate writes a byte count for people: in
// binary units ("1.5 MiB") and with grouped digits ("1,572,864"). The
// notice in a rewritten mail, the link pages and the gateway's own mail
// show a file's size the same way.
package bytesize

import "strconv"

// Human renders n in IEC binary units, one decimal: "512 B", "1.5 MiB".
func Human(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	units := [...]string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / unit
	i := 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}

// Grouped writes n with a comma every three digits: 1234567 → "1,234,567".
func Grouped(n int64) string {
	digits := strconv.FormatInt(n, 10)
	sign := ""
	if digits[0] == '-' {
		sign, digits = "-", digits[1:]
	}
	out := make([]byte, 0, len(digits)+len(digits)/3)
	for i := range len(digits) {
		if i > 0 && (len(digits)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, digits[i])
	}
	return sign + string(out)
}
