package backend

import "fmt"

// Registry is the backend pool in config order. It is immutable once built:
// Pool.Reload builds a new Registry and swaps it in whole, so readers never
// lock.
// A nil *Registry is an empty pool.
type Registry struct {
	all  []*Backend
	byID map[string]*Backend
}

// NewRegistry builds a pool from backends, kept in the given order. It rejects
// nil backends, empty ids and duplicate ids. The slice is copied; the backends
// are shared, so their live state carries over to whoever else holds them.
func NewRegistry(backends []*Backend) (*Registry, error) {
	r := &Registry{
		all:  make([]*Backend, 0, len(backends)),
		byID: make(map[string]*Backend, len(backends)),
	}
	for i, b := range backends {
		switch {
		case b == nil:
			return nil, fmt.Errorf("backend %d is nil", i)
		case b.ID == "":
			return nil, fmt.Errorf("backend %d (%s) has an empty id", i, b.Address())
		}
		if _, dup := r.byID[b.ID]; dup {
			return nil, fmt.Errorf("backend %d: duplicate id %q", i, b.ID)
		}
		r.byID[b.ID] = b
		r.all = append(r.all, b)
	}
	return r, nil
}

// Holds reports whether b is one of r's backends: the same *Backend, not
// only the same id.
func (r *Registry) Holds(b *Backend) bool { return r.Get(b.ID) == b }

// Get returns the backend with the given id, or nil when there is none.
func (r *Registry) Get(id string) *Backend {
	if r == nil {
		return nil
	}
	return r.byID[id]
}

// All returns the backends in config order. The slice is shared: callers must
// not modify it.
func (r *Registry) All() []*Backend {
	if r == nil {
		return nil
	}
	return r.all
}

// Len returns the number of backends.
func (r *Registry) Len() int {
	if r == nil {
		return 0
	}
	return len(r.all)
}
