package config

import (
	"errors"
	"fmt"
)

// Secrets holds the cookie signing keys, newest first: the first one signs,
// every one verifies, so a key can be rotated without logging users out. In
// the file, `secret` is either one string ("" means none) or an array of
// strings.
type Secrets []string

// UnmarshalTOML implements toml.Unmarshaler. It takes a string, where the
// empty string means no secret, or an array of non-empty strings.
func (s *Secrets) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		if v == "" {
			*s = nil
			return nil
		}
		*s = Secrets{v}
		return nil
	case []any:
		out := make(Secrets, 0, len(v))
		for i, e := range v {
			str, ok := e.(string)
			if !ok {
				return fmt.Errorf("element %d is %s, not a string", i, describe(e))
			}
			if str == "" {
				return fmt.Errorf("element %d is empty", i)
			}
			out = append(out, str)
		}
		if len(out) == 0 {
			out = nil
		}
		*s = out
		return nil
	default:
		return errors.New(describe(v) + " must be a string or an array of strings")
	}
}
