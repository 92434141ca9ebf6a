package l7

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// CookieOptions configures the persistence cookie. The zero value is not
// used directly; the proxy fills defaults from config.
type CookieOptions struct {
	// Name is the cookie's name ("SERVERID"), an RFC 6265 token.
	Name string
	// MaxAge > 0 adds Max-Age=<seconds, rounded up> and Expires=<now+MaxAge>.
	// Zero or negative makes a session cookie, with neither attribute.
	MaxAge time.Duration
	// Path is the Path attribute ("/"); empty omits it.
	Path string
	// Domain is the Domain attribute; empty omits it.
	Domain string
	// HTTPOnly adds the HttpOnly attribute.
	HTTPOnly bool
	// Secure adds the Secure attribute.
	Secure bool
	// SameSite is "lax", "strict" or "none", written as Lax, Strict or None;
	// empty omits the attribute.
	SameSite string
	// Secrets, when empty, make the cookie value the backend id. Otherwise
	// the value is an opaque token: the first secret signs, all of them
	// verify, so a key can be rotated without logging users out.
	Secrets []string
}

const (
	// cookieMaxValue is the longest cookie value findCookie accepts.
	cookieMaxValue = 256
	// cookieTokenLen is the length of a token: 16 MAC bytes in unpadded
	// base64.
	cookieTokenLen = 22
	// cookieTokenContext separates lbctl's MACs from any other use of the
	// same secret.
	cookieTokenContext = "lbctl-cookie-v1:"
)

// cookieCodec maps backends to cookie values and back. It is built once per
// registry, immutable after construction, and safe for concurrent use.
type cookieCodec struct {
	// byID holds, for every backend of the pool that can carry a cookie,
	// the backend and its cookie value.
	byID map[string]cookieEntry
	// tokens holds the token of every (secret, backend) pair; nil in plain
	// mode, where values are ids.
	tokens []cookieToken

	name   string        // the cookie's name
	maxAge time.Duration // > 0: the line carries Expires
	prefix string        // "Set-Cookie: NAME="
	attrs  string        // "; Path=/; Domain=d; Max-Age=3600; Expires=" (the parts before the time)
	tail   string        // "; Secure; HttpOnly; SameSite=Lax\r\n"
}

type cookieEntry struct {
	backend *backend.Backend
	value   string
}

type cookieToken struct {
	token   [cookieTokenLen]byte
	backend *backend.Backend
}

// newCookieCodec precomputes the cookie value of every backend of pool and,
// with secrets, the token of every (secret, backend) pair. Nil backends are
// skipped; of backends sharing an id, the first one is the one cookies name.
// In plain mode a backend whose id is not a cookie value findCookie would
// accept (cookie-octets, at most 256 bytes) gets no cookie at all, so that
// no client is pinned with a value that cannot be read back.
//
// It panics when opts would put bytes into the Set-Cookie line that config
// validation rejects (a name that is not a token, ';' or control bytes in
// Path or Domain, an unknown SameSite): that is a programming error, and
// the alternative is a response-splitting header.
func newCookieCodec(opts CookieOptions, pool []*backend.Backend) *cookieCodec {
	c := &cookieCodec{
		byID:   make(map[string]cookieEntry, len(pool)),
		name:   opts.Name,
		maxAge: opts.MaxAge,
		prefix: "Set-Cookie: " + opts.Name + "=",
	}
	c.attrs, c.tail = cookieAttributes(opts)

	secrets := opts.Secrets
	if len(secrets) > 0 {
		c.tokens = make([]cookieToken, 0, len(secrets)*len(pool))
	}
	for _, b := range pool {
		if b == nil {
			continue
		}
		if _, dup := c.byID[b.ID]; dup {
			continue
		}
		if len(secrets) == 0 {
			if cookieValueOK([]byte(b.ID)) && b.ID != "" {
				c.byID[b.ID] = cookieEntry{backend: b, value: b.ID}
			}
			continue
		}
		for i, s := range secrets {
			t := cookieToken{token: cookieMakeToken(s, b.ID), backend: b}
			c.tokens = append(c.tokens, t)
			if i == 0 {
				c.byID[b.ID] = cookieEntry{backend: b, value: string(t.token[:])}
			}
		}
	}
	return c
}

