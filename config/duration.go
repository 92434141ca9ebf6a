package config

import (
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration written in the file as a string that
// time.ParseDuration accepts: "250ms", "10s", "1h", "0".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d compactly, without the zero minutes and seconds that
// time.Duration prints: "1h" rather than "1h0m0s", "2m" rather than "2m0s".
// Sub-second and zero values print as time.Duration does ("250ms", "0s").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText implements encoding.TextMarshaler with the compact form of
// String, which UnmarshalText reads back to the same value.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler. It accepts what
// time.ParseDuration accepts; the error quotes the text and shows the form
// expected, for the caller to prefix with the key.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use 300ms, 10s, 1h)", text)
	}
	*d = Duration(v)
	return nil
}
