package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// The limits of GET /api/pins.
const (
	defaultPinLimit = 100
	maxPinLimit     = 10000
)

// apiSource is the source an Instance is told of for changes made through
// the API.
const apiSource = "api"

// Error is the body of every answer that is not a success.
type Error struct {
	Error string `json:"error"`
	// Messages are the problems of a refused reload, each with its file
	// and line.
	Messages []string `json:"messages,omitempty"`
}

// BackendList is the answer of GET /api/backends.
type BackendList struct {
	Backends []BackendStatus `json:"backends"`
}

// PinList is the answer of GET /api/pins without key.
type PinList struct {
	Pins []PinStatus `json:"pins"`
	// More says that more pins matched than the limit let through.
	More bool `json:"more"`
}

// StateRequest is the body of POST /api/backends/{id}/state.
type StateRequest struct {
	State string `json:"state"`
	// For bounds a drain, as a Go duration ("10m", "1h30m"); only with
	// "drain".
	For string `json:"for,omitempty"`
	// Kill closes the backend's open connections at once; only with
	// "maint".
	Kill bool `json:"kill,omitempty"`
}

func (s *Server) backends(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, BackendList{Backends: orEmpty(s.Instance.Backends())})
}

func (s *Server) setState(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		writeError(w, http.StatusBadRequest, `body is empty: send {"state": "ready"|"drain"|"maint"}, with "for" for a bounded drain or "kill" with maint`)
		return
	}
	var req StateRequest
	if err := decodeStrict(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	state, err := backend.ParseAdminState(req.State)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var forDur time.Duration
	if req.For != "" {
		if state != backend.Drain {
			writeError(w, http.StatusBadRequest, fmt.Sprintf(`"for" bounds a drain only, not %q`, state))
			return
		}
		if forDur, err = time.ParseDuration(req.For); err != nil || forDur <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf(`"for": %q is not a positive duration (like "90s", "10m" or "1h30m")`, req.For))
			return
		}
	}
	if req.Kill && state != backend.Maint {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"kill" closes connections only with "maint", not %q`, state))
		return
	}
	st, err := s.Instance.SetAdminState(id, state, StateOptions{For: forDur, Kill: req.Kill}, apiSource)
	switch {
	case errors.Is(err, ErrUnknownBackend):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no backend with id %q", id))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	args := []any{"backend", id, "state", state, "source", apiSource}
	if forDur > 0 {
		args = append(args, "for", forDur, "until", st.DrainUntil.Format(time.RFC3339))
	}
	if req.Kill {
		args = append(args, "kill", true)
	}
	s.logger().Info("backend admin state set", args...)
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) pins(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for name := range q {
		if name != "key" && name != "backend" && name != "limit" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q: use key, or backend and limit", name))
			return
		}
		if len(q[name]) > 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %q given %d times", name, len(q[name])))
			return
		}
	}
	if q.Has("key") {
		if q.Has("backend") || q.Has("limit") {
			writeError(w, http.StatusBadRequest, "key asks for one pin: it takes no backend or limit")
			return
		}
		s.pin(w, q.Get("key"))
		return
	}
	limit, ok := queryLimit(w, q, defaultPinLimit, maxPinLimit)
	if !ok {
		return
	}
	backendID := q.Get("backend")
	if q.Has("backend") && backendID == "" {
		writeError(w, http.StatusBadRequest, "backend is empty")
		return
	}
	// One more than asked tells whether the list was cut.
	list, err := s.Instance.Pins(backendID, limit+1)
	switch {
	case errors.Is(err, ErrUnknownBackend):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no backend with id %q", backendID))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	res := PinList{Pins: list}
	if len(list) > limit {
		res.Pins, res.More = list[:limit], true
	}
	res.Pins = orEmpty(res.Pins)
	writeJSON(w, http.StatusOK, res)
}

// pin answers GET /api/pins?key=K.
func (s *Server) pin(w http.ResponseWriter, key string) {
	if key == "" {
		writeError(w, http.StatusBadRequest, "key is empty")
		return
	}
	p, ok, err := s.Instance.Pin(key)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s is not pinned", key))
	default:
		writeJSON(w, http.StatusOK, p)
	}
}

func (s *Server) forgetPin(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if _, ok := readBody(w, r); !ok {
		return
	}
	// The pin is read first only to say which backend it named; the
	// forget is what decides.
	p, _, err := s.Instance.Pin(key)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	forgot, err := s.Instance.ForgetPin(key)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case !forgot:
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s is not pinned", key))
		return
	}
	if p.Key == "" {
		p.Key = key
	}
	s.logger().Info("pin forgotten", "key", p.Key, "backend", p.Backend, "source", apiSource)
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if _, ok := readBody(w, r); !ok {
		return
	}
	res, err := s.Instance.Reload(r.Context())
	if rerr, ok := errors.AsType[*ReloadError](err); ok {
		s.logger().Warn("config reload refused", "source", apiSource, "problems", len(rerr.Messages), "error", rerr)
		writeJSON(w, http.StatusUnprocessableEntity, Error{
			Error:    fmt.Sprintf("config not reloaded (%d problems); the running config is unchanged", len(rerr.Messages)),
			Messages: rerr.Messages,
		})
		return
	}
	if err != nil {
		s.logger().Error("config reload failed", "source", apiSource, "error", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	res.Changes = orEmpty(res.Changes)
	s.logger().Info("config reloaded", "source", apiSource, "summary", res.Summary)
	writeJSON(w, http.StatusOK, res)
}

// upgrade answers POST /api/upgrade once the new process is ready (200,
// with its pid) or the upgrade failed, in which case this process serves on:
// 409 while another upgrade is in flight, 500 with the reason otherwise.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	if _, ok := readBody(w, r); !ok {
		return
	}
	res, err := s.Instance.Upgrade(r.Context())
	switch {
	case errors.Is(err, ErrUpgradeInProgress):
		writeError(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "upgrade failed; the running process serves on: "+err.Error())
		return
	}
	s.logger().Info("upgraded", "source", apiSource, "pid", res.PID)
	writeJSON(w, http.StatusOK, res)
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// anything after the object.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not the expected JSON object: %w", err)
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// queryLimit returns the limit query parameter of q, def when it is
// absent. A limit that is not a number from 1 to most is answered 400 on
// w and reported false.
func queryLimit(w http.ResponseWriter, q url.Values, def, most int) (int, bool) {
	if !q.Has("limit") {
		return def, true
	}
	v := q.Get("limit")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q is not a number from 1 to %d", v, most))
		return 0, false
	}
	return n, true
}

// orEmpty returns list, or an empty list for nil, so that a list with
// nothing in it reads [] in the JSON answers rather than null.
func orEmpty[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}

// writeJSON writes v, indented so that curl output reads well.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(Error{Error: "encoding the answer: " + err.Error()})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError writes an Error with status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, Error{Error: msg})
}