// cookieAttributes returns the attributes of the Set-Cookie line that come
// before the Expires time (ending with "; Expires=" when there is one) and
// those that come after it, with the line's CRLF.
func cookieAttributes(opts CookieOptions) (attrs, tail string) {
	if !cookieIsToken(opts.Name) {
		panic(fmt.Sprintf("l7: cookie name %q is not an RFC 6265 token", opts.Name))
	}
	var b strings.Builder
	if opts.Path != "" {
		cookieMustBeAttribute("path", opts.Path)
		b.WriteString("; Path=" + opts.Path)
	}
	if opts.Domain != "" {
		cookieMustBeAttribute("domain", opts.Domain)
		b.WriteString("; Domain=" + opts.Domain)
	}
	if opts.MaxAge > 0 {
		secs := (opts.MaxAge + time.Second - 1) / time.Second // never Max-Age=0, which deletes the cookie
		b.WriteString("; Max-Age=" + strconv.FormatInt(int64(secs), 10) + "; Expires=")
	}
	attrs = b.String()

	b.Reset()
	if opts.Secure {
		b.WriteString("; Secure")
	}
	if opts.HTTPOnly {
		b.WriteString("; HttpOnly")
	}
	switch strings.ToLower(opts.SameSite) {
	case "":
	case "lax":
		b.WriteString("; SameSite=Lax")
	case "strict":
		b.WriteString("; SameSite=Strict")
	case "none":
		b.WriteString("; SameSite=None")
	default:
		panic(fmt.Sprintf("l7: cookie same_site %q is not lax, strict, none or empty", opts.SameSite))
	}
	b.WriteString("\r\n")
	return attrs, b.String()
}

func cookieMustBeAttribute(what, v string) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == 0x7f || c == ';' {
			panic(fmt.Sprintf("l7: cookie %s %q contains ';' or a control byte", what, v))
		}
	}
}

// cookieMakeToken returns the token naming id under secret: the first 16
// bytes of HMAC-SHA256(secret, "lbctl-cookie-v1:"+id) in unpadded URL-safe
// base64.
func cookieMakeToken(secret, id string) [cookieTokenLen]byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(cookieTokenContext))
	m.Write([]byte(id))
	var sum [sha256.Size]byte
	var t [cookieTokenLen]byte
	base64.RawURLEncoding.Encode(t[:], m.Sum(sum[:0])[:16])
	return t
}

// backendFor returns the backend a cookie value names, or nil when the value
// names none, is tampered, or is malformed. It does not allocate. With
// secrets it compares the value against the token of every (secret,
// backend) pair in constant time and never stops early, so the time taken
// does not depend on which token matched, if any. Tokens are compared as
// text, not decoded, so that the spare bits of the last base64 character
// cannot make two spellings of one token.
func (c *cookieCodec) backendFor(value []byte) *backend.Backend {
	if c.tokens == nil {
		return c.byID[string(value)].backend // no allocation: Go converts in place for map lookups
	}
	if len(value) != cookieTokenLen {
		return nil // the length is public: every token has it
	}
	found, at := 0, 0
	for i := range c.tokens {
		eq := subtle.ConstantTimeCompare(value, c.tokens[i].token[:])
		at = subtle.ConstantTimeSelect(eq, i, at)
		found |= eq
	}
	if found == 0 {
		return nil
	}
	return c.tokens[at].backend
}

// value returns the cookie value for b: its id, or its token under the first
// secret. It returns "" for a backend that carries no cookie: one whose id
// is not in the pool, or, in plain mode, is not a valid cookie value.
func (c *cookieCodec) value(b *backend.Backend) string {
	return c.byID[b.ID].value
}

