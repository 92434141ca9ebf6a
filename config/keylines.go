package config

// KeyLines maps the key paths of a valid TOML document to the line each
// is written on ("population.users", "events" for a table header), for the
// other strict TOML files of lbctl, such as the lab's scenario files, to
// name the line of a bad key as the config's errors do. See keyLines.
func KeyLines(data []byte) map[string]int { return keyLines(data) }
