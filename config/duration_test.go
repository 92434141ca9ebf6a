package config

import (
	"testing"
	"time"
)

func TestDurationString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{250 * time.Millisecond, "250ms"},
		{1500 * time.Millisecond, "1.5s"},
		{2 * time.Second, "2s"},
		{60 * time.Second, "1m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour + 30*time.Second, "1h0m30s"},
		{-time.Hour, "-1h"},
		{time.Microsecond, "1µs"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			d := Duration(tt.d)
			if got := d.String(); got != tt.want {
				t.Errorf("Duration(%v).String() = %q, want %q", tt.d, got, tt.want)
			}
			var back Duration
			text, err := d.MarshalText()
			if err != nil {
				t.Fatal(err)
			}
			if err := back.UnmarshalText(text); err != nil || back != d {
				t.Errorf("UnmarshalText(%q) = %v, %v; want %v", text, back, err, d)
			}
		})
	}
}

func TestDurationUnmarshalText(t *testing.T) {
	tests := []struct {
		text    string
		want    time.Duration
		wantErr string
	}{
		{text: "0", want: 0},
		{text: "300ms", want: 300 * time.Millisecond},
		{text: "1h0m0s", want: time.Hour},
		{text: "soon", wantErr: `"soon" is not a duration (use 300ms, 10s, 1h)`},
		{text: "10", wantErr: `"10" is not a duration (use 300ms, 10s, 1h)`},
		{text: "", wantErr: `"" is not a duration (use 300ms, 10s, 1h)`},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.text))
			switch {
			case tt.wantErr != "":
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("UnmarshalText(%q) error = %v, want %q", tt.text, err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("UnmarshalText(%q) error = %v", tt.text, err)
			case d.D() != tt.want:
				t.Errorf("UnmarshalText(%q) = %v, want %v", tt.text, d.D(), tt.want)
			}
		})
	}
}