// appendSetCookie appends to dst a whole header line that pins the client to
// b, such as
//
//	Set-Cookie: SERVERID=app-01; Path=/; Max-Age=3600; Expires=Sun, 06 Nov 1994 08:49:37 GMT; HttpOnly; SameSite=Lax\r\n
//
// with the attributes in the order Path, Domain, Max-Age, Expires, Secure,
// HttpOnly, SameSite, and Expires set to now+MaxAge. It does not allocate
// when dst has room. For a backend that carries no cookie (see value) it
// appends nothing.
func (c *cookieCodec) appendSetCookie(dst []byte, b *backend.Backend, now time.Time) []byte {
	v := c.byID[b.ID].value
	if v == "" {
		return dst
	}
	dst = append(dst, c.prefix...)
	dst = append(dst, v...)
	dst = append(dst, c.attrs...)
	if c.maxAge > 0 {
		dst = now.Add(c.maxAge).UTC().AppendFormat(dst, http.TimeFormat)
	}
	return append(dst, c.tail...)
}

// findCookie returns the value of the first well-formed cookie named name in
// one Cookie header value: pairs separated by ';', with optional spaces and
// tabs around each pair, its name and its value (RFC 6265 section 5.4). A
// value is well-formed when, after removing one pair of enclosing double
// quotes, it is at most 256 bytes of RFC 6265 cookie-octets (visible ASCII
// but for '"', ',', ';' and '\\'); it may be empty. Pairs with other names,
// pairs without '=', and pairs named name whose value is malformed are
// skipped, so that garbage cannot hide a usable cookie. The value is a
// subslice of header; findCookie does not allocate.
func findCookie(header []byte, name string) (value []byte, ok bool) {
	for len(header) > 0 {
		var pair []byte
		pair, header = cookieNextPair(header)
		n, v, isPair := cookieSplitPair(pair)
		if !isPair || string(n) != name {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if cookieValueOK(v) {
			return v, true
		}
	}
	return nil, false
}

// stripCookie appends to dst the Cookie header value with every pair named
// name removed, whatever its value, and every other pair byte-for-byte
// unchanged (without the spaces around it), joined with "; ". Empty pairs
// (";;") are dropped. Pairs without '=' have no name and are kept. When
// nothing else remains it returns dst unchanged, and the caller drops the
// header. removed reports whether any pair was removed; when none was, it
// returns dst unchanged too, and the caller forwards the original header.
// It does not allocate when dst has room.
func stripCookie(dst, header []byte, name string) (out []byte, removed bool) {
	orig := dst
	for len(header) > 0 {
		var pair []byte
		pair, header = cookieNextPair(header)
		if len(pair) == 0 {
			continue
		}
		if n, _, isPair := cookieSplitPair(pair); isPair && string(n) == name {
			removed = true
			continue
		}
		if len(dst) > len(orig) {
			dst = append(dst, "; "...)
		}
		dst = append(dst, pair...)
	}
	if !removed {
		return orig, false
	}
	return dst, true
}

// cookieNextPair returns the first ';'-separated element of header, without
// the spaces and tabs around it, and the rest after the ';'.
func cookieNextPair(header []byte) (pair, rest []byte) {
	for i, c := range header {
		if c == ';' {
			return cookieTrim(header[:i]), header[i+1:]
		}
	}
	return cookieTrim(header), nil
}

// cookieSplitPair splits a trimmed pair at its first '=' into a name and a
// value, each without the spaces and tabs next to the '='. isPair is false
// when there is no '='.
func cookieSplitPair(pair []byte) (name, value []byte, isPair bool) {
	for i, c := range pair {
		if c == '=' {
			return cookieTrim(pair[:i]), cookieTrim(pair[i+1:]), true
		}
	}
	return nil, nil, false
}

func cookieTrim(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// cookieValueOK reports whether v is at most 256 RFC 6265 cookie-octets:
// %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E.
func cookieValueOK(v []byte) bool {
	if len(v) > cookieMaxValue {
		return false
	}
	for _, c := range v {
		if c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// cookieIsToken reports whether s is a non-empty RFC 2616 token, which is
// what RFC 6265 allows as a cookie name.
func cookieIsToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}
